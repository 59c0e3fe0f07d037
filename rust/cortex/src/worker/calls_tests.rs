//! Quick calls on the worker (tokenize, pieces, render, embed) and raw prompts, end to end on Pinky.

use std::time::{Duration, Instant};

use crate::config::InferenceConfig;
use crate::engine::Engine;
use crate::error::CortexError;
use crate::event::{InferenceEvent, StreamItem};
use crate::pinky::{PINKY_EMBEDDING_SIZE, Pinky, PinkyOptions};
use crate::request::{ChatMessage, ChatRequest, RawPrompt, Role};
use crate::worker::Worker;

fn pinky(options: PinkyOptions) -> Worker {
    Worker::spawn("pinky", move || Ok(Box::new(Pinky::new(options)?) as Box<dyn Engine>)).unwrap()
}

fn fast() -> PinkyOptions {
    PinkyOptions { delay: Duration::ZERO, reply_tokens: 3, ..Default::default() }
}

fn raw(text: &str) -> ChatRequest {
    ChatRequest { prompt: Some(RawPrompt { text: text.into(), suffix: None }), ..ChatRequest::default() }
}

fn drain(worker: &Worker, request: ChatRequest) -> Vec<StreamItem> {
    let stream = worker.submit(request).unwrap();
    std::iter::from_fn(|| stream.receiver.recv_blocking().ok()).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn tokenize_and_pieces_round_trip_and_name_a_bad_id() {
    let worker = pinky(fast());
    let ids = worker.call_blocking(|e| e.tokenize("héllo", true, true)).unwrap();
    assert_eq!(ids.len(), "héllo".len(), "Pinky's tokens are bytes");
    let pieces = worker.call_blocking(move |e| e.pieces(&ids)).unwrap();
    assert_eq!(String::from_utf8(pieces.concat()).unwrap(), "héllo");
    let err = worker.call_blocking(|e| e.pieces(&[65, 300])).unwrap_err();
    assert!(matches!(&err, CortexError::InvalidRequest(m) if m.contains("300")), "{err}");
}

#[test]
fn render_is_chatml_with_the_open_assistant_turn() {
    let worker = pinky(fast());
    let messages = vec![ChatMessage::new(Role::System, "be brief"), ChatMessage::new(Role::User, "hi")];
    let prompt = worker.call_blocking(move |e| e.render(&messages, &InferenceConfig::default())).unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn render_leaves_out_a_missing_content() {
    let worker = pinky(fast());
    let call = ChatMessage {
        role: Role::Assistant,
        tool_calls: vec![crate::request::ToolCall { id: "c1".into(), name: "f".into(), arguments: "{}".into() }],
        ..ChatMessage::default()
    };
    let prompt = worker.call_blocking(move |e| e.render(&[call], &InferenceConfig::default())).unwrap();
    assert!(prompt.starts_with("<|im_start|>assistant\n<|im_end|>\n"), "{prompt:?}");
}

#[test]
fn embeddings_are_unit_length_stable_and_closer_for_shared_words() {
    let worker = pinky(fast());
    let texts = ["the cat sat on the mat", "the cat sat on the mat", "a cat on a mat", "quarterly revenue grew"];
    let inputs: Vec<Vec<i32>> = texts.iter().map(|t| t.bytes().map(i32::from).collect()).collect();
    let vectors = worker.call_blocking(move |e| e.embed(&inputs, true)).unwrap();
    assert_eq!(vectors.len(), 4);
    assert!(vectors.iter().all(|v| v.len() == PINKY_EMBEDDING_SIZE as usize));
    for v in &vectors {
        assert!((cosine(v, v) - 1.0).abs() < 1e-5, "unit length");
    }
    assert_eq!(vectors[0], vectors[1]);
    assert!(cosine(&vectors[0], &vectors[2]) > cosine(&vectors[0], &vectors[3]));
}

#[test]
fn a_raw_prompt_is_plain_content_with_no_thought_parsing() {
    let worker = pinky(fast());
    let items = drain(&worker, raw("once upon a time"));
    let content: String = items
        .iter()
        .filter_map(|i| match i {
            Ok(InferenceEvent::Content(t)) => Some(t.as_str()),
            Ok(InferenceEvent::Thought(_)) => panic!("a raw prompt has no thoughts"),
            _ => None,
        })
        .collect();
    assert!(content.starts_with("<think>Narf! Poit!</think>\n\nNarf!"), "{content:?}");
    match items.last() {
        Some(Ok(InferenceEvent::Complete(done))) => assert_eq!(done.usage.prompt_tokens, 4),
        other => panic!("expected Complete, got {other:?}"),
    }
}

#[test]
fn a_request_with_both_messages_and_a_raw_prompt_is_refused() {
    let worker = pinky(fast());
    let mut both = raw("text");
    both.messages.push(ChatMessage::new(Role::User, "hi"));
    assert!(matches!(worker.submit(both), Err(CortexError::InvalidRequest(_))));
}

#[test]
fn calls_run_between_steps_while_a_generation_runs() {
    let worker = pinky(PinkyOptions { delay: Duration::from_millis(20), reply_tokens: 200, ..fast() });
    let chat = ChatRequest { messages: vec![ChatMessage::new(Role::User, "hi")], ..ChatRequest::default() };
    let stream = worker.submit(chat).unwrap();
    stream.receiver.recv_blocking().unwrap().unwrap();
    let started = Instant::now();
    let ids = worker.call_blocking(|e| e.tokenize("abc", false, false)).unwrap();
    assert_eq!(ids, vec![97, 98, 99]);
    assert!(started.elapsed() < Duration::from_secs(1), "the call waited for the whole generation");
    assert!(worker.stats().busy(), "the generation is still running");
}

#[test]
fn a_call_on_a_closed_worker_is_engine_closed() {
    let mut worker = pinky(fast());
    let caller = worker.caller();
    worker.close();
    assert!(matches!(caller.call(|e| e.tokenize("a", false, false)), Err(CortexError::EngineClosed)));
    assert!(matches!(worker.call_blocking(|e| Ok(e.info())), Err(CortexError::EngineClosed)));
}
