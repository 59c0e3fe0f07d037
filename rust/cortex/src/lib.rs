//! rusty-genius cortex: the engines and everything between a model's raw token bytes and typed events.
//!
//! Rules for this crate:
//! - No PyO3 here. `rust/native` is the only crate that knows about Python.
//! - Text is made correct here, once, for every engine: UTF-8 pieces split across tokens, stop strings that arrive in
//!   pieces, and `<think>` tags split anywhere (see [`pipeline`]).
//! - Every engine runs on its own OS thread ([`worker`]); callers talk to it over channels only.
//! - No module refers to one that refers back to it (`scripts/check_imports.py` checks). From the bottom up:
//!   `error`, `logprob`, `draft` and `shift` (pure arithmetic), `gbnf` and `schema_depth` (scans of a grammar's text, a schema's depth);
//!   `event`, `config`, `cancel`, `stats` and the text stages (`utf8`, `stop`, `think`, and `tools` beside `think`:
//!   it reads `event` and `stop` only); `request`, and `template` beside it (it reads `request`, `config` and `error`
//!   only); `pipeline`; `engine`; `gguf` and `footprint` (it reads `gguf`), `kvstore` (it reads `gguf`); the engines
//!   (`pinky`, `brain`, and `seqstate`, Brain's side of `kvstore`) and `worker`. Modules name each other by their own paths (`crate::worker::Worker`), not through the re-exports
//!   below, which are for other crates.

#[cfg(feature = "real-engine")]
pub mod brain;
pub mod cancel;
pub mod config;
pub mod constraint;
pub mod draft;
#[cfg(feature = "real-engine")]
pub mod drafter;
#[cfg(feature = "real-engine")]
pub mod embedding;
pub mod engine;
pub mod error;
pub mod event;
pub mod footprint;
pub mod gbnf;
pub mod gguf;
pub mod kvstore;
pub mod logprob;
pub mod pinky;
pub mod pipeline;
pub mod request;
pub mod schema_depth;
#[cfg(feature = "real-engine")]
pub mod seqstate;
pub mod shift;
pub mod stats;
pub mod stop;
pub mod template;
pub mod think;
pub mod tools;
pub mod utf8;
pub mod worker;

pub use cancel::CancelToken;
pub use config::{Behavior, ContextOverflow, InferenceConfig, Sampling};
pub use engine::{Engine, EngineInfo, Seq};
pub use error::CortexError;
pub use event::{
    Completion, FinishReason, InferenceEvent, StreamItem, ThoughtEvent, Timings, TokenLogprob, ToolCallEvent, Usage,
};
pub use pinky::{Pinky, PinkyOptions};
pub use pipeline::{Flow, Generation, PromptInfo};
pub use request::{ChatMessage, ChatRequest, RawPrompt, Role};
pub use stats::WorkerStats;
pub use worker::{EventStream, Worker};
