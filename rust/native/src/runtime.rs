//! pyo3-async-runtimes on smol: the `generic::Runtime` + `ContextExt` that turn Rust futures into asyncio awaitables.
//!
//! Rules (DESIGN.md §5):
//! - pyo3-async-runtimes drops the handles `spawn`/`spawn_blocking` return, and dropping a smol `Task` cancels it,
//!   so every task is detached and the handle is a oneshot that reports the task's end.
//! - A detached smol task swallows panics, so every spawned future and closure runs under `catch_unwind` and a
//!   panic travels through the handle (pyo3-async-runtimes turns it into a Python `RustPanic`).
//! - Task locals (the asyncio loop and contextvars of the awaiting task) live in a thread-local that is swapped in
//!   around each poll of a scoped future and restored afterwards, even when the poll panics.
//! - Blocking closures are where pyo3-async-runtimes attaches to Python to resolve an asyncio future. One still in
//!   flight when the interpreter finalizes would be killed while re-taking the GIL, which aborts the process; so
//!   they are counted, and `drain` (run at exit) waits for them with the GIL released.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pyo3::Python;

use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::generic::{ContextExt, JoinError, Runtime};

/// The smol runtime marker type.
#[derive(Debug)]
pub struct SmolRuntime;

/// Why a spawned task did not finish normally.
#[derive(Debug)]
pub struct SmolJoinError(Option<Box<dyn Any + Send + 'static>>);

impl JoinError for SmolJoinError {
    fn is_panic(&self) -> bool {
        self.0.is_some()
    }

    fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.0.unwrap_or_else(|| Box::new("the smol task was dropped before it finished"))
    }
}

type Outcome = Result<(), SmolJoinError>;

/// Resolves when the detached task it belongs to ends.
pub type SmolJoinHandle = Pin<Box<dyn Future<Output = Outcome> + Send>>;

fn join_handle(done: async_channel::Receiver<Outcome>) -> SmolJoinHandle {
    Box::pin(async move { done.recv().await.unwrap_or(Err(SmolJoinError(None))) })
}

/// Polls the inner future, turning a panic into `Err`.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future<Output = ()>> Future for CatchUnwind<F> {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Err(panic) => Poll::Ready(Err(SmolJoinError(Some(panic)))),
        }
    }
}

impl Runtime for SmolRuntime {
    type JoinError = SmolJoinError;
    type JoinHandle = SmolJoinHandle;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (done_tx, done_rx) = async_channel::bounded(1);
        let guarded = CatchUnwind(Box::pin(fut));
        smol::spawn(async move {
            let _ = done_tx.try_send(guarded.await);
        })
        .detach();
        join_handle(done_rx)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        let (done_tx, done_rx) = async_channel::bounded(1);
        BLOCKING_IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        smol::unblock(move || {
            let outcome = catch_unwind(AssertUnwindSafe(f)).map_err(|panic| SmolJoinError(Some(panic)));
            BLOCKING_IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
            let _ = done_tx.try_send(outcome);
        })
        .detach();
        join_handle(done_rx)
    }
}

/// Blocking closures started and not yet finished.
static BLOCKING_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Waits, with the GIL released, until no blocking closure is in flight (at most `timeout`). Run at exit.
pub fn drain(py: Python<'_>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while BLOCKING_IN_FLIGHT.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        py.detach(|| std::thread::sleep(Duration::from_millis(1)));
    }
}

thread_local! {
    static TASK_LOCALS: RefCell<Option<TaskLocals>> = const { RefCell::new(None) };
}

/// Restores the previous task locals when a poll ends, panicking or not.
struct Restore(Option<TaskLocals>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        TASK_LOCALS.with(|slot| *slot.borrow_mut() = previous);
    }
}

/// A future that sees `locals` as its task locals while it is polled.
struct Scoped<F> {
    locals: TaskLocals,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let previous = TASK_LOCALS.with(|slot| slot.borrow_mut().replace(self.locals.clone()));
        let _restore = Restore(previous);
        self.fut.as_mut().poll(cx)
    }
}

impl ContextExt for SmolRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        Box::pin(Scoped { locals, fut: Box::pin(fut) })
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS.with(|slot| slot.borrow().clone())
    }
}
