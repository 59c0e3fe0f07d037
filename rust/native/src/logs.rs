//! Cortex's `log` records (a KV-state file refused and removed, a store that cannot open) handed to Python's
//! `logging`, logger `rusty_genius.cortex`.
//!
//! Rules: the thread that logs (an engine's worker) never waits for the GIL: a thread holding it may be joining that
//! very worker (an engine closed or dropped by Python). Records go over a channel to one forwarding thread, started
//! at the first record, which takes the GIL to pass them on, and drops them once the interpreter is shutting down.

use std::sync::{OnceLock, mpsc};

use pyo3::prelude::*;

struct Forward {
    tx: OnceLock<mpsc::Sender<(log::Level, String)>>,
}

static LOGGER: Forward = Forward { tx: OnceLock::new() };

/// Installs the forwarding logger (once; a second call, or another logger already installed, is a no-op).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}

impl log::Log for Forward {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Debug
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            // A failed spawn drops `rx`: later records are dropped, as they would be with no logger at all.
            let _ = std::thread::Builder::new().name("genius-log".into()).spawn(move || forward(&rx));
            tx
        });
        let _ = tx.send((record.level(), record.args().to_string()));
    }

    fn flush(&self) {}
}

fn forward(rx: &mpsc::Receiver<(log::Level, String)>) {
    for (level, message) in rx {
        let level = match level {
            log::Level::Error => 40,
            log::Level::Warn => 30,
            log::Level::Info => 20,
            log::Level::Debug | log::Level::Trace => 10,
        };
        let _ = Python::try_attach(|py| -> PyResult<()> {
            let logger = py.import("logging")?.call_method1("getLogger", ("rusty_genius.cortex",))?;
            logger.call_method1("log", (level, "%s", message))?;
            Ok(())
        });
    }
}
