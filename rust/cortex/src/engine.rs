//! The Engine trait, and the running sequence ([`Seq`]) it steps.
//!
//! Rules: an engine lives on its worker thread for its whole life (llama.cpp contexts are `!Send`), so the trait
//! has no `Send` bound; the worker builds it there from a `Send` factory. An engine runs up to
//! [`Engine::parallel`] sequences at once, each on its own slot: the worker admits a request to a free slot, then
//! calls [`Engine::step`] over every running sequence — one step gives each of them (at most) one more token, so
//! all of them advance together (continuous batching). An engine turns work into token bytes pushed to each
//! sequence's [`Generation`]; everything after the bytes (UTF-8, stop strings, think tags, usage, the channel) is
//! the Generation's job, the same for every engine. Layering: this module sits above `request` and `pipeline` and
//! below `worker` (which drives engines); nothing it references refers back to it.

use crate::config::InferenceConfig;
use crate::error::CortexError;
use crate::pipeline::Generation;
use crate::request::{ChatMessage, ChatRequest};

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

/// What an engine can do, for clients that budget and route (`/v1/models`, `/tokenize`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EngineInfo {
    /// Tokens each sequence's window holds.
    pub context_size: u32,
    /// Token ids run from 0 to this, exclusive.
    pub vocab_size: u32,
    /// Width of its embeddings (0: it makes none).
    pub embedding_size: u32,
    /// How its embeddings are pooled (`mean`, `cls`, `last`, `rank`), as the model says or `mean` by default.
    pub pooling: &'static str,
    /// An embedding model: it answers embedding requests only.
    pub embedding_only: bool,
    /// It has fill-in-the-middle tokens (a raw prompt may carry a suffix).
    pub fill_in_middle: bool,
}

/// A raw prompt's suffix on a model without fill-in-the-middle tokens.
pub(crate) fn no_fill_in_middle() -> CortexError {
    CortexError::InvalidRequest(
        "suffix: this model has no fill-in-the-middle tokens; send the prompt without a suffix".into(),
    )
}

pub(crate) fn unsupported(engine: &str, what: &str) -> CortexError {
    CortexError::InvalidRequest(format!("the {engine} engine cannot {what}"))
}

/// Unit length (L2); a zero vector stays as it is.
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm > 0.0 {
        #[allow(clippy::cast_possible_truncation)] // a norm of f32 values fits an f32
        let norm = norm as f32;
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// A text generator driven by its worker thread.
///
/// Besides generating, an engine answers quick calls between steps (tokenize, render a template, embed): the
/// worker runs them on its thread when they arrive, so they see the same model and never race a step.
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

    /// Its sizes and abilities.
    fn info(&self) -> EngineInfo;

    /// The worker is stopping in order (closed: an unload, a shutdown), every sequence released: keep what should
    /// outlive the engine (Brain saves its conversations' caches to its KV store). Not called after a panic, when
    /// the engine's state may be inconsistent. By default nothing.
    fn persist(&mut self) {}

    /// The token ids of `text`; `add_special`: with the BOS token the model wants; `parse_special`: special-token
    /// text (`<|im_start|>`) becomes its token rather than plain text.
    fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<i32>, CortexError>;

    /// The bytes of each token (special tokens as their text); an id outside the vocabulary is an error naming it.
    fn pieces(&self, ids: &[i32]) -> Result<Vec<Vec<u8>>, CortexError>;

    /// The prompt a chat request becomes: its template applied to `messages` and `config`'s tools and reasoning
    /// settings, ending with the open assistant turn.
    fn render(&self, messages: &[ChatMessage], config: &InferenceConfig) -> Result<String, CortexError>;

    /// How many tokens the prompt of a chat request of `messages` and `config` takes: what its `usage.prompt_tokens`
    /// would be, without generating.
    fn prompt_tokens(&self, messages: &[ChatMessage], config: &InferenceConfig) -> Result<usize, CortexError> {
        Ok(self.tokenize(&self.render(messages, config)?, true, true)?.len())
    }

    /// One vector per input (token ids from [`Engine::tokenize`], each non-empty and at most `context_size` long,
    /// ids below `vocab_size`: the caller checks, so that its errors can name the input), pooled as the model says,
    /// unit length when `normalize`.
    fn embed(&mut self, inputs: &[Vec<i32>], normalize: bool) -> Result<Vec<Vec<f32>>, CortexError> {
        let _ = (inputs, normalize);
        Err(unsupported(self.name(), "make embeddings"))
    }
}
