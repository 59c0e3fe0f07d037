//! rusty-genius cortex: the engines and everything between a model's raw token bytes and typed events.
//!
//! Rules for this crate:
//! - No PyO3 here. `rust/native` is the only crate that knows about Python.
//! - Text is made correct here, once, for every engine: UTF-8 pieces split across tokens, stop strings that arrive in
//!   pieces, and `<think>` tags split anywhere (see [`pipeline`]).
//! - Every engine runs on its own OS thread ([`worker`]); callers talk to it over channels only.

#[cfg(feature = "real-engine")]
pub mod brain;
pub mod cancel;
pub mod config;
pub mod engine;
pub mod error;
pub mod event;
pub mod gguf;
pub mod pinky;
pub mod pipeline;
pub mod stop;
pub mod think;
pub mod utf8;
pub mod worker;

pub use cancel::CancelToken;
pub use config::{Behavior, InferenceConfig, Sampling};
pub use engine::{ChatMessage, ChatRequest, Engine, Role};
pub use error::CortexError;
pub use event::{Completion, FinishReason, InferenceEvent, ThoughtEvent, Timings, Usage};
pub use pinky::{Pinky, PinkyOptions};
pub use pipeline::{Flow, Generation, PromptInfo};
pub use worker::{EventStream, StreamItem, Worker, WorkerStats};
