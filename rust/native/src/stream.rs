//! `TokenStream`: one generation as a Python iterator, async (`async for`) and sync (`for`).
//!
//! Rules:
//! - Events already waiting in the channel are handed over without a thread hop (see [`Next`]). Only when the
//!   channel is empty does a receive run on the smol runtime (pyo3-async-runtimes), resolving an asyncio future.
//! - A ready event does not pass through the event loop, so a fast stream could starve other tasks: every
//!   `YIELD_EVERY` ready events in a row, the awaitable first yields once to the loop (like `asyncio.sleep(0)`).
//! - The sync path waits with the GIL released, waking every 100 ms to let Ctrl-C (signal handlers) through.
//! - `cancel()` asks the engine to stop and still delivers `complete` (finish_reason `cancelled`). `aclose()`,
//!   `close()`, breaking out of a loop or dropping the stream cancel it and close its channel, so the worker stops
//!   within one token and never blocks on a reader that is gone.
//! - Events are taken on the reader's thread, never handed to an asyncio future (see [`Gate`]), so an awaiter
//!   cancelled by a timeout never loses or reorders an event.
//! - `batch()` (see [`Batch`]) waits like `__anext__` for one event, then takes every event already waiting, up to
//!   its limit, without suspending; events it takes count toward `YIELD_EVERY` like single ones. It never takes the
//!   error (or the end) that follows events: that stays in the stash and the next read (of either kind) delivers it,
//!   so a batch is never lost to an error behind it.
//! - A stream that ends without `complete` or an error (its engine was closed under it) raises `EngineClosedError`,
//!   unless the caller cancelled it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use async_channel::TryRecvError;
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use rusty_genius_cortex::{EventStream, InferenceEvent, StreamItem};
use smol::lock::Mutex;

use crate::errors::{EngineClosedError, to_py};
use crate::events::PyEvent;
use crate::runtime::SmolRuntime;

/// How often a blocked sync reader wakes to check for signals.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);
/// Ready events handed over in a row before `async for` yields once to the event loop.
const YIELD_EVERY: u32 = 64;

/// What a receive took from the channel: an item, or the news that the channel is closed and empty.
#[derive(Debug)]
enum Received {
    Item(StreamItem),
    Closed,
}

impl Received {
    fn into_item(self) -> Option<StreamItem> {
        match self {
            Self::Item(item) => Some(item),
            Self::Closed => None,
        }
    }
}

/// The stash, behind a lock that also makes receives one at a time. A receive on the runtime only stashes what it
/// took; the awaiter takes it from here on the event loop's thread, after it resumed. An awaiter cancelled in
/// between (`asyncio.wait_for` & co.) leaves it for the next reader: nothing is lost or reordered.
type Gate = Arc<Mutex<Option<Received>>>;

/// A stream of generation events.
#[pyclass(frozen, name = "TokenStream", module = "rusty_genius._native")]
#[derive(Debug)]
pub struct TokenStream {
    events: EventStream,
    gate: Gate,
    finished: AtomicBool,
    /// The caller stopped this stream (cancel, close, drop): ending without `complete` is then expected.
    stopped_by_caller: AtomicBool,
    /// Ready events handed over since `async for` last gave the event loop a turn.
    ready_streak: AtomicU32,
    /// Called once, with no arguments, when the stream is finished (completed, failed, closed or dropped): the
    /// orchestrator's "this request no longer holds the model".
    on_done: std::sync::Mutex<Option<Py<PyAny>>>,
}

impl TokenStream {
    pub fn new(events: EventStream, on_done: Option<Py<PyAny>>) -> Self {
        Self {
            on_done: std::sync::Mutex::new(on_done),
            events,
            gate: Gate::default(),
            finished: AtomicBool::new(false),
            stopped_by_caller: AtomicBool::new(false),
            ready_streak: AtomicU32::new(0),
        }
    }

    /// What is ready now without waiting: a stashed receive, else whatever the channel holds.
    fn take_ready(&self, stash: &mut Option<Received>) -> Option<Received> {
        stash.take().or_else(|| match self.events.receiver.try_recv() {
            Ok(item) => Some(Received::Item(item)),
            Err(TryRecvError::Closed) => Some(Received::Closed),
            Err(TryRecvError::Empty) => None,
        })
    }

    /// Takes the events already waiting after a first one, at most `limit`, ending after `complete`. Whatever is not
    /// an event (an error, the channel's end) goes back to the stash for the next read. Never waits: when a receive
    /// holds the gate, nothing is ready anyway.
    fn take_more(&self, limit: usize) -> Vec<InferenceEvent> {
        let mut events = Vec::new();
        let Some(mut stash) = self.gate.try_lock() else {
            return events;
        };
        while events.len() < limit {
            match self.take_ready(&mut stash) {
                Some(Received::Item(Ok(event))) => {
                    let complete = matches!(event, InferenceEvent::Complete(_));
                    events.push(event);
                    if complete {
                        break;
                    }
                }
                Some(other) => {
                    *stash = Some(other);
                    break;
                }
                None => break,
            }
        }
        events
    }

    /// An event as Python sees it; `complete` finishes the stream.
    fn deliver(&self, py: Python<'_>, event: InferenceEvent) -> PyEvent {
        let event = PyEvent::new(py, event);
        if event.is_complete() {
            self.finished.store(true, Ordering::Release);
            self.done(py);
        }
        event
    }

    /// Turns what the channel gave into the next event, `Ok(None)` at the end, or the stream's error.
    fn next_event(&self, py: Python<'_>, received: Received) -> PyResult<Option<PyEvent>> {
        match received.into_item() {
            Some(Ok(event)) => Ok(Some(self.deliver(py, event))),
            Some(Err(err)) => {
                self.finished.store(true, Ordering::Release);
                self.done(py);
                Err(to_py(err))
            }
            None => {
                let already = self.finished.swap(true, Ordering::AcqRel);
                self.done(py);
                if already || self.stopped_by_caller.load(Ordering::Acquire) {
                    Ok(None)
                } else {
                    Err(EngineClosedError::new_err("the engine was closed before this generation completed"))
                }
            }
        }
    }

    /// The caller is done with the stream: stop the engine and close the channel.
    fn finish(&self, py: Python<'_>) {
        self.stopped_by_caller.store(true, Ordering::Release);
        self.finished.store(true, Ordering::Release);
        self.events.cancel.cancel();
        self.events.receiver.close();
        self.done(py);
    }

    /// Runs the `on_done` callback, once. Its errors are reported as unraisable: they must not break iteration.
    fn done(&self, py: Python<'_>) {
        let callback = self.on_done.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(callback) = callback
            && let Err(err) = callback.call0(py)
        {
            err.write_unraisable(py, Some(callback.bind(py)));
        }
    }

    fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

#[pymethods]
impl TokenStream {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__(slf: &Bound<'_, Self>) -> Option<Next> {
        if slf.get().is_finished() {
            return None;
        }
        Some(Next { wait: Wait::new(slf) })
    }

    /// Waits for the next event, then takes every event already waiting (at most `limit` in all) without
    /// suspending. Returns `[]` once the stream has ended; ends after `complete`. An error that comes after some
    /// events is raised by the next call, so the events before it are never lost.
    // The default is written as a literal so that the signature Python sees (and stubtest checks) shows it.
    #[pyo3(signature = (limit=256))]
    fn batch(slf: &Bound<'_, Self>, limit: usize) -> PyResult<Batch> {
        if limit == 0 {
            return Err(PyValueError::new_err("batch limit must be at least 1"));
        }
        Ok(Batch { wait: Wait::new(slf), limit })
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyEvent>> {
        if self.is_finished() {
            return Ok(None);
        }
        let mut stash = match self.gate.try_lock() {
            Some(stash) => stash,
            None => py.detach(|| self.gate.lock_blocking()),
        };
        loop {
            if let Some(received) = self.take_ready(&mut stash) {
                drop(stash);
                return self.next_event(py, received);
            }
            let receiver = &self.events.receiver;
            let waited = py.detach(|| {
                let receive = async { Some(receiver.recv().await.map_or(Received::Closed, Received::Item)) };
                let tick = async {
                    smol::Timer::after(SIGNAL_CHECK).await;
                    None
                };
                smol::block_on(smol::future::or(receive, tick))
            });
            match waited {
                Some(received) => *stash = Some(received),
                None => py.check_signals()?,
            }
        }
    }

    /// Asks the engine to stop; the stream still ends with a `complete` event (finish_reason `cancelled`).
    fn cancel(&self) {
        self.stopped_by_caller.store(true, Ordering::Release);
        self.events.cancel.cancel();
    }

    /// Stops the generation and ends the stream now.
    fn close(&self, py: Python<'_>) {
        self.finish(py);
    }

    /// Async form of `close()`, as on async generators.
    fn aclose<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.finish(py);
        Ok(Bound::new(py, Ready::now(py.None()))?.into_any())
    }

    /// True once `complete` or an error was delivered, or the stream was closed.
    #[getter]
    fn finished(&self) -> bool {
        self.is_finished()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&self, py: Python<'_>, _exc_type: Py<PyAny>, _exc: Py<PyAny>, _tb: Py<PyAny>) {
        self.finish(py);
    }

    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        Ok(Bound::new(py, Ready::now(slf.clone().into_any().unbind()))?.into_any())
    }

    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc_type: Py<PyAny>,
        _exc: Py<PyAny>,
        _tb: Py<PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.aclose(py)
    }
}

impl Drop for TokenStream {
    fn drop(&mut self) {
        // A pyclass is dropped by its deallocator, with the interpreter attached.
        Python::attach(|py| self.finish(py));
    }
}

/// What one step of an awaitable got: something to hand the event loop, the first item, or the stream's end.
enum Step {
    /// Yield this to the awaiting task: an asyncio future's yield, or `None` for one turn of the loop.
    Yield(Py<PyAny>),
    Took(Received),
    Finished,
}

/// The waiting part shared by `_Next` and `_Batch`: each step takes the first ready item on the event loop's thread:
/// - ready in the stash or the channel: taken at once, no thread hop (after `YIELD_EVERY` ready events in a row it
///   first yields `None` once, which an asyncio task takes as "let the other tasks run, then resume me");
/// - not ready: a receive-into-stash future runs on smol, and the awaitable delegates to its asyncio future
///   (yielding it to the task), then takes the stashed item once resumed.
#[derive(Debug)]
struct Wait {
    stream: Py<TokenStream>,
    /// The `__await__` iterator of the asyncio future of a pending receive.
    waiting: Option<Py<PyAny>>,
    yielded: bool,
}

impl Wait {
    fn new(stream: &Bound<'_, TokenStream>) -> Self {
        Self { stream: stream.clone().unbind(), waiting: None, yielded: false }
    }

    fn step(&mut self, py: Python<'_>) -> PyResult<Step> {
        if let Some(waiting) = &self.waiting {
            match waiting.bind(py).call_method0(pyo3::intern!(py, "__next__")) {
                Ok(yielded) => return Ok(Step::Yield(yielded.unbind())),
                Err(err) if err.is_instance_of::<PyStopIteration>(py) => self.waiting = None,
                Err(err) => return Err(err),
            }
        }
        let stream = self.stream.get();
        if stream.is_finished() {
            return Ok(Step::Finished);
        }
        if !self.yielded && stream.ready_streak.load(Ordering::Relaxed) >= YIELD_EVERY {
            stream.ready_streak.store(0, Ordering::Relaxed);
            self.yielded = true;
            return Ok(Step::Yield(py.None()));
        }
        match stream.gate.try_lock().and_then(|mut stash| stream.take_ready(&mut stash)) {
            Some(received) => {
                stream.ready_streak.fetch_add(1, Ordering::Relaxed);
                Ok(Step::Took(received))
            }
            None => {
                stream.ready_streak.store(0, Ordering::Relaxed);
                let gate = Arc::clone(&stream.gate);
                let receiver = stream.events.receiver.clone();
                let receive = async move {
                    let mut stash = gate.lock().await;
                    if stash.is_none() {
                        *stash = Some(receiver.recv().await.map_or(Received::Closed, Received::Item));
                    }
                    Ok(())
                };
                let future = pyo3_async_runtimes::generic::future_into_py::<SmolRuntime, _, _>(py, receive)?;
                let waiting = future.call_method0(pyo3::intern!(py, "__await__"))?;
                let yielded = waiting.call_method0(pyo3::intern!(py, "__next__"))?;
                self.waiting = Some(waiting.unbind());
                Ok(Step::Yield(yielded.unbind()))
            }
        }
    }
}

/// The awaitable `__anext__` returns: awaiting it takes the next event (see [`Wait`]).
#[pyclass(name = "_Next", module = "rusty_genius._native")]
#[derive(Debug)]
pub struct Next {
    wait: Wait,
}

#[pymethods]
impl Next {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.wait.step(py)? {
            Step::Yield(yielded) => Ok(yielded),
            Step::Finished => Err(PyStopAsyncIteration::new_err(())),
            Step::Took(received) => match self.wait.stream.get().next_event(py, received)? {
                Some(event) => Err(PyStopIteration::new_err((event,))),
                None => Err(PyStopAsyncIteration::new_err(())),
            },
        }
    }
}

/// The awaitable `batch()` returns: awaiting it takes the next event (see [`Wait`]), then every event already
/// waiting (see [`TokenStream::take_more`]), and returns them as a list; `[]` once the stream has ended.
#[pyclass(name = "_Batch", module = "rusty_genius._native")]
#[derive(Debug)]
pub struct Batch {
    wait: Wait,
    limit: usize,
}

#[pymethods]
impl Batch {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let step = self.wait.step(py)?;
        let stream = self.wait.stream.get();
        let events = match step {
            Step::Yield(yielded) => return Ok(yielded),
            Step::Finished => Vec::new(),
            Step::Took(received) => match stream.next_event(py, received)? {
                None => Vec::new(),
                Some(first) if first.is_complete() => vec![first],
                Some(first) => {
                    let more = stream.take_more(self.limit - 1);
                    let taken = u32::try_from(more.len()).unwrap_or(u32::MAX);
                    stream.ready_streak.fetch_add(taken, Ordering::Relaxed);
                    std::iter::once(first).chain(more.into_iter().map(|event| stream.deliver(py, event))).collect()
                }
            },
        };
        Err(PyStopIteration::new_err((PyList::new(py, events)?.unbind(),)))
    }
}

/// An awaitable that is already done: `await` on it returns its value at once.
#[pyclass(name = "_Ready", module = "rusty_genius._native")]
#[derive(Debug)]
pub struct Ready(Option<Py<PyAny>>);

impl Ready {
    fn now(value: Py<PyAny>) -> Self {
        Self(Some(value))
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<()> {
        let value = self.0.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((value,)))
    }
}
