//! The worker lets its engine persist (`Engine::persist`) when it stops in order, and never after a panic.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::config::InferenceConfig;
use crate::engine::{Engine, EngineInfo, Seq};
use crate::error::CortexError;
use crate::pinky::{Pinky, PinkyOptions};
use crate::pipeline::Generation;
use crate::request::{ChatMessage, ChatRequest};
use crate::worker::Worker;

/// Pinky, counting the times it is asked to persist.
struct Counting {
    pinky: Pinky,
    persisted: Arc<AtomicUsize>,
}

impl Engine for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn admit(&mut self, request: &ChatRequest, free: &[usize], out: &mut Generation) -> Result<usize, CortexError> {
        self.pinky.admit(request, free, out)
    }
    fn step(&mut self, seqs: &mut [Seq]) -> Result<(), CortexError> {
        self.pinky.step(seqs)
    }
    fn release(&mut self, slot: usize) {
        self.pinky.release(slot);
    }
    fn info(&self) -> EngineInfo {
        self.pinky.info()
    }
    fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<i32>, CortexError> {
        self.pinky.tokenize(text, add_special, parse_special)
    }
    fn pieces(&self, ids: &[i32]) -> Result<Vec<Vec<u8>>, CortexError> {
        self.pinky.pieces(ids)
    }
    fn render(&self, messages: &[ChatMessage], config: &InferenceConfig) -> Result<String, CortexError> {
        self.pinky.render(messages, config)
    }
    fn persist(&mut self) {
        self.persisted.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting() -> (Worker, Arc<AtomicUsize>) {
    let persisted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&persisted);
    let worker = Worker::spawn("counting", move || {
        let pinky =
            Pinky::new(PinkyOptions { delay: Duration::from_millis(5), reply_tokens: 1000, ..Default::default() })?;
        Ok(Box::new(Counting { pinky, persisted: count }) as Box<dyn Engine>)
    })
    .unwrap();
    (worker, persisted)
}

#[test]
fn closing_persists_once_after_cutting_off_the_running_request() {
    let (mut worker, persisted) = counting();
    let request =
        ChatRequest { messages: vec![ChatMessage::new(crate::request::Role::User, "hi")], ..ChatRequest::default() };
    let stream = worker.submit(request).unwrap();
    assert!(stream.receiver.recv_blocking().is_ok(), "it started");
    assert_eq!(persisted.load(Ordering::SeqCst), 0);
    worker.close();
    assert_eq!(persisted.load(Ordering::SeqCst), 1);
    worker.close();
    assert_eq!(persisted.load(Ordering::SeqCst), 1, "close is idempotent");
}

#[test]
fn a_panic_stops_the_worker_without_persisting() {
    let (mut worker, persisted) = counting();
    let reply = worker.call(|_| -> Result<(), CortexError> { panic!("boom") }).unwrap();
    assert!(reply.recv_blocking().is_err(), "the call's reply channel closes");
    worker.close();
    assert_eq!(persisted.load(Ordering::SeqCst), 0);
}
