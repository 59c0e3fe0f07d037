//! The event protocol: what one generation tells its caller, in order.
//!
//! Rules: `ProcessStart` comes first, once the engine has admitted the request (a request it refuses, e.g. a prompt
//! too long for the context, ends with its error as the first item). A thought is `Start`, any number of
//! non-empty `Delta`s, then `Stop`. `Content` is never empty. `TokenLogprob` (only when the request asked for
//! logprobs) comes for each answer token, in generation order, before the text that token completes. `Complete` is the last event of a stream that was not
//! ended by an error; after an error nothing follows. A stream's channel carries [`StreamItem`]s: an event, or the
//! error that ends it. This module references only `error`: every other part of the crate speaks in these types.

use crate::error::CortexError;

/// What travels on a stream's channel: the next event, or the error that ends the stream.
pub type StreamItem = Result<InferenceEvent, CortexError>;

/// One event of a generation stream.
#[derive(Debug, Clone, PartialEq)]
pub enum InferenceEvent {
    /// The worker started on this request (it may have waited in the queue before), with the prompt's token counts
    /// as admitted (`completion_tokens` 0): what the answer's usage will report for the prompt.
    ProcessStart(Usage),
    /// A piece of the model's reasoning (`<think>…</think>`).
    Thought(ThoughtEvent),
    /// A piece of the answer.
    Content(String),
    /// A tool call the model made, parsed out of its output (its syntax is never also sent as `Content`).
    ToolCall(ToolCallEvent),
    /// The log-probability of one answer token (the request set `Behavior::logprobs`).
    TokenLogprob(TokenLogprob),
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

/// One generated token of the answer, with its log-probability and the likeliest alternatives at its position.
///
/// What is reported (the rules live in `pipeline`): tokens outside a thought only (reasoning is not the answer), not
/// the white space the think parser drops after a thought, and not the tokens of a stop string that matched (the
/// token completing the match included, even when part of its text is in the answer). With tools offered, the
/// tokens that spell a tool call are reported too (their text is in the call, not in `Content`).
///
/// Brain reports the model's raw distribution at that position: the log-softmax of the logits, before the token
/// biases, penalties, temperature, truncation (top-k/p, min-p) and constraints of sampling — what vLLM reports by
/// default. So a sampled token may be one that is not in `top`, and a token forced by a constraint may be unlikely.
/// Pinky, which has no logits, reports 0.0 for its piece and, when alternatives are asked for, that piece alone.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token's text (lossy UTF-8: a token holding part of a character shows U+FFFD; `bytes` are exact).
    pub token: String,
    pub bytes: Vec<u8>,
    /// Natural log of the token's probability (≤ 0; at least -9999, OpenAI's floor).
    pub logprob: f32,
    /// The `k` likeliest tokens at this position, likeliest first: (text, bytes, logprob).
    pub top: Vec<(String, Vec<u8>, f32)>,
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
    /// How many of `cached_prompt_tokens` were restored from the KV-state store (a conversation saved when its model
    /// was unloaded or stopped) rather than found in memory.
    pub restored_prompt_tokens: u32,
    /// Messages of the conversation left out so that it fit the context (`ContextOverflow::DropOldestTurns`).
    pub dropped_messages: u32,
    /// Tokens `ContextOverflow::Shift` took out of the context: cut from an overlong prompt (not in `prompt_tokens`,
    /// which counts what was read) and discarded by each shift while generating.
    pub shifted_tokens: u32,
    /// Draft tokens speculative decoding fed to the model, and how many of them it kept (they are among
    /// `completion_tokens`; the rest were computed and thrown away).
    pub draft_tokens: u32,
    pub accepted_draft_tokens: u32,
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
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub timings: Timings,
    /// The stop string that ended the answer (finish reason `Stop`), if one did (Anthropic's `stop_sequence`).
    pub stop_sequence: Option<String>,
}
