//! Pinky, the stub engine: ignores weights, answers "Narf!".
//!
//! Rules: Pinky is a real engine for the plumbing — it runs on the worker thread behind the same trait as the real
//! engine, and its pieces go through the same UTF-8 / stop / think path. It is deterministic: the default reply is
//! a short thought then `reply_tokens` "Narf!" tokens; a script replays given byte pieces instead (to drive split
//! tags and split characters end to end); `fail_after` injects an engine error; `delay` is waited before every
//! token and a cancel cuts the wait short.

use std::time::Duration;

use crate::engine::{ChatRequest, Engine};
use crate::error::CortexError;
use crate::pipeline::{Flow, Generation, PromptInfo};

const THOUGHT: [&[u8]; 7] = [b"<think>", b"Narf", b"!", b" Poit", b"!", b"</think>", b"\n\n"];

/// Pinky's script and timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinkyOptions {
    /// Waited before each token; zero for benchmarks.
    pub delay: Duration,
    /// Tokens in the default reply after the thought.
    pub reply_tokens: usize,
    /// Start the default reply with a `<think>` block.
    pub think: bool,
    /// Replay exactly these pieces (token bytes) instead of the default reply.
    pub script: Option<Vec<Vec<u8>>>,
    /// Fail with an engine error once this many tokens were generated.
    pub fail_after: Option<usize>,
    /// Act as if the chat template pre-opened `<think>` in the prompt.
    pub pre_open_think: bool,
}

impl Default for PinkyOptions {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(5),
            reply_tokens: 24,
            think: true,
            script: None,
            fail_after: None,
            pre_open_think: false,
        }
    }
}

impl PinkyOptions {
    pub fn validate(&self) -> Result<(), CortexError> {
        if self.delay > Duration::from_secs(60) {
            return Err(CortexError::invalid(
                "delay",
                format!("{:?}", self.delay),
                "must be at most 60 seconds per token",
            ));
        }
        Ok(())
    }
}

/// The stub engine.
#[derive(Debug, Default)]
pub struct Pinky {
    options: PinkyOptions,
}

impl Pinky {
    pub fn new(options: PinkyOptions) -> Result<Self, CortexError> {
        options.validate()?;
        Ok(Self { options })
    }

    fn len(&self) -> usize {
        match &self.options.script {
            Some(script) => script.len(),
            None if self.options.think => THOUGHT.len() + self.options.reply_tokens,
            None => self.options.reply_tokens,
        }
    }

    fn piece(&self, i: usize) -> &[u8] {
        if let Some(script) = &self.options.script {
            return &script[i];
        }
        let i = if self.options.think {
            match THOUGHT.get(i) {
                Some(piece) => return piece,
                None => i - THOUGHT.len(),
            }
        } else {
            i
        };
        if i == 0 { b"Narf!" } else { b" Narf!" }
    }
}

impl Engine for Pinky {
    fn name(&self) -> &str {
        "pinky"
    }

    fn generate(&mut self, request: &ChatRequest, out: &mut Generation<'_>) -> Result<(), CortexError> {
        // Pinky has no tokenizer: a prompt "token" is a white-space separated word.
        let words: usize = request.messages.iter().map(|m| m.content.split_whitespace().count()).sum();
        out.prompt_processed(PromptInfo {
            prompt_tokens: u32::try_from(words).unwrap_or(u32::MAX),
            cached_tokens: 0,
            think_pre_opened: self.options.pre_open_think,
        });
        for i in 0..self.len() {
            if self.options.fail_after == Some(i) {
                return Err(CortexError::Engine(format!("Pinky: injected failure after {i} tokens")));
            }
            // A cancel during the wait is seen by `token`, which then says stop.
            out.cancel_token().sleep(self.options.delay);
            if out.token(self.piece(i)) == Flow::Stop {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Behavior, InferenceConfig};
    use crate::engine::{ChatMessage, Role};
    use crate::event::{FinishReason, InferenceEvent, ThoughtEvent};
    use crate::worker::{StreamItem, Worker};

    fn pinky(options: PinkyOptions) -> Worker {
        Worker::spawn("pinky", move || Ok(Box::new(Pinky::new(options)?) as Box<dyn Engine>)).unwrap()
    }

    fn request(behavior: Behavior) -> ChatRequest {
        ChatRequest {
            messages: vec![ChatMessage { role: Role::User, content: "are you pondering".into() }],
            config: InferenceConfig { behavior, ..Default::default() },
        }
    }

    fn collect(worker: &Worker, behavior: Behavior) -> Vec<StreamItem> {
        let stream = worker.submit(request(behavior)).unwrap();
        std::iter::from_fn(|| stream.receiver.recv_blocking().ok()).collect()
    }

    fn fast() -> PinkyOptions {
        PinkyOptions { delay: Duration::ZERO, ..Default::default() }
    }

    fn text_of(items: &[StreamItem]) -> (String, String) {
        let (mut thought, mut content) = (String::new(), String::new());
        for item in items {
            match item {
                Ok(InferenceEvent::Thought(ThoughtEvent::Delta(t))) => thought.push_str(t),
                Ok(InferenceEvent::Content(t)) => content.push_str(t),
                _ => {}
            }
        }
        (thought, content)
    }

    fn completion(items: &[StreamItem]) -> crate::event::Completion {
        match items.last() {
            Some(Ok(InferenceEvent::Complete(c))) => *c,
            other => panic!("expected Complete last, got {other:?}"),
        }
    }

    #[test]
    fn default_reply_is_a_thought_then_narfs() {
        let worker = pinky(PinkyOptions { reply_tokens: 3, ..fast() });
        let items = collect(&worker, Behavior::default());
        assert_eq!(items[0], Ok(InferenceEvent::ProcessStart));
        assert_eq!(items[1], Ok(InferenceEvent::Thought(ThoughtEvent::Start)));
        assert_eq!(text_of(&items), ("Narf! Poit!".into(), "Narf! Narf! Narf!".into()));
        let done = completion(&items);
        assert_eq!(done.finish_reason, FinishReason::Stop);
        assert_eq!(done.usage.prompt_tokens, 3);
        assert_eq!(done.usage.completion_tokens, 10);
    }

    #[test]
    fn max_tokens_ends_with_length() {
        let worker = pinky(PinkyOptions { think: false, ..fast() });
        let items = collect(&worker, Behavior { max_tokens: Some(2), ..Default::default() });
        assert_eq!(text_of(&items).1, "Narf! Narf!");
        assert_eq!(completion(&items).finish_reason, FinishReason::Length);
    }

    #[test]
    fn stop_strings_and_hidden_thoughts() {
        let worker = pinky(PinkyOptions { reply_tokens: 5, ..fast() });
        let behavior = Behavior { show_thinking: false, stop: vec!["f! Na".into()], ..Default::default() };
        let items = collect(&worker, behavior);
        assert!(!items.iter().any(|i| matches!(i, Ok(InferenceEvent::Thought(_)))));
        assert_eq!(text_of(&items).1, "Nar");
        assert_eq!(completion(&items).finish_reason, FinishReason::Stop);
    }

    #[test]
    fn a_script_with_split_characters_and_tags_comes_out_whole() {
        let crab = "🦀".as_bytes();
        let script = vec![
            b"<th".to_vec(),
            b"ink>hm".to_vec(),
            crab[..1].to_vec(),
            crab[1..].to_vec(),
            b"</thi".to_vec(),
            b"nk>ok".to_vec(),
        ];
        let worker = pinky(PinkyOptions { script: Some(script), ..fast() });
        let items = collect(&worker, Behavior::default());
        assert_eq!(text_of(&items), ("hm🦀".into(), "ok".into()));
    }

    #[test]
    fn injected_failure_ends_the_stream_with_an_error() {
        let worker = pinky(PinkyOptions { fail_after: Some(2), ..fast() });
        let items = collect(&worker, Behavior::default());
        assert!(matches!(items.last(), Some(Err(CortexError::Engine(m))) if m.contains("after 2 tokens")));
        // The worker is still serving: the next request starts, and fails the same way.
        let again = collect(&worker, Behavior::default());
        assert_eq!(again[0], Ok(InferenceEvent::ProcessStart));
        assert!(matches!(again.last(), Some(Err(CortexError::Engine(_)))));
    }

    #[test]
    fn dropping_the_stream_stops_the_worker_within_a_token() {
        let worker =
            pinky(PinkyOptions { delay: Duration::from_millis(2), reply_tokens: 1_000_000, ..Default::default() });
        let stream = worker.submit(request(Behavior::default())).unwrap();
        for _ in 0..5 {
            stream.receiver.recv_blocking().unwrap().unwrap();
        }
        drop(stream);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while worker.stats().busy() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!worker.stats().busy());
        let generated = worker.stats().generated_tokens();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(worker.stats().generated_tokens(), generated);
        assert!(generated < 50, "generated {generated} tokens after a drop");
    }

    #[test]
    fn close_fails_queued_requests_and_unblocks_an_idle_reader() {
        let mut worker = pinky(PinkyOptions { reply_tokens: 100_000, ..fast() });
        let running = worker.submit(request(Behavior::default())).unwrap();
        let queued = worker.submit(request(Behavior::default())).unwrap();
        // `running` is never read: its channel fills and the worker blocks on it until close.
        while running.receiver.len() < crate::worker::STREAM_CAPACITY {
            std::thread::sleep(Duration::from_millis(1));
        }
        worker.close();
        assert_eq!(queued.receiver.recv_blocking(), Ok(Err(CortexError::EngineClosed)));
        assert!(matches!(worker.submit(request(Behavior::default())), Err(CortexError::EngineClosed)));
    }

    #[test]
    fn invalid_requests_are_refused_before_queueing() {
        let worker = pinky(fast());
        let empty = ChatRequest::default();
        assert!(matches!(worker.submit(empty), Err(CortexError::InvalidRequest(_))));
    }
}
