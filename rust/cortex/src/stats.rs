//! The counters of one worker, written by the worker and its generations, read by any thread.
//!
//! Rules: lock-free atomics only, so reading them never waits on the worker. A request is counted as finished
//! before its last event is sent (see `WorkerStats::end_request`). This module references nothing else in the
//! crate: the pipeline and the worker both write it, so it sits below them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Counters a caller can read while the worker runs.
#[derive(Debug, Default)]
pub struct WorkerStats {
    running: AtomicUsize,
    parallel: AtomicUsize,
    generated_tokens: AtomicU64,
    completed_requests: AtomicU64,
}

impl WorkerStats {
    /// True while a request is being generated.
    pub fn busy(&self) -> bool {
        self.running() > 0
    }
    /// Requests being generated now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }
    /// Requests the engine runs at once.
    pub fn parallel(&self) -> usize {
        self.parallel.load(Ordering::Acquire)
    }
    /// Tokens generated over the worker's life.
    pub fn generated_tokens(&self) -> u64 {
        self.generated_tokens.load(Ordering::Relaxed)
    }
    /// Requests finished (completed, cancelled or failed) over the worker's life.
    pub fn completed_requests(&self) -> u64 {
        self.completed_requests.load(Ordering::Acquire)
    }

    /// Records how many requests the engine runs at once (once it is built).
    pub(crate) fn set_parallel(&self, parallel: usize) {
        self.parallel.store(parallel, Ordering::Release);
    }

    pub(crate) fn begin_request(&self) {
        self.running.fetch_add(1, Ordering::AcqRel);
    }

    /// Marks the running request as finished. Called before its last event is sent, so a reader that has seen
    /// `complete` (or the error) also sees the counters updated.
    pub(crate) fn end_request(&self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
        self.completed_requests.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn count_token(&self) {
        self.generated_tokens.fetch_add(1, Ordering::Relaxed);
    }
}
