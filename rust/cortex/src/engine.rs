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

use crate::error::CortexError;
use crate::pipeline::Generation;
use crate::request::ChatRequest;

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
