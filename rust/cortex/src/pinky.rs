//! Pinky, the stub engine: ignores weights, answers "Narf!".
//!
//! Rules: Pinky is a real engine for the plumbing — it runs on the worker thread behind the same trait as the real
//! engine, and its pieces go through the same UTF-8 / stop / think path. It is deterministic: the default reply is
//! a short thought then `reply_tokens` "Narf!" tokens; a script replays given byte pieces instead (to drive split
//! tags and split characters end to end); `fail_after` injects an engine error. It batches like the real engine:
//! up to `parallel` sequences run at once, and each step waits `delay` once then gives every running sequence its
//! next token, so N streams share the step time as they do on a batched llama.cpp context. A cancel cuts the wait
//! short. Pinky has no vocabulary and samples nothing: it ignores the sampling settings, `logit_bias` included (its
//! ids are checked for range like any config, never against a vocabulary). Asked for logprobs, it reports each
//! piece as certain: logprob 0.0, and the piece itself as the only alternative (none when 0 are asked for).
//! Its other abilities are as plain: its tokenizer is UTF-8 bytes (id = byte value, no special tokens; prompt usage
//! still counts white-space separated words), its template is ChatML, and its embeddings are hashed bags of
//! lowercase words (64 wide, signed feature hashing): texts sharing words are close, texts sharing none are
//! orthogonal on average, the same text always gives the same vector. A raw prompt is answered with the same script.
//! An assistant prefill (a chat ending with an assistant message of text, [`split_prefill`]) is rendered and counted
//! like the real engine's (its words are prompt words) and the think parser starts where it leaves it; the default
//! reply then continues it: after a prefill that leaves no thought open it leaves out its scripted thought (the answer
//! has begun), inside an open one it leaves out the thought's `<think>` (the thought goes on, then closes). A script is
//! replayed as it is.

use std::time::{Duration, Instant};

use crate::config::InferenceConfig;
use crate::engine::{Engine, EngineInfo, Seq, normalize};
use crate::error::CortexError;
use crate::event::TokenLogprob;
use crate::pipeline::{Flow, Generation, PromptInfo};
use crate::request::{ChatMessage, ChatRequest};
use crate::template::{CHATML, ChatTemplate, TemplateKwargs, split_prefill};
use crate::think::ThinkStart;

/// Width of Pinky's embeddings.
pub const PINKY_EMBEDDING_SIZE: u32 = 64;
/// The window Pinky reports (it holds no cache; this only gives clients a number to budget with).
const PINKY_CONTEXT: u32 = 4096;

/// How often a step's wait looks for a cancelled sequence.
const WAIT_SLICE: Duration = Duration::from_millis(5);

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
    /// Sequences generated at once.
    pub parallel: usize,
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
            parallel: 1,
        }
    }
}

impl PinkyOptions {
    pub fn validate(&self) -> Result<(), CortexError> {
        if !(1..=256).contains(&self.parallel) {
            return Err(CortexError::invalid("parallel", self.parallel, "must be between 1 and 256"));
        }
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
#[derive(Debug)]
pub struct Pinky {
    options: PinkyOptions,
    /// The next piece of the sequence on each slot, counted from its first.
    next: Vec<usize>,
    /// The pieces of the default reply each slot's sequence leaves out at its start (after an assistant prefill).
    skip: Vec<usize>,
    /// ChatML, compiled once.
    template: ChatTemplate,
}

impl Pinky {
    pub fn new(options: PinkyOptions) -> Result<Self, CortexError> {
        options.validate()?;
        let next = vec![0; options.parallel];
        let skip = vec![0; options.parallel];
        Ok(Self { options, next, skip, template: ChatTemplate::new(CHATML, "", "")? })
    }

    /// Waits one step's delay, cut short when a running sequence is cancelled (one alone waits on its token).
    fn wait(&self, seqs: &[Seq]) {
        let delay = self.options.delay;
        if delay.is_zero() {
            return;
        }
        if let [seq] = seqs {
            seq.out.cancel_token().sleep(delay);
            return;
        }
        let deadline = Instant::now() + delay;
        let mut now = Instant::now();
        while now < deadline && !seqs.iter().any(|s| s.out.cancel_token().is_cancelled()) {
            std::thread::sleep(WAIT_SLICE.min(deadline - now));
            now = Instant::now();
        }
    }

    fn len(&self) -> usize {
        match &self.options.script {
            Some(script) => script.len(),
            None if self.options.think => THOUGHT.len() + self.options.reply_tokens,
            None => self.options.reply_tokens,
        }
    }

    /// How many pieces of the default reply to leave out after an assistant prefill that leaves the parser at
    /// `think`: the whole scripted thought when the answer has begun, its `<think>` when a thought is open.
    fn skipped(&self, think: ThinkStart) -> usize {
        match (&self.options.script, self.options.think) {
            (None, true) if think.in_thought => 1,
            (None, true) => THOUGHT.len(),
            _ => 0,
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

/// Pushes one piece, with its (certain) logprob when the request wants logprobs.
fn push(out: &mut Generation, piece: &[u8]) -> Flow {
    let Some(k) = out.logprobs_wanted() else { return out.token(piece) };
    let token = String::from_utf8_lossy(piece).into_owned();
    let top = if k == 0 { Vec::new() } else { vec![(token.clone(), piece.to_vec(), 0.0)] };
    out.token_with_logprob(piece, TokenLogprob { token, bytes: piece.to_vec(), logprob: 0.0, top })
}

/// A prompt's size as Pinky's usage counts it: white-space separated words (Pinky has no tokenizer for prompts).
fn words(messages: &[ChatMessage]) -> usize {
    messages.iter().map(|m| m.content.split_whitespace().count()).sum()
}

fn pinky_byte(id: i32) -> Result<u8, CortexError> {
    u8::try_from(id).map_err(|_| {
        CortexError::InvalidRequest(format!(
            "token id {id} is not in Pinky's vocabulary (its tokens are bytes, 0..=255)"
        ))
    })
}

/// Signed feature hashing of the lowercase words of `text` (FNV-1a), [`PINKY_EMBEDDING_SIZE`] wide.
fn hashed_words(text: &str) -> Vec<f32> {
    let mut v = vec![0.0; PINKY_EMBEDDING_SIZE as usize];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let hash = word
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        let index = usize::try_from(hash % u64::from(PINKY_EMBEDDING_SIZE)).unwrap_or(0);
        v[index] += if hash >> 63 == 0 { 1.0 } else { -1.0 };
    }
    v
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Engine for Pinky {
    fn name(&self) -> &str {
        "pinky"
    }

    fn parallel(&self) -> usize {
        self.options.parallel
    }

    fn admit(&mut self, request: &ChatRequest, free: &[usize], out: &mut Generation) -> Result<usize, CortexError> {
        let mut think = ThinkStart::pre_opened(self.options.pre_open_think);
        let mut skip = 0;
        let words = match &request.prompt {
            Some(raw) if raw.suffix.is_some() => return Err(crate::engine::no_fill_in_middle()),
            Some(raw) => raw.text.split_whitespace().count(),
            None => {
                if let (_, Some(prefill)) = split_prefill(&request.messages)
                    && !prefill.is_empty()
                {
                    think = think.after(prefill);
                    skip = self.skipped(think);
                }
                words(&request.messages)
            }
        };
        out.prompt_processed(PromptInfo {
            prompt_tokens: u32::try_from(words).unwrap_or(u32::MAX),
            cached_tokens: 0,
            restored_tokens: 0,
            think,
            // Pinky replays tool calls in the Hermes format (`<tool_call>{json}</tool_call>` in its script).
            tool_format: None,
        });
        let slot = free[0];
        self.next[slot] = 0;
        self.skip[slot] = skip;
        Ok(slot)
    }

    fn step(&mut self, seqs: &mut [Seq]) -> Result<(), CortexError> {
        self.wait(seqs);
        for seq in seqs.iter_mut().filter(|s| s.active()) {
            let (i, skip) = (self.next[seq.slot], self.skip[seq.slot]);
            let len = self.len() - skip;
            if i >= len || seq.out.cancel_token().is_cancelled() {
                seq.done = Some(Ok(()));
                continue;
            }
            if self.options.fail_after == Some(i) {
                seq.done = Some(Err(CortexError::Engine(format!("Pinky: injected failure after {i} tokens"))));
                continue;
            }
            if let Some(close) = seq.out.take_forced() {
                // A thought over its budget: feed the close and skip the rest of the scripted thought.
                let rest = (i..len).find(|&j| contains(self.piece(skip + j), b"</think>")).map_or(i, |j| j + 1);
                self.next[seq.slot] = rest;
                if push(&mut seq.out, close.as_bytes()) == Flow::Stop || rest >= len {
                    seq.done = Some(Ok(()));
                }
                continue;
            }
            self.next[seq.slot] = i + 1;
            if push(&mut seq.out, self.piece(skip + i)) == Flow::Stop || i + 1 == len {
                seq.done = Some(Ok(()));
            }
        }
        Ok(())
    }

    fn release(&mut self, slot: usize) {
        self.next[slot] = 0;
        self.skip[slot] = 0;
    }

    fn info(&self) -> EngineInfo {
        EngineInfo {
            context_size: PINKY_CONTEXT,
            vocab_size: 256,
            embedding_size: PINKY_EMBEDDING_SIZE,
            pooling: "mean",
            embedding_only: false,
            fill_in_middle: false,
        }
    }

    fn tokenize(&self, text: &str, _add_special: bool, _parse_special: bool) -> Result<Vec<i32>, CortexError> {
        Ok(text.bytes().map(i32::from).collect())
    }

    /// Words, as its usage counts them: an assistant prefill's words count, as they are in the prompt.
    fn prompt_tokens(&self, messages: &[ChatMessage], _config: &InferenceConfig) -> Result<usize, CortexError> {
        Ok(words(messages))
    }

    fn pieces(&self, ids: &[i32]) -> Result<Vec<Vec<u8>>, CortexError> {
        ids.iter().map(|&id| Ok(vec![pinky_byte(id)?])).collect()
    }

    fn render(&self, messages: &[ChatMessage], config: &InferenceConfig) -> Result<String, CortexError> {
        let kwargs = TemplateKwargs {
            enable_thinking: config.reasoning.enabled,
            reasoning_effort: config.reasoning.effort.clone(),
        };
        let (messages, prefill) = split_prefill(messages);
        let mut prompt = self.template.render(messages, config.output.offered_tools(), true, &kwargs)?;
        prompt.push_str(prefill.unwrap_or_default());
        Ok(prompt)
    }

    fn embed(&mut self, inputs: &[Vec<i32>], normalized: bool) -> Result<Vec<Vec<f32>>, CortexError> {
        inputs
            .iter()
            .map(|ids| {
                let bytes = ids.iter().map(|&id| pinky_byte(id)).collect::<Result<Vec<u8>, _>>()?;
                let mut vector = hashed_words(&String::from_utf8_lossy(&bytes));
                if normalized {
                    normalize(&mut vector);
                }
                Ok(vector)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Behavior, InferenceConfig};
    use crate::event::{FinishReason, InferenceEvent, StreamItem, ThoughtEvent};
    use crate::request::{ChatMessage, Role};
    use crate::worker::Worker;

    fn pinky(options: PinkyOptions) -> Worker {
        Worker::spawn("pinky", move || Ok(Box::new(Pinky::new(options)?) as Box<dyn Engine>)).unwrap()
    }

    fn request(behavior: Behavior) -> ChatRequest {
        ChatRequest {
            messages: vec![ChatMessage::new(Role::User, "are you pondering")],
            config: InferenceConfig { behavior, ..Default::default() },
            prompt: None,
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
            Some(Ok(InferenceEvent::Complete(c))) => c.clone(),
            other => panic!("expected Complete last, got {other:?}"),
        }
    }

    #[test]
    fn default_reply_is_a_thought_then_narfs() {
        let worker = pinky(PinkyOptions { reply_tokens: 3, ..fast() });
        let items = collect(&worker, Behavior::default());
        assert!(matches!(items[0], Ok(InferenceEvent::ProcessStart(_))));
        assert_eq!(items[1], Ok(InferenceEvent::Thought(ThoughtEvent::Start)));
        assert_eq!(text_of(&items), ("Narf! Poit!".into(), "Narf! Narf! Narf!".into()));
        let done = completion(&items);
        assert_eq!(done.finish_reason, FinishReason::Stop);
        assert_eq!(done.usage.prompt_tokens, 3);
        assert_eq!(done.usage.completion_tokens, 10);
    }

    /// The logprob events.
    fn logprob_tokens(items: &[StreamItem]) -> Vec<crate::event::TokenLogprob> {
        let lps = items.iter().filter_map(|item| match item {
            Ok(InferenceEvent::TokenLogprob(lp)) => Some(lp.clone()),
            _ => None,
        });
        lps.collect()
    }

    /// Whether each token's logprob came before the content it wrote.
    fn logprobs_lead(items: &[StreamItem]) -> bool {
        let (mut tokens, mut content) = (String::new(), String::new());
        for item in items {
            match item {
                Ok(InferenceEvent::TokenLogprob(lp)) => tokens.push_str(&lp.token),
                Ok(InferenceEvent::Content(t)) => content.push_str(t),
                _ => continue,
            }
            if !tokens.starts_with(&content) {
                return false;
            }
        }
        true
    }

    #[test]
    fn logprobs_cover_the_answer_tokens_only() {
        let worker = pinky(PinkyOptions { reply_tokens: 3, ..fast() });
        let items = collect(&worker, Behavior { logprobs: Some(2), ..Default::default() });
        let lps = logprob_tokens(&items);
        let tokens: Vec<&str> = lps.iter().map(|lp| lp.token.as_str()).collect();
        // Not the thought, not its tags, not the white space dropped after it.
        assert_eq!(tokens, ["Narf!", " Narf!", " Narf!"]);
        assert_eq!(tokens.concat(), text_of(&items).1);
        assert!(logprobs_lead(&items), "{items:?}");
        for lp in &lps {
            assert_eq!((lp.logprob, lp.bytes.as_slice()), (0.0, lp.token.as_bytes()));
            assert_eq!(lp.top, vec![(lp.token.clone(), lp.bytes.clone(), 0.0)]);
        }
        let none = collect(&worker, Behavior { logprobs: Some(0), ..Default::default() });
        assert!(logprob_tokens(&none).iter().all(|lp| lp.top.is_empty()), "k = 0: no alternatives");
        assert_eq!(logprob_tokens(&none).len(), 3);
        let off = collect(&worker, Behavior::default());
        assert!(logprob_tokens(&off).is_empty(), "not asked, not sent");
    }

    #[test]
    fn logprobs_of_a_stop_strings_tokens_are_dropped_with_it() {
        let worker = pinky(PinkyOptions { reply_tokens: 5, think: false, ..fast() });
        // "Narf!" writes "f!", held as a possible start of the stop string; " Narf!" completes it.
        let behavior = Behavior { stop: vec!["f! Na".into()], logprobs: Some(1), ..Default::default() };
        let items = collect(&worker, behavior);
        assert_eq!(text_of(&items).1, "Nar");
        assert!(logprob_tokens(&items).is_empty());
        // A stop string that never matches releases each token's logprob with its text.
        let behavior =
            Behavior { stop: vec!["f!?".into()], logprobs: Some(1), max_tokens: Some(3), ..Default::default() };
        let items = collect(&worker, behavior);
        let tokens: Vec<String> = logprob_tokens(&items).into_iter().map(|lp| lp.token).collect();
        assert_eq!(tokens.concat(), text_of(&items).1);
        assert_eq!(tokens.len(), 3);
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

    fn run(worker: &Worker, config: InferenceConfig) -> Vec<StreamItem> {
        let request = ChatRequest { messages: vec![ChatMessage::new(Role::User, "weather?")], config, prompt: None };
        let stream = worker.submit(request).unwrap();
        std::iter::from_fn(|| stream.receiver.recv_blocking().ok()).collect()
    }

    fn with_tool() -> InferenceConfig {
        let tool = crate::config::ToolSpec {
            name: "get_weather".into(),
            description: None,
            parameters: r#"{"type": "object", "properties": {"city": {"type": "string"}}}"#.into(),
        };
        InferenceConfig {
            output: crate::config::Output { tools: vec![tool], ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn a_scripted_tool_call_is_replayed_as_tool_call_events() {
        use crate::event::ToolCallEvent;
        let script: Vec<Vec<u8>> = [
            "Let me check.",
            "<tool_",
            "call>\n{\"name\": \"get_weather\", ",
            "\"arguments\": {\"city\": \"Paris\"}}",
            "\n</tool_call>",
        ]
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
        let worker = pinky(PinkyOptions { script: Some(script.clone()), ..fast() });
        let items = run(&worker, with_tool());
        assert_eq!(text_of(&items).1, "Let me check.");
        let mut name = None;
        let mut arguments = String::new();
        for item in &items {
            match item {
                Ok(InferenceEvent::ToolCall(ToolCallEvent::Start { index: 0, id, name: n })) => {
                    assert!(id.starts_with("call_"), "{id}");
                    name = Some(n.clone());
                }
                Ok(InferenceEvent::ToolCall(ToolCallEvent::Arguments { index: 0, delta })) => arguments.push_str(delta),
                _ => {}
            }
        }
        assert_eq!(name.as_deref(), Some("get_weather"));
        let parsed: serde_json::Value = serde_json::from_str(&arguments).unwrap();
        assert_eq!(parsed, serde_json::json!({"city": "Paris"}));
        assert_eq!(completion(&items).finish_reason, FinishReason::ToolCalls);
        // Without tools in the request the same text is plain content.
        let plain = run(&worker, InferenceConfig::default());
        assert!(text_of(&plain).1.contains("<tool_call>"));
        assert_eq!(completion(&plain).finish_reason, FinishReason::Stop);
    }

    #[test]
    fn a_thought_over_its_budget_is_closed_and_the_answer_follows() {
        let thought: Vec<Vec<u8>> = ["<think>", "one", " two", " three", " four", " five", "</think>", "answer"]
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        let worker = pinky(PinkyOptions { script: Some(thought), ..fast() });
        let mut config = InferenceConfig::default();
        config.reasoning.budget_tokens = Some(2);
        let items = run(&worker, config);
        // The forced close is the model's usual "\n</think>\n\n": the thought keeps its new line.
        assert_eq!(text_of(&items), ("one two\n".into(), "answer".into()));
        assert!(items.iter().any(|i| matches!(i, Ok(InferenceEvent::Thought(ThoughtEvent::Stop)))));
        // Unlimited, the whole thought comes through.
        let items = run(&worker, InferenceConfig::default());
        assert_eq!(text_of(&items), ("one two three four five".into(), "answer".into()));
    }

    fn prefilled(prefill: &str) -> Vec<ChatMessage> {
        vec![ChatMessage::new(Role::User, "capital of France?"), ChatMessage::new(Role::Assistant, prefill)]
    }

    fn chat(worker: &Worker, messages: Vec<ChatMessage>) -> Vec<StreamItem> {
        let request = ChatRequest { messages, config: InferenceConfig::default(), prompt: None };
        let stream = worker.submit(request).unwrap();
        std::iter::from_fn(|| stream.receiver.recv_blocking().ok()).collect()
    }

    #[test]
    fn an_assistant_prefill_is_continued_not_closed() {
        let engine = Pinky::new(fast()).unwrap();
        let config = InferenceConfig::default();
        let prompt = engine.render(&prefilled("The capital is"), &config).unwrap();
        assert_eq!(prompt, "<|im_start|>user\ncapital of France?<|im_end|>\n<|im_start|>assistant\nThe capital is");
        // Its words are prompt words, as the prompt holds them.
        assert_eq!(engine.prompt_tokens(&prefilled("The capital is"), &config).unwrap(), 6);
        // An empty prefill is the open turn alone: as if it were not there.
        let plain = engine.render(&prefilled("")[..1], &config).unwrap();
        assert_eq!(engine.render(&prefilled(""), &config).unwrap(), plain);
        assert!(plain.ends_with("<|im_end|>\n<|im_start|>assistant\n"), "{plain:?}");
        // An assistant turn that calls tools is finished: the answer is a new turn.
        let mut calls = prefilled("");
        calls[1].tool_calls =
            vec![crate::request::ToolCall { id: "c1".into(), name: "f".into(), arguments: "{}".into() }];
        let prompt = engine.render(&calls, &config).unwrap();
        assert!(prompt.ends_with("<|im_start|>assistant\n<|im_end|>\n<|im_start|>assistant\n"), "{prompt:?}");
    }

    #[test]
    fn the_default_reply_continues_a_prefill() {
        let worker = pinky(PinkyOptions { reply_tokens: 3, ..fast() });
        // The answer has begun: no thought first, and the usage counts the prefill's words.
        let items = chat(&worker, prefilled("The capital is"));
        assert_eq!(text_of(&items), (String::new(), "Narf! Narf! Narf!".into()));
        assert!(!items.iter().any(|i| matches!(i, Ok(InferenceEvent::Thought(_)))));
        let done = completion(&items);
        assert_eq!((done.usage.prompt_tokens, done.usage.completion_tokens), (6, 3));
        // A thought left open: it goes on (without a second `<think>`), closes, and the answer follows.
        let items = chat(&worker, prefilled("<think>Hmm,"));
        assert_eq!(items[1], Ok(InferenceEvent::Thought(ThoughtEvent::Start)));
        assert_eq!(text_of(&items), ("Narf! Poit!".into(), "Narf! Narf! Narf!".into()));
        // A thought closed in the prefill: the answer.
        let items = chat(&worker, prefilled("<think>Hmm.</think>It is"));
        assert_eq!(text_of(&items), (String::new(), "Narf! Narf! Narf!".into()));
        // An empty prefill: the usual reply, thought first.
        assert_eq!(text_of(&chat(&worker, prefilled(""))), ("Narf! Poit!".into(), "Narf! Narf! Narf!".into()));
    }

    #[test]
    fn a_script_after_a_prefill_is_parsed_from_where_the_prefill_ends() {
        let script: Vec<Vec<u8>> = [" more", "</think>", "\n\nok"].iter().map(|p| p.as_bytes().to_vec()).collect();
        let worker = pinky(PinkyOptions { script: Some(script), ..fast() });
        // Inside the prefill's open thought: the thought's rest, its leading space kept, then the answer.
        assert_eq!(text_of(&chat(&worker, prefilled("<think>one"))), (" more".into(), "ok".into()));
        // After a template's pre-opened `<think>`, plain prefill text is thought too.
        let worker = pinky(PinkyOptions {
            script: Some(vec![b" two".to_vec(), b"</think>".to_vec(), b"ok".to_vec()]),
            pre_open_think: true,
            ..fast()
        });
        assert_eq!(text_of(&chat(&worker, prefilled("one"))), (" two".into(), "ok".into()));
        // Without a prefill a pre-opened thought drops its leading white space, as before.
        let request = vec![ChatMessage::new(Role::User, "hi")];
        assert_eq!(text_of(&chat(&worker, request)), ("two".into(), "ok".into()));
    }

    #[test]
    fn injected_failure_ends_the_stream_with_an_error() {
        let worker = pinky(PinkyOptions { fail_after: Some(2), ..fast() });
        let items = collect(&worker, Behavior::default());
        assert!(matches!(items.last(), Some(Err(CortexError::Engine(m))) if m.contains("after 2 tokens")));
        // The worker is still serving: the next request starts, and fails the same way.
        let again = collect(&worker, Behavior::default());
        assert!(matches!(again[0], Ok(InferenceEvent::ProcessStart(_))));
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

    fn drain(stream: &crate::worker::EventStream) -> Vec<StreamItem> {
        std::iter::from_fn(|| stream.receiver.recv_blocking().ok()).collect()
    }

    #[test]
    fn parallel_sequences_share_each_step() {
        let delay = Duration::from_millis(20);
        let worker = pinky(PinkyOptions { delay, reply_tokens: 10, think: false, parallel: 4, ..Default::default() });
        let started = std::time::Instant::now();
        let streams: Vec<_> = (0..4).map(|_| worker.submit(request(Behavior::default())).unwrap()).collect();
        let all: Vec<_> = streams.iter().map(drain).collect();
        let took = started.elapsed();
        for items in &all {
            assert_eq!(text_of(items).1, "Narf! Narf! Narf! Narf! Narf! Narf! Narf! Narf! Narf! Narf!");
            assert_eq!(completion(items).finish_reason, FinishReason::Stop);
        }
        // Four answers of 10 tokens in about 10 steps, not 40 (one at a time).
        assert!(took < delay * 25, "4 parallel answers took {took:?}");
        assert_eq!(worker.stats().parallel(), 4);
        assert_eq!(worker.stats().completed_requests(), 4);
    }

    #[test]
    fn queued_requests_start_as_slots_free_and_a_cancel_disturbs_no_other() {
        let options =
            PinkyOptions { delay: Duration::from_millis(2), reply_tokens: 50, think: false, parallel: 2, ..fast() };
        let worker = pinky(options);
        let first = worker.submit(request(Behavior::default())).unwrap();
        let second = worker.submit(request(Behavior::default())).unwrap();
        let third = worker.submit(request(Behavior::default())).unwrap();
        // Two run, the third waits: it has not even started.
        first.receiver.recv_blocking().unwrap().unwrap();
        second.receiver.recv_blocking().unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert!(third.receiver.is_empty(), "the third request started before a slot was free");
        assert_eq!(worker.stats().running(), 2);
        first.cancel.cancel();
        let first_items = drain(&first);
        assert_eq!(completion(&first_items).finish_reason, FinishReason::Cancelled);
        // The freed slot goes to the third request; the second is undisturbed.
        let (second_items, third_items) = (drain(&second), drain(&third));
        for items in [&second_items, &third_items] {
            assert_eq!(completion(items).finish_reason, FinishReason::Stop);
            assert_eq!(text_of(items).1.matches("Narf!").count(), 50);
        }
    }

    #[test]
    fn a_reader_that_falls_behind_holds_back_only_its_own_stream() {
        let options = PinkyOptions { reply_tokens: 2_000, think: false, parallel: 2, ..fast() };
        let worker = pinky(options);
        let idle = worker.submit(request(Behavior::default())).unwrap();
        let busy = worker.submit(request(Behavior::default())).unwrap();
        // `idle` is never read while `busy` is: its channel fills, and `busy` still runs to the end.
        let items = drain(&busy);
        assert_eq!(completion(&items).finish_reason, FinishReason::Stop);
        assert_eq!(text_of(&items).1.matches("Narf!").count(), 2_000);
        assert_eq!(idle.receiver.len(), crate::worker::STREAM_CAPACITY);
        // Once read, the held-back stream resumes and ends whole.
        let rest = drain(&idle);
        assert_eq!(text_of(&rest).1.matches("Narf!").count(), 2_000);
        assert_eq!(completion(&rest).finish_reason, FinishReason::Stop);
    }

    #[test]
    fn an_injected_failure_fails_only_its_own_sequence() {
        let worker = pinky(PinkyOptions { fail_after: Some(3), parallel: 3, ..fast() });
        let streams: Vec<_> = (0..3).map(|_| worker.submit(request(Behavior::default())).unwrap()).collect();
        for stream in &streams {
            assert!(matches!(drain(stream).last(), Some(Err(CortexError::Engine(_)))));
        }
        assert_eq!(worker.stats().running(), 0);
    }

    #[test]
    fn a_request_cancelled_while_queued_ends_at_once_with_cancelled() {
        let options = PinkyOptions { delay: Duration::from_millis(50), reply_tokens: 1_000, ..fast() };
        let worker = pinky(options);
        let running = worker.submit(request(Behavior::default())).unwrap();
        let queued = worker.submit(request(Behavior::default())).unwrap();
        running.receiver.recv_blocking().unwrap().unwrap();
        queued.cancel.cancel();
        let started = std::time::Instant::now();
        let items = drain(&queued);
        assert!(started.elapsed() < Duration::from_secs(2), "waited for the running request's slot");
        assert!(matches!(items[0], Ok(InferenceEvent::ProcessStart(_))));
        let done = completion(&items);
        assert_eq!((done.finish_reason, done.usage.completion_tokens), (FinishReason::Cancelled, 0));
        assert!(worker.stats().busy(), "the running request is undisturbed");
    }

    #[test]
    fn parallel_is_checked() {
        assert!(matches!(
            Pinky::new(PinkyOptions { parallel: 0, ..fast() }),
            Err(CortexError::InvalidConfig { field: "parallel", .. })
        ));
    }

    #[test]
    fn invalid_requests_are_refused_before_queueing() {
        let worker = pinky(fast());
        let empty = ChatRequest::default();
        assert!(matches!(worker.submit(empty), Err(CortexError::InvalidRequest(_))));
    }
}
