//! What a caller asks for: chat messages and their config, the input of every engine.
//!
//! Rules: plain data with no behaviour beyond checking itself ([`ChatRequest::validate`]); it sits below the engine,
//! the pipeline and the worker (each of them reads it), so it references only `config` and `error`.

use crate::config::InferenceConfig;
use crate::error::CortexError;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// One generation request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub config: InferenceConfig,
}

impl ChatRequest {
    pub fn validate(&self) -> Result<(), CortexError> {
        if self.messages.is_empty() {
            return Err(CortexError::InvalidRequest(
                "messages is empty; send at least one {'role': 'user', 'content': ...} message".into(),
            ));
        }
        self.config.validate()
    }
}
