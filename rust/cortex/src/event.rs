//! The event protocol: what one generation tells its caller, in order.
//!
//! Rules: `ProcessStart` comes first, when the worker picks the request up. A thought is `Start`, any number of
//! non-empty `Delta`s, then `Stop`. `Content` is never empty. `Complete` is the last event of a stream that was not
//! ended by an error; after an error nothing follows. A stream's channel carries [`StreamItem`]s: an event, or the
//! error that ends it. This module references only `error`: every other part of the crate speaks in these types.

use crate::error::CortexError;

/// What travels on a stream's channel: the next event, or the error that ends the stream.
pub type StreamItem = Result<InferenceEvent, CortexError>;

/// One event of a generation stream.
#[derive(Debug, Clone, PartialEq)]
pub enum InferenceEvent {
    /// The worker started on this request (it may have waited in the queue before).
    ProcessStart,
    /// A piece of the model's reasoning (`<think>…</think>`).
    Thought(ThoughtEvent),
    /// A piece of the answer.
    Content(String),
    /// A tool call the model made, parsed out of its output (its syntax is never also sent as `Content`).
    ToolCall(ToolCallEvent),
    /// The generation ended normally.
    Complete(Completion),
}

/// The three parts of a thought block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThoughtEvent {
    Start,
    Delta(String),
    Stop,
}

/// The pieces of one streamed tool call. Calls are numbered from 0 in the order they start; a call's `Start` comes
/// before its `Arguments` deltas, and its `Stop` after them. The deltas of a call concatenate to its arguments, a
/// JSON object in text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCallEvent {
    Start { index: u32, id: String, name: String },
    Arguments { index: u32, delta: String },
    Stop { index: u32 },
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended its answer, or a stop string matched.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The caller cancelled the stream.
    Cancelled,
    /// The answer ended with one or more tool calls.
    ToolCalls,
}

impl FinishReason {
    /// The OpenAI-style name: `stop`, `length`, `cancelled`, `tool_calls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
            Self::ToolCalls => "tool_calls",
        }
    }
}

/// Token counts of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// How many of `prompt_tokens` were reused from the engine's cache instead of being evaluated again.
    pub cached_prompt_tokens: u32,
}

/// Wall-clock timings of one generation, measured on the worker thread.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Timings {
    /// Time to evaluate the prompt (from pickup to the first generated token being possible).
    pub prompt_ms: f64,
    /// Time spent generating tokens after the prompt.
    pub decode_ms: f64,
    /// Prompt tokens actually evaluated (not cached) per second.
    pub prompt_tokens_per_s: f64,
    /// Generated tokens per second.
    pub decode_tokens_per_s: f64,
}

impl Timings {
    /// Builds timings from durations and token counts; rates are 0 when nothing was measured.
    pub fn from_counts(prompt_ms: f64, evaluated_prompt_tokens: u32, decode_ms: f64, completion_tokens: u32) -> Self {
        let rate = |n: u32, ms: f64| if ms > 0.0 { f64::from(n) * 1000.0 / ms } else { 0.0 };
        Self {
            prompt_ms,
            decode_ms,
            prompt_tokens_per_s: rate(evaluated_prompt_tokens, prompt_ms),
            decode_tokens_per_s: rate(completion_tokens, decode_ms),
        }
    }
}

/// The payload of [`InferenceEvent::Complete`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Completion {
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub timings: Timings,
}
