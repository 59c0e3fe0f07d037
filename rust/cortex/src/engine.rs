//! The Engine trait and the request it serves.
//!
//! Rules: an engine lives on its worker thread for its whole life (llama.cpp contexts are `!Send`), so the trait
//! has no `Send` bound; the worker builds it there from a `Send` factory. An engine turns a request into token
//! bytes pushed to a [`Generation`]; everything after the bytes (UTF-8, stop strings, think tags, usage, the
//! channel) is the Generation's job, the same for every engine.

use crate::config::InferenceConfig;
use crate::error::CortexError;
use crate::pipeline::Generation;

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

/// A text generator driven by its worker thread.
pub trait Engine {
    /// Short name for logs and errors (`pinky`, `brain`).
    fn name(&self) -> &str;

    /// Generates a reply to `request`, pushing each token's bytes into `out` until `out` says stop or the model
    /// ends its answer. Returning `Ok` without being told to stop means the model ended (`finish_reason = stop`).
    fn generate(&mut self, request: &ChatRequest, out: &mut Generation<'_>) -> Result<(), CortexError>;
}
