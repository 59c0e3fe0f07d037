//! The worker thread: one OS thread per loaded engine, running up to `engine.parallel()` requests at once.
//!
//! Rules: the engine is built on the worker thread and never leaves it. Requests arrive over an mpsc queue; each
//! gets its own bounded event channel and cancel token. Between engine steps the worker admits queued requests to
//! free slots (FIFO), so a finished or cancelled sequence's slot is reused at the next step. A request cancelled
//! while it waits ends at once (`complete`, cancelled; nothing at all when its stream was dropped). The worker
//! never blocks on a reader: a full channel only holds back that one sequence (see `pipeline`), and a finished
//! sequence whose last events wait for room is kept until they are sent. Quick calls on the engine
//! ([`Worker::call`]: tokenize, render, embed) share the queue and run in order, one between two steps, so that a
//! series of them (an embedding request's groups, queued at once) lets running sequences advance. A panic inside an engine fails every
//! running request and stops the worker (the engine may be inconsistent); later requests get `EngineClosed`.
//! Closing cuts every running stream off (closing its channel) and fails queued ones, then lets the engine
//! [`Engine::persist`] what should outlive it. Layering: the worker is the
//! top of the engine stack (it drives `engine`, `pipeline`, `request` and `stats`); none of those refers to it.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_channel::{Receiver, Sender};

use crate::cancel::CancelToken;
use crate::engine::{Engine, Seq};
use crate::error::CortexError;
use crate::event::StreamItem;
use crate::pipeline::Generation;
use crate::request::ChatRequest;
use crate::stats::WorkerStats;

/// Events buffered per stream before the worker waits for the reader.
pub const STREAM_CAPACITY: usize = 256;

/// How long the worker waits before looking again when every running sequence waits for its reader.
const BACKLOG_POLL: Duration = Duration::from_millis(1);

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

/// A quick call on the engine (tokenize, render, embed), run on the worker thread between steps.
type Call = Box<dyn FnOnce(&mut dyn Engine) + Send>;

enum Task {
    Chat(Box<Job>),
    Call(Call),
}

/// The answer of [`Worker::call`], once the worker has run it.
pub type CallReply<R> = Receiver<Result<R, CortexError>>;

/// The sending end of a worker's queue. There is one sender, shared: [`Worker::close`] drops it, which is what ends
/// the worker's loop, so no copy can keep a closed worker's queue open.
#[derive(Debug, Clone)]
pub struct Caller {
    jobs: Arc<Mutex<Option<mpsc::Sender<Task>>>>,
    shared: Arc<Shared>,
}

impl Caller {
    fn send(&self, task: Task) -> Result<(), CortexError> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(CortexError::EngineClosed);
        }
        let jobs = lock(&self.jobs);
        let jobs = jobs.as_ref().ok_or(CortexError::EngineClosed)?;
        jobs.send(task).map_err(|_| CortexError::EngineClosed)
    }

    fn disconnect(&self) {
        lock(&self.jobs).take();
    }

    /// Queues `f` to run on the worker thread with the engine, between steps, ahead of queued chat requests; its
    /// result arrives on the returned channel (closed without one if the engine stops first: readers treat that as
    /// `EngineClosed`).
    pub fn call<R, F>(&self, f: F) -> Result<CallReply<R>, CortexError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Engine) -> Result<R, CortexError> + Send + 'static,
    {
        let (tx, rx) = async_channel::bounded(1);
        let call: Call = Box::new(move |engine| {
            let _ = tx.try_send(f(engine));
        });
        self.send(Task::Call(call))?;
        Ok(rx)
    }
}

#[derive(Debug, Default)]
struct Shared {
    stats: Arc<WorkerStats>,
    closing: AtomicBool,
    /// The running requests, by slot: their tokens (to cancel them) and senders (to cut their streams off).
    current: Mutex<Vec<(usize, CancelToken, Sender<StreamItem>)>>,
}

/// Owner of an engine's thread.
#[derive(Debug)]
pub struct Worker {
    name: String,
    jobs: Caller,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Worker {
    /// Starts a thread, builds the engine on it with `factory`, and returns once it is ready (or failed to build).
    pub fn spawn<F>(name: &str, factory: F) -> Result<Self, CortexError>
    where
        F: FnOnce() -> Result<Box<dyn Engine>, CortexError> + Send + 'static,
    {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Task>();
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
                thread_shared.stats.set_parallel(engine.parallel().max(1));
                let _ = ready_tx.send(Ok(()));
                serve(engine, &jobs_rx, &thread_shared);
                thread_shared.closing.store(true, Ordering::Release);
                for task in jobs_rx.try_iter() {
                    // A call dropped unrun closes its reply channel: its caller sees EngineClosed.
                    if let Task::Chat(job) = task {
                        let _ = job.tx.send_blocking(Err(CortexError::EngineClosed));
                    }
                }
            })
            .map_err(|e| CortexError::Engine(format!("could not start the {name} worker thread: {e}")))?;
        let jobs = Caller { jobs: Arc::new(Mutex::new(Some(jobs_tx))), shared: Arc::clone(&shared) };
        let mut worker = Self { name: name.to_owned(), jobs, thread: Some(thread), shared };
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
        let (tx, receiver) = async_channel::bounded(STREAM_CAPACITY);
        let cancel = CancelToken::new();
        self.jobs.send(Task::Chat(Box::new(Job { request, tx, cancel: cancel.clone() })))?;
        Ok(EventStream { receiver, cancel })
    }

    /// See [`Caller::call`].
    pub fn call<R, F>(&self, f: F) -> Result<CallReply<R>, CortexError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Engine) -> Result<R, CortexError> + Send + 'static,
    {
        self.jobs.call(f)
    }

    /// [`Worker::call`], waiting for the answer on this thread.
    pub fn call_blocking<R, F>(&self, f: F) -> Result<R, CortexError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Engine) -> Result<R, CortexError> + Send + 'static,
    {
        self.call(f)?.recv_blocking().unwrap_or(Err(CortexError::EngineClosed))
    }

    /// A handle that queues calls from elsewhere (an async task): it does not keep the worker alive, and once the
    /// worker is closed its calls fail with `EngineClosed`.
    pub fn caller(&self) -> Caller {
        self.jobs.clone()
    }

    /// Cancels the running requests, fails queued ones, and joins the thread. Idempotent.
    pub fn close(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        for (_, cancel, tx) in lock(&self.shared.current).iter() {
            // Channel first: a reader must see the stream cut off (EngineClosed), not a clean `cancelled` ending.
            tx.close();
            cancel.cancel();
        }
        self.jobs.disconnect();
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

/// The scheduling loop: admit, step, finish, until the job queue is closed and nothing is left to send.
fn serve(mut engine: Box<dyn Engine>, jobs: &mpsc::Receiver<Task>, shared: &Shared) {
    let parallel = engine.parallel().max(1);
    let mut free: Vec<usize> = (0..parallel).collect();
    let mut seqs: Vec<Seq> = Vec::with_capacity(parallel);
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut draining: Vec<Generation> = Vec::new();
    let mut calls: VecDeque<Call> = VecDeque::new();
    let mut open = true;
    loop {
        // Take every request that has arrived; block only when there is nothing else to do.
        while open {
            let idle = seqs.is_empty() && waiting.is_empty() && draining.is_empty() && calls.is_empty();
            let next = if idle { jobs.recv().map_err(|_| mpsc::TryRecvError::Disconnected) } else { jobs.try_recv() };
            match next {
                Ok(Task::Chat(job)) => waiting.push_back(*job),
                Ok(Task::Call(call)) => calls.push_back(call),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => open = false,
            }
        }
        // One call per step, so that a long series of them (an embedding request's groups) lets sequences advance.
        if let Some(call) = calls.pop_front()
            && let Err(panic) = catch_unwind(AssertUnwindSafe(|| call(engine.as_mut())))
        {
            let msg = format!("{} panicked: {}", engine.name(), panic_message(&*panic));
            return fail_all(seqs, waiting, draining, &msg, shared);
        }
        // A request cancelled while it waited ends now (`complete`, cancelled), without waiting for a slot.
        waiting.retain(|job| {
            let cancelled = job.cancel.is_cancelled() || job.tx.is_closed();
            if cancelled {
                draining.extend(end_unstarted(job, shared));
            }
            !cancelled
        });
        while !free.is_empty()
            && let Some(job) = waiting.pop_front()
        {
            match admit(engine.as_mut(), job, &free, shared) {
                Admitted::Running(seq) => {
                    free.retain(|&s| s != seq.slot);
                    seqs.push(seq);
                }
                Admitted::Ended(generation) => draining.extend(generation),
                Admitted::Panicked(msg) => return fail_all(seqs, waiting, draining, &msg, shared),
            }
        }
        draining.retain_mut(|g| g.flush() && g.backlogged());
        if seqs.is_empty() {
            if !open && waiting.is_empty() && draining.is_empty() && calls.is_empty() {
                // An orderly end (a panic returns through `fail_all` instead): the engine keeps what should last. A
                // panic in there has nothing left to fail; the worker ends either way.
                let _ = catch_unwind(AssertUnwindSafe(|| engine.persist()));
                return;
            }
            if !draining.is_empty() {
                std::thread::sleep(BACKLOG_POLL);
            }
            continue;
        }
        for seq in &mut seqs {
            if !seq.out.flush() && seq.done.is_none() {
                seq.done = Some(Ok(())); // The reader is gone: the Generation reports it as cancelled.
            }
        }
        if seqs.iter().all(|s| s.done.is_none() && s.out.backlogged()) {
            std::thread::sleep(BACKLOG_POLL); // Every reader is behind: nothing can advance.
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| engine.step(&mut seqs))) {
            Ok(Ok(())) => {}
            Ok(Err(err)) => seqs.iter_mut().filter(|s| s.done.is_none()).for_each(|s| s.done = Some(Err(err.clone()))),
            Err(panic) => {
                let msg = format!("{} panicked: {}", engine.name(), panic_message(&*panic));
                return fail_all(seqs, waiting, draining, &msg, shared);
            }
        }
        // `extract_if` keeps the running ones in admission order (FIFO fairness for prompt chunks).
        for mut seq in seqs.extract_if(.., |s| s.done.is_some()) {
            engine.release(seq.slot);
            free.push(seq.slot);
            lock(&shared.current).retain(|(slot, _, _)| *slot != seq.slot);
            match seq.done.take() {
                Some(Err(err)) => seq.out.fail(err),
                _ => seq.out.complete(),
            }
            if seq.out.backlogged() {
                draining.push(seq.out);
            }
        }
    }
}

enum Admitted {
    Running(Seq),
    /// Never started, or failed at admission; holds the generation while its last events wait to be sent.
    Ended(Option<Generation>),
    Panicked(String),
}

/// Ends a request cancelled before it started: `ProcessStart` then `complete` (cancelled), if anyone still reads.
fn end_unstarted(job: &Job, shared: &Shared) -> Option<Generation> {
    if job.tx.is_closed() {
        return None;
    }
    shared.stats.begin_request();
    let mut out = Generation::new(&job.request, job.tx.clone(), job.cancel.clone(), Arc::clone(&shared.stats));
    if out.start() {
        out.complete();
    } else {
        shared.stats.end_request();
    }
    out.backlogged().then_some(out)
}

fn admit(engine: &mut dyn Engine, job: Job, free: &[usize], shared: &Shared) -> Admitted {
    if shared.closing.load(Ordering::Acquire) {
        let _ = job.tx.try_send(Err(CortexError::EngineClosed));
        return Admitted::Ended(None);
    }
    if job.cancel.is_cancelled() || job.tx.is_closed() {
        return Admitted::Ended(end_unstarted(&job, shared));
    }
    let stats = &shared.stats;
    stats.begin_request();
    let mut out = Generation::new(&job.request, job.tx.clone(), job.cancel.clone(), Arc::clone(stats));
    // `ProcessStart` follows a successful admission (template applied, prompt counted against the context), so a
    // request the engine refuses ends with its error as the first item: servers can still answer it with a status.
    match catch_unwind(AssertUnwindSafe(|| engine.admit(&job.request, free, &mut out))) {
        Ok(Ok(slot)) if !out.start() => {
            // The reader left while the engine admitted it.
            engine.release(slot);
            stats.end_request();
            Admitted::Ended(None)
        }
        Ok(Ok(slot)) => {
            lock(&shared.current).push((slot, job.cancel.clone(), job.tx.clone()));
            // Re-check after publishing the token: `close` may have run between the first check and the push.
            if shared.closing.load(Ordering::Acquire) {
                job.tx.close();
                job.cancel.cancel();
            }
            Admitted::Running(Seq { slot, out, done: None })
        }
        Ok(Err(err)) => {
            out.fail(err);
            Admitted::Ended(out.backlogged().then_some(out))
        }
        Err(panic) => {
            let msg = format!("{} panicked: {}", engine.name(), panic_message(&*panic));
            out.fail(CortexError::Engine(msg.clone()));
            out.flush_blocking();
            Admitted::Panicked(msg)
        }
    }
}

/// After a panic: every running request fails (its error queued behind its waiting events) and the worker stops.
fn fail_all(seqs: Vec<Seq>, waiting: VecDeque<Job>, draining: Vec<Generation>, msg: &str, shared: &Shared) {
    // Blocking sends: the worker is about to stop, and `close` closes the channels of readers that never read.
    for mut seq in seqs {
        seq.out.fail(CortexError::Engine(msg.to_owned()));
        seq.out.flush_blocking();
    }
    for mut generation in draining {
        generation.flush_blocking();
    }
    for job in waiting {
        let _ = job.tx.send_blocking(Err(CortexError::EngineClosed));
    }
    lock(&shared.current).clear();
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

#[cfg(test)]
mod calls_tests;
#[cfg(test)]
mod persist_tests;
