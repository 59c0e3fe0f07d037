//! What a caller asks for: chat messages and their config, the input of every engine.
//!
//! Rules: plain data with no behaviour beyond checking itself ([`ChatRequest::validate`]); it sits below the engine,
//! the pipeline and the worker (each of them reads it), so it references only `config` and `error`.

use crate::config::InferenceConfig;
use crate::error::CortexError;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    System,
    #[default]
    User,
    Assistant,
    Tool,
}

impl Role {
    pub const NAMES: &'static str = "'system', 'user', 'assistant' or 'tool'";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = CortexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(Self::System),
            "user" => Ok(Self::User),
            "assistant" => Ok(Self::Assistant),
            "tool" => Ok(Self::Tool),
            other => Err(CortexError::InvalidRequest(format!("unknown role '{other}'; use {}", Self::NAMES))),
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// The calls an assistant message made (OpenAI's `tool_calls`), for the template to render back.
    pub tool_calls: Vec<ToolCall>,
    /// On a `tool` message: the id of the call this is the result of.
    pub tool_call_id: Option<String>,
    /// On a `tool` message: the function's name (some templates render it).
    pub name: Option<String>,
    /// On an assistant message: its reasoning (`reasoning_content`), for templates that render it.
    pub reasoning: Option<String>,
}

impl ChatMessage {
    /// A plain message with only a role and text.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into(), ..Self::default() }
    }
}

/// One function call, as a finished answer reports it and as a later request sends it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments: a JSON object in text form.
    pub arguments: String,
}

/// A text to continue as it is, with no chat template (the legacy completions API, Ollama's `raw`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawPrompt {
    pub text: String,
    /// Fill in the middle: the text after the gap (`text` is the text before it). Needs a model with FIM tokens.
    pub suffix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub config: InferenceConfig,
    /// Set for a raw completion: the model continues this text; `messages` is then empty, no template is applied,
    /// and the output is plain text (no think or tool-call parsing).
    pub prompt: Option<RawPrompt>,
}

impl ChatRequest {
    pub fn validate(&self) -> Result<(), CortexError> {
        if self.prompt.is_some() {
            if !self.messages.is_empty() {
                return Err(CortexError::InvalidRequest("send either messages or a raw prompt, not both".into()));
            }
            return self.config.validate();
        }
        if self.messages.is_empty() {
            return Err(CortexError::InvalidRequest(
                "messages is empty; send at least one {'role': 'user', 'content': ...} message".into(),
            ));
        }
        self.config.validate()
    }
}
