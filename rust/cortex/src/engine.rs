//! The Engine trait and the request it serves.
//!
//! Rules: an engine lives on its worker thread for its whole life (llama.cpp contexts are `!Send`), so the trait
//! has no `Send` bound; the worker builds it there from a `Send` factory. An engine runs up to
//! [`Engine::parallel`] sequences at once, each on its own slot: the worker admits a request to a free slot, then
//! calls [`Engine::step`] over every running sequence — one step gives each of them (at most) one more token, so
//! all of them advance together (continuous batching). An engine turns work into token bytes pushed to each
//! sequence's [`Generation`]; everything after the bytes (UTF-8, stop strings, think tags, usage, the channel) is
//! the Generation's job, the same for every engine.

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

/// One running request, as an engine sees it during a step.
#[derive(Debug)]
pub struct Seq {
    /// The slot the engine admitted it to.
    pub slot: usize,
    pub out: Generation,
    /// Set by the engine when the sequence is over: `Ok` when it ended (the model stopped, or `out` said stop),
    /// `Err` when it failed on its own. The worker then completes or fails it and frees the slot.
    pub done: Option<Result<(), CortexError>>,
}

impl Seq {
    /// Still running and able to take a token (not done, not waiting for its reader).
    pub fn active(&self) -> bool {
        self.done.is_none() && !self.out.backlogged()
    }
}

/// A text generator driven by its worker thread.
pub trait Engine {
    /// Short name for logs and errors (`pinky`, `brain`).
    fn name(&self) -> &str;

    /// How many sequences it runs at once (its slots are `0..parallel()`).
    fn parallel(&self) -> usize {
        1
    }

    /// Starts `request` on one of the `free` slots (never empty) and returns the slot. An error fails only this
    /// request. The engine may pick the slot whose cache already holds the conversation's beginning.
    fn admit(&mut self, request: &ChatRequest, free: &[usize], out: &mut Generation) -> Result<usize, CortexError>;

    /// Advances every sequence that is not done by at most one token (or one prompt chunk), setting `done` on
    /// those that end. Sequences whose `out` is backlogged must not advance. An error fails every sequence.
    fn step(&mut self, seqs: &mut [Seq]) -> Result<(), CortexError>;

    /// The sequence on `slot` is over (done, failed or cancelled): the slot is free for another request.
    fn release(&mut self, slot: usize);
}
