//! The worker thread: one OS thread per loaded engine, serving requests one at a time.
//!
//! Rules: the engine is built on the worker thread and never leaves it. Requests arrive over an mpsc queue; each
//! gets its own bounded event channel and cancel token. A request whose stream was dropped while it waited is
//! skipped. A panic inside an engine becomes an error on that stream and stops the worker (the engine may be
//! inconsistent); later requests get `EngineClosed`. Closing cancels the running request (closing its channel, so
//! a worker blocked on an idle reader wakes) and fails queued ones.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use async_channel::{Receiver, Sender};

use crate::cancel::CancelToken;
use crate::engine::{ChatRequest, Engine};
use crate::error::CortexError;
use crate::event::InferenceEvent;
use crate::pipeline::Generation;

/// What travels on a stream's channel.
pub type StreamItem = Result<InferenceEvent, CortexError>;

/// Events buffered per stream before the worker waits for the reader.
pub const STREAM_CAPACITY: usize = 256;

/// Counters a caller can read while the worker runs.
#[derive(Debug, Default)]
pub struct WorkerStats {
    busy: AtomicBool,
    generated_tokens: AtomicU64,
    completed_requests: AtomicU64,
}

impl WorkerStats {
    /// True while a request is being generated.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }
    /// Tokens generated over the worker's life.
    pub fn generated_tokens(&self) -> u64 {
        self.generated_tokens.load(Ordering::Relaxed)
    }
    /// Requests finished (completed, cancelled or failed) over the worker's life.
    pub fn completed_requests(&self) -> u64 {
        self.completed_requests.load(Ordering::Acquire)
    }
    /// Marks the running request as finished. Called before its last event is sent, so a reader that has seen
    /// `complete` (or the error) also sees the counters updated.
    pub(crate) fn end_request(&self) {
        self.busy.store(false, Ordering::Release);
        self.completed_requests.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn count_token(&self) {
        self.generated_tokens.fetch_add(1, Ordering::Relaxed);
    }
}

/// The receiving end of one request. Dropping it cancels the request.
#[derive(Debug)]
pub struct EventStream {
    pub receiver: Receiver<StreamItem>,
    pub cancel: CancelToken,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

struct Job {
    request: ChatRequest,
    tx: Sender<StreamItem>,
    cancel: CancelToken,
}

#[derive(Debug, Default)]
struct Shared {
    stats: WorkerStats,
    closing: AtomicBool,
    /// The running request: its token (to cancel it) and its sender (to unblock a send to an idle reader).
    current: Mutex<Option<(CancelToken, Sender<StreamItem>)>>,
}

/// Owner of an engine's thread.
#[derive(Debug)]
pub struct Worker {
    name: String,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Worker {
    /// Starts a thread, builds the engine on it with `factory`, and returns once it is ready (or failed to build).
    pub fn spawn<F>(name: &str, factory: F) -> Result<Self, CortexError>
    where
        F: FnOnce() -> Result<Box<dyn Engine>, CortexError> + Send + 'static,
    {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), CortexError>>(1);
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let engine_name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("genius-{name}"))
            .spawn(move || {
                let engine = match catch_unwind(AssertUnwindSafe(factory)) {
                    Ok(Ok(engine)) => engine,
                    Ok(Err(err)) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                    Err(panic) => {
                        let msg = format!("{engine_name} panicked while loading: {}", panic_message(&*panic));
                        let _ = ready_tx.send(Err(CortexError::Engine(msg)));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                serve(engine, &jobs_rx, &thread_shared);
                thread_shared.closing.store(true, Ordering::Release);
                for job in jobs_rx.try_iter() {
                    let _ = job.tx.send_blocking(Err(CortexError::EngineClosed));
                }
            })
            .map_err(|e| CortexError::Engine(format!("could not start the {name} worker thread: {e}")))?;
        let mut worker = Self { name: name.to_owned(), jobs: Some(jobs_tx), thread: Some(thread), shared };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(err)) => {
                worker.close();
                Err(err)
            }
            Err(_) => {
                worker.close();
                Err(CortexError::Engine(format!("the {name} worker exited while loading")))
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stats(&self) -> &WorkerStats {
        &self.shared.stats
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closing.load(Ordering::Acquire)
    }

    /// Validates and queues a request; events arrive on the returned stream.
    pub fn submit(&self, request: ChatRequest) -> Result<EventStream, CortexError> {
        request.validate()?;
        if self.is_closed() {
            return Err(CortexError::EngineClosed);
        }
        let jobs = self.jobs.as_ref().ok_or(CortexError::EngineClosed)?;
        let (tx, receiver) = async_channel::bounded(STREAM_CAPACITY);
        let cancel = CancelToken::new();
        jobs.send(Job { request, tx, cancel: cancel.clone() }).map_err(|_| CortexError::EngineClosed)?;
        Ok(EventStream { receiver, cancel })
    }

    /// Cancels the running request, fails queued ones, and joins the thread. Idempotent.
    pub fn close(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        if let Some((cancel, tx)) = lock(&self.shared.current).as_ref() {
            // Channel first: a reader must see the stream cut off (EngineClosed), not a clean `cancelled` ending.
            tx.close();
            cancel.cancel();
        }
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.close();
    }
}

fn serve(mut engine: Box<dyn Engine>, jobs: &mpsc::Receiver<Job>, shared: &Shared) {
    let stats = &shared.stats;
    for job in jobs.iter() {
        if shared.closing.load(Ordering::Acquire) {
            let _ = job.tx.send_blocking(Err(CortexError::EngineClosed));
            continue;
        }
        if job.cancel.is_cancelled() || job.tx.is_closed() {
            continue; // Its stream was dropped while it waited.
        }
        *lock(&shared.current) = Some((job.cancel.clone(), job.tx.clone()));
        // Re-check after publishing the token: `close` may have run between the first check and the store.
        if shared.closing.load(Ordering::Acquire) {
            job.tx.close();
            job.cancel.cancel();
        }
        stats.busy.store(true, Ordering::Release);
        let mut panicked = false;
        if job.tx.send_blocking(Ok(InferenceEvent::ProcessStart)).is_err() {
            stats.end_request();
        } else {
            let mut generation = Generation::new(&job.request, &job.tx, &job.cancel, stats);
            match catch_unwind(AssertUnwindSafe(|| engine.generate(&job.request, &mut generation))) {
                Ok(Ok(())) => generation.complete(),
                Ok(Err(err)) => generation.fail(err),
                Err(panic) => {
                    let msg = format!("{} panicked: {}", engine.name(), panic_message(&*panic));
                    generation.fail(CortexError::Engine(msg));
                    panicked = true;
                }
            }
        }
        *lock(&shared.current) = None;
        if panicked {
            return;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "unknown panic"
    }
}
