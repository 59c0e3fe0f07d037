//! `TokenStream`: one generation as a Python iterator, async (`async for`) and sync (`for`).
//!
//! Rules:
//! - Events already waiting in the channel are handed over without a thread hop: `__anext__` returns a ready
//!   awaitable (`_Ready`) holding the event. Only when the channel is empty does it hand a `recv` future to the smol
//!   runtime (pyo3-async-runtimes), which resolves an asyncio future when the next event arrives.
//! - A ready event does not pass through the event loop, so a fast stream could starve other tasks: every
//!   `YIELD_EVERY` ready events in a row, the awaitable first yields once to the loop (like `asyncio.sleep(0)`).
//! - The sync path waits with the GIL released, waking every 100 ms to let Ctrl-C (signal handlers) through.
//! - `cancel()` asks the engine to stop and still delivers `complete` (finish_reason `cancelled`). `aclose()`,
//!   `close()`, breaking out of a loop or dropping the stream cancel it and close its channel, so the worker stops
//!   within one token and never blocks on a reader that is gone.
//! - A stream that ends without `complete` or an error (its engine was closed under it) raises `EngineClosedError`,
//!   unless the caller cancelled it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use async_channel::TryRecvError;
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration};
use pyo3::prelude::*;
use rusty_genius_cortex::{EventStream, StreamItem};

use crate::errors::{EngineClosedError, to_py};
use crate::events::PyEvent;
use crate::runtime::SmolRuntime;

/// How often a blocked sync reader wakes to check for signals.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);
/// Ready events handed over in a row before `async for` yields once to the event loop.
const YIELD_EVERY: u32 = 64;

/// A stream of generation events.
#[pyclass(frozen, name = "TokenStream", module = "rusty_genius._native")]
#[derive(Debug)]
pub struct TokenStream {
    events: EventStream,
    finished: AtomicBool,
    /// The caller stopped this stream (cancel, close, drop): ending without `complete` is then expected.
    stopped_by_caller: AtomicBool,
    /// Ready events handed over since `async for` last gave the event loop a turn.
    ready_streak: AtomicU32,
}

impl TokenStream {
    pub fn new(events: EventStream) -> Self {
        Self {
            events,
            finished: AtomicBool::new(false),
            stopped_by_caller: AtomicBool::new(false),
            ready_streak: AtomicU32::new(0),
        }
    }

    /// Turns what the channel gave into the next event, `Ok(None)` at the end, or the stream's error.
    fn next_event(&self, py: Python<'_>, item: Option<StreamItem>) -> PyResult<Option<PyEvent>> {
        match item {
            Some(Ok(event)) => {
                let event = PyEvent::new(py, event);
                if event.is_complete() {
                    self.finished.store(true, Ordering::Release);
                }
                Ok(Some(event))
            }
            Some(Err(err)) => {
                self.finished.store(true, Ordering::Release);
                Err(to_py(err))
            }
            None => {
                let already = self.finished.swap(true, Ordering::AcqRel);
                if already || self.stopped_by_caller.load(Ordering::Acquire) {
                    Ok(None)
                } else {
                    Err(EngineClosedError::new_err("the engine was closed before this generation completed"))
                }
            }
        }
    }

    /// The caller is done with the stream: stop the engine and close the channel.
    fn finish(&self) {
        self.stopped_by_caller.store(true, Ordering::Release);
        self.finished.store(true, Ordering::Release);
        self.events.cancel.cancel();
        self.events.receiver.close();
    }

    fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

/// The output of a pending `__anext__`, made Python on the runtime's blocking thread.
struct PendingItem {
    stream: Py<TokenStream>,
    item: Option<StreamItem>,
}

impl<'py> IntoPyObject<'py> for PendingItem {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.stream.get().next_event(py, self.item)? {
            Some(event) => Ok(Bound::new(py, event)?.into_any()),
            None => Err(PyStopAsyncIteration::new_err(())),
        }
    }
}

#[pymethods]
impl TokenStream {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        if this.is_finished() {
            return Ok(None);
        }
        let item = match this.events.receiver.try_recv() {
            Ok(item) => Some(item),
            Err(TryRecvError::Closed) => None,
            Err(TryRecvError::Empty) => {
                this.ready_streak.store(0, Ordering::Relaxed);
                let receiver = this.events.receiver.clone();
                let stream = slf.clone().unbind();
                let pending = async move {
                    let item = receiver.recv().await.ok();
                    Ok(PendingItem { stream, item })
                };
                return pyo3_async_runtimes::generic::future_into_py::<SmolRuntime, _, _>(py, pending).map(Some);
            }
        };
        let Some(event) = this.next_event(py, item)? else {
            return Ok(None);
        };
        let yield_first = this.ready_streak.fetch_add(1, Ordering::Relaxed) + 1 >= YIELD_EVERY;
        if yield_first {
            this.ready_streak.store(0, Ordering::Relaxed);
        }
        let value = Bound::new(py, event)?.into_any().unbind();
        Ok(Some(Bound::new(py, Ready { value: Some(value), yield_first })?.into_any()))
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyEvent>> {
        if self.is_finished() {
            return Ok(None);
        }
        loop {
            let item = match self.events.receiver.try_recv() {
                Ok(item) => Some(item),
                Err(TryRecvError::Closed) => None,
                Err(TryRecvError::Empty) => {
                    let receiver = &self.events.receiver;
                    let waited = py.detach(|| {
                        smol::block_on(smol::future::or(async { Some(receiver.recv().await.ok()) }, async {
                            smol::Timer::after(SIGNAL_CHECK).await;
                            None
                        }))
                    });
                    match waited {
                        Some(item) => item,
                        None => {
                            py.check_signals()?;
                            continue;
                        }
                    }
                }
            };
            return self.next_event(py, item);
        }
    }

    /// Asks the engine to stop; the stream still ends with a `complete` event (finish_reason `cancelled`).
    fn cancel(&self) {
        self.stopped_by_caller.store(true, Ordering::Release);
        self.events.cancel.cancel();
    }

    /// Stops the generation and ends the stream now.
    fn close(&self) {
        self.finish();
    }

    /// Async form of `close()`, as on async generators.
    fn aclose<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.finish();
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

    fn __exit__(&self, _exc_type: Py<PyAny>, _exc: Py<PyAny>, _tb: Py<PyAny>) {
        self.finish();
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
        self.finish();
    }
}

/// An awaitable that is already done: `await` on it returns its value with no thread hop. With `yield_first` it
/// first yields `None` once, which an asyncio task takes as "run the other ready callbacks, then resume me".
#[pyclass(name = "_Ready", module = "rusty_genius._native")]
#[derive(Debug)]
pub struct Ready {
    value: Option<Py<PyAny>>,
    yield_first: bool,
}

impl Ready {
    fn now(value: Py<PyAny>) -> Self {
        Self { value: Some(value), yield_first: false }
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

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if std::mem::take(&mut self.yield_first) {
            return Ok(py.None());
        }
        let value = self.value.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((value,)))
    }
}
