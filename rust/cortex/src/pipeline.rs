//! One generation's output path: token bytes → UTF-8 → stop strings → think parser → events on the channel.
//!
//! Rules: every engine pushes raw token bytes through [`Generation::token`] (or, when [`Generation::logprobs_wanted`]
//! says so, [`Generation::token_with_logprob`]) and obeys the [`Flow`] it returns. The
//! Generation owns cancellation (checked before every token), `max_tokens`, usage counting and timings, so engines
//! cannot disagree on them. Events are sent as soon as they are complete, never blocking the worker: when a reader
//! lets its channel fill, the events wait here and the generation is *backlogged* — engines do not advance it
//! until the reader catches up, while the other sequences in the batch go on. A token's log-probability is queued
//! before the text events the token produces and reported only for answer tokens: a token that begins inside a
//! thought or ends inside one is reasoning, and one whose text the think parser drops (the white space after a
//! thought) reaches no event; while the stop matcher holds text back, the logprobs of the tokens that wrote it wait
//! with it, and are dropped with it when a stop string matches. Layering: below `engine` and `worker`
//! (both hold Generations); it references only the text stages, `request`, `event`, `stats`, `cancel` and `error`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use async_channel::{Sender, TrySendError};

use crate::cancel::CancelToken;
use crate::error::CortexError;
use crate::event::{Completion, FinishReason, InferenceEvent, StreamItem, Timings, TokenLogprob, Usage};
use crate::request::ChatRequest;
use crate::stats::WorkerStats;
use crate::stop::StopMatcher;
use crate::think::{ThinkParser, ThinkStart, ThinkTags};
use crate::tools::{ToolCallParser, ToolFormat};
use crate::utf8::Utf8Stream;

/// What an engine reports once its prompt is evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromptInfo {
    pub prompt_tokens: u32,
    /// Prompt tokens reused from the engine's cache rather than evaluated.
    pub cached_tokens: u32,
    /// Of `cached_tokens`, those restored from the KV-state store.
    pub restored_tokens: u32,
    /// Where the rendered prompt leaves the think parser: inside an open `<think>` (the template pre-opened it, or an
    /// assistant prefill did), so the output starts as a thought, or in the answer.
    pub think: ThinkStart,
    /// The syntax the model writes tool calls in (its family's); `None`: Hermes `<tool_call>`, what models whose
    /// template cannot show tools are told to write.
    pub tool_format: Option<ToolFormat>,
}

/// What an engine feeds the model when a thought runs past its budget: the close tag, then the answer.
pub const FORCED_THOUGHT_CLOSE: &str = "\n</think>\n\n";

/// Whether the engine should generate another token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Flow {
    Continue,
    Stop,
}

/// The per-request sink an engine writes tokens into.
#[derive(Debug)]
pub struct Generation {
    tx: Sender<StreamItem>,
    cancel: CancelToken,
    stats: Arc<WorkerStats>,
    /// Events the channel had no room for yet, oldest first.
    pending: VecDeque<StreamItem>,
    ended: bool,
    show_thinking: bool,
    max_tokens: Option<u32>,
    utf8: Utf8Stream,
    stop: StopMatcher,
    think: ThinkParser,
    decoded: String,
    shaped: String,
    events: Vec<InferenceEvent>,
    usage: Usage,
    picked_up: Instant,
    prompt_done: Option<Instant>,
    finish: Option<FinishReason>,
    /// Whether the request offers tools (then content goes through a tool-call parser).
    offers_tools: bool,
    /// A raw completion: its text is content as it is, with no think parsing.
    raw: bool,
    tools: Option<ToolCallParser>,
    /// Most tokens a thought may take, and how many the current one took.
    thought_budget: Option<u32>,
    thought_tokens: u32,
    /// The thought ran past its budget and the engine has not yet been told to close it.
    close_pending: bool,
    /// Alternatives per token when the request asked for logprobs (`Behavior::logprobs`).
    logprobs: Option<u32>,
    /// Logprobs of tokens whose text the stop matcher still holds, each with whether a thought was open before it.
    held_logprobs: Vec<(TokenLogprob, bool)>,
}

/// Unique per process and request: seeds tool call ids (`call_<seed>_<n>`).
fn call_id_prefix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{:x}{:04x}", u64::from(nanos) ^ (u64::from(std::process::id()) << 32), n & 0xffff)
}

impl Generation {
    pub(crate) fn new(
        request: &ChatRequest,
        tx: Sender<StreamItem>,
        cancel: CancelToken,
        stats: Arc<WorkerStats>,
    ) -> Self {
        let behavior = &request.config.behavior;
        Self {
            tx,
            cancel,
            stats,
            pending: VecDeque::new(),
            ended: false,
            show_thinking: behavior.show_thinking,
            max_tokens: behavior.max_tokens,
            utf8: Utf8Stream::default(),
            stop: StopMatcher::new(behavior.stop.clone()),
            think: if request.prompt.is_some() {
                ThinkParser::plain()
            } else {
                ThinkParser::new(ThinkTags::default(), false)
            },
            decoded: String::new(),
            shaped: String::new(),
            events: Vec::with_capacity(4),
            usage: Usage::default(),
            picked_up: Instant::now(),
            prompt_done: None,
            finish: None,
            offers_tools: request.prompt.is_none() && !request.config.output.offered_tools().is_empty(),
            raw: request.prompt.is_some(),
            tools: None,
            thought_budget: request.config.reasoning.budget_tokens,
            thought_tokens: 0,
            close_pending: false,
            logprobs: behavior.logprobs,
            held_logprobs: Vec::new(),
        }
    }

    /// True while the model is inside a thought: a constraint on the answer waits until this turns false.
    pub fn in_thought(&self) -> bool {
        self.think.in_thought()
    }

    /// `Some(k)` when the next token's log-probability and its `k` likeliest alternatives are wanted: the request
    /// asked for logprobs and the model is not inside a thought (reasoning tokens are not reported). The engine then
    /// pushes the token with [`Generation::token_with_logprob`].
    pub fn logprobs_wanted(&self) -> Option<u32> {
        self.logprobs.filter(|_| !self.think.in_thought() && self.finish.is_none())
    }

    /// Text the engine must feed the model now instead of sampling (each of its tokens then goes through
    /// [`Generation::token`] like a sampled one): the thought ran past its budget, so it is closed and the answer
    /// follows. Returned once.
    pub fn take_forced(&mut self) -> Option<&'static str> {
        if self.close_pending {
            self.close_pending = false;
            return Some(FORCED_THOUGHT_CLOSE);
        }
        None
    }

    /// The request's cancellation token, for engines that wait between tokens.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// True while events wait for room in the channel: the engine must not advance this generation.
    pub fn backlogged(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Sends `ProcessStart` with the prompt's counts known so far (see [`Generation::admitted`]). Returns false
    /// when the reader is already gone.
    pub(crate) fn start(&mut self) -> bool {
        self.pending.push_back(Ok(InferenceEvent::ProcessStart(self.usage)));
        self.flush()
    }

    /// Records that `n` messages of the conversation were left out so that it fit (the answer's usage says so).
    pub fn dropped_messages(&mut self, n: usize) {
        self.usage.dropped_messages = u32::try_from(n).unwrap_or(u32::MAX);
    }

    /// Records `n` tokens taken out of the context by a context shift (of the prompt, or while generating).
    pub fn shifted(&mut self, n: usize) {
        self.usage.shifted_tokens = self.usage.shifted_tokens.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// Ends the generation with `finish_reason = length` after `cap` tokens when the request set no `max_tokens`
    /// (a context that shifts never fills, so something else must end it).
    pub fn cap_tokens(&mut self, cap: u32) {
        self.max_tokens.get_or_insert(cap);
    }

    /// Records a checked draft: `drafted` tokens fed after the last one, `kept` of them picked by the model.
    pub fn drafted(&mut self, drafted: usize, kept: usize) {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.usage.draft_tokens = self.usage.draft_tokens.saturating_add(count(drafted));
        self.usage.accepted_draft_tokens = self.usage.accepted_draft_tokens.saturating_add(count(kept));
    }

    /// Records the prompt's size at admission (before it is evaluated): `ProcessStart` reports it. `restored_tokens`
    /// are those of `cached_tokens` read back from the KV-state store.
    pub fn admitted(&mut self, prompt_tokens: usize, cached_tokens: usize, restored_tokens: usize) {
        self.usage.prompt_tokens = u32::try_from(prompt_tokens).unwrap_or(u32::MAX);
        self.usage.cached_prompt_tokens = u32::try_from(cached_tokens).unwrap_or(u32::MAX);
        self.usage.restored_prompt_tokens = u32::try_from(restored_tokens).unwrap_or(u32::MAX);
    }

    /// Records the evaluated prompt. Call once, before the first token.
    pub fn prompt_processed(&mut self, info: PromptInfo) {
        self.usage.prompt_tokens = info.prompt_tokens;
        self.usage.cached_prompt_tokens = info.cached_tokens;
        self.usage.restored_prompt_tokens = info.restored_tokens;
        if !self.raw {
            self.think = ThinkParser::starting(ThinkTags::default(), info.think);
        }
        if self.offers_tools {
            self.tools = Some(ToolCallParser::new(info.tool_format.unwrap_or(ToolFormat::Hermes), &call_id_prefix()));
        }
        self.prompt_done = Some(Instant::now());
        self.check_budget();
    }

    /// Marks the thought for closing once it has used its budget.
    fn check_budget(&mut self) {
        if let Some(budget) = self.thought_budget
            && self.think.in_thought()
            && self.thought_tokens >= budget
        {
            self.close_pending = true;
            // Once: after the forced close a new thought is not limited again.
            self.thought_budget = None;
        }
    }

    /// Pushes one generated token's bytes. The engine must stop when this returns [`Flow::Stop`].
    pub fn token(&mut self, piece: &[u8]) -> Flow {
        self.push_token(piece, None)
    }

    /// [`Generation::token`] with the token's log-probability (see [`Generation::logprobs_wanted`]): it is delivered
    /// before the text the token produces, when the token belongs to the answer.
    pub fn token_with_logprob(&mut self, piece: &[u8], logprob: TokenLogprob) -> Flow {
        self.push_token(piece, Some(logprob))
    }

    fn push_token(&mut self, piece: &[u8], logprob: Option<TokenLogprob>) -> Flow {
        if self.finish.is_some() {
            return Flow::Stop;
        }
        if self.cancel.is_cancelled() {
            return self.stop_with(FinishReason::Cancelled);
        }
        if self.prompt_done.is_none() {
            self.prompt_processed(PromptInfo::default());
        }
        self.usage.completion_tokens += 1;
        self.stats.count_token();
        let was_thinking = self.think.in_thought();
        self.utf8.push(piece, &mut self.decoded);
        if let Some(logprob) = logprob
            && self.logprobs.is_some()
        {
            self.held_logprobs.push((logprob, was_thinking));
        }
        let mark = self.events.len();
        let matched = self.shape();
        if matched {
            self.held_logprobs.clear();
        } else if !self.stop.holding() {
            self.release_logprobs(mark);
        }
        if was_thinking && self.think.in_thought() {
            self.thought_tokens += 1;
            self.check_budget();
        }
        if !self.deliver() {
            return self.stop_with(FinishReason::Cancelled);
        }
        if matched {
            return self.stop_with(FinishReason::Stop);
        }
        if self.max_tokens.is_some_and(|max| self.usage.completion_tokens >= max) {
            return self.stop_with(FinishReason::Length);
        }
        Flow::Continue
    }

    /// The context window is full: the generation ends with `finish_reason = length`.
    pub fn context_full(&mut self) -> Flow {
        self.stop_with(FinishReason::Length)
    }

    /// Flushes held text and sends `Complete`. Called by the worker once the engine says this sequence is done.
    pub(crate) fn complete(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.finish.is_none() && self.cancel.is_cancelled() {
            self.finish = Some(FinishReason::Cancelled);
        }
        // Only a stop-string match sets `Stop` here; it discards everything after the match, so nothing is flushed.
        let matched_stop_string = self.finish == Some(FinishReason::Stop);
        if !matched_stop_string {
            self.utf8.finish(&mut self.decoded);
            let mark = self.events.len();
            if self.shape() {
                self.finish.get_or_insert(FinishReason::Stop);
            } else {
                self.stop.finish(&mut self.shaped);
                let shaped = std::mem::take(&mut self.shaped);
                self.parse(&shaped);
                self.release_logprobs(mark);
            }
        }
        self.held_logprobs.clear();
        let mut tail = Vec::new();
        self.think.finish(&mut tail);
        self.route(tail);
        let mut calls = 0;
        if let Some(tools) = &mut self.tools {
            tools.finish(&mut self.events);
            calls = tools.calls();
        }
        let mut finish_reason = self.finish.unwrap_or(FinishReason::Stop);
        if calls > 0 && finish_reason == FinishReason::Stop {
            finish_reason = FinishReason::ToolCalls;
        }
        let end = Instant::now();
        let prompt_done = self.prompt_done.unwrap_or(end);
        let timings = Timings::from_counts(
            ms(prompt_done - self.picked_up),
            self.usage.prompt_tokens - self.usage.cached_prompt_tokens,
            ms(end - prompt_done),
            self.usage.completion_tokens,
        );
        self.stats.end_request();
        let stop_sequence = self.stop.matched().filter(|_| finish_reason == FinishReason::Stop).map(str::to_owned);
        self.events.push(InferenceEvent::Complete(Completion {
            finish_reason,
            usage: self.usage,
            timings,
            stop_sequence,
        }));
        self.deliver();
    }

    /// Queues the held logprobs of answer tokens at `mark` in `events` (before the text events that came after it);
    /// drops those of reasoning tokens and of white space the think parser dropped.
    fn release_logprobs(&mut self, mark: usize) {
        if self.held_logprobs.is_empty() {
            return;
        }
        let answer = !self.think.in_thought() && !self.think.skipping_space();
        let released = self
            .held_logprobs
            .drain(..)
            .filter(|&(_, was_thinking)| answer && !was_thinking)
            .map(|(logprob, _)| InferenceEvent::TokenLogprob(logprob));
        self.events.splice(mark..mark, released);
    }

    /// Runs decoded text through the stop matcher into `shaped`. Returns true on a stop-string match.
    fn shape(&mut self) -> bool {
        if self.decoded.is_empty() {
            return false;
        }
        let matched = self.stop.push(&self.decoded, &mut self.shaped);
        self.decoded.clear();
        if !self.shaped.is_empty() {
            let shaped = std::mem::take(&mut self.shaped);
            self.parse(&shaped);
            self.shaped = shaped;
            self.shaped.clear();
        }
        matched
    }

    /// Text after stop strings → think parser → (when tools are offered) tool-call parser → `events`.
    fn parse(&mut self, text: &str) {
        if self.tools.is_none() {
            self.think.feed(text, &mut self.events);
            return;
        }
        let mut parsed = Vec::new();
        self.think.feed(text, &mut parsed);
        self.route(parsed);
    }

    /// Passes answer text through the tool-call parser (when there is one); other events go straight out.
    fn route(&mut self, parsed: Vec<InferenceEvent>) {
        let Some(tools) = &mut self.tools else {
            self.events.extend(parsed);
            return;
        };
        for event in parsed {
            match event {
                InferenceEvent::Content(text) => tools.feed(&text, &mut self.events),
                other => self.events.push(other),
            }
        }
    }

    /// Queues the new events and sends what the channel has room for. Returns false when the receiver is gone.
    fn deliver(&mut self) -> bool {
        let show_thinking = self.show_thinking;
        self.pending.extend(
            self.events.drain(..).filter(|ev| show_thinking || !matches!(ev, InferenceEvent::Thought(_))).map(Ok),
        );
        self.flush()
    }

    /// Sends waiting events until the channel is full. Returns false (and cancels) when the receiver is gone.
    pub(crate) fn flush(&mut self) -> bool {
        while let Some(item) = self.pending.pop_front() {
            match self.tx.try_send(item) {
                Ok(()) => {}
                Err(TrySendError::Full(item)) => {
                    self.pending.push_front(item);
                    return true;
                }
                Err(TrySendError::Closed(_)) => {
                    self.pending.clear();
                    self.cancel.cancel();
                    return false;
                }
            }
        }
        true
    }

    fn stop_with(&mut self, reason: FinishReason) -> Flow {
        self.finish.get_or_insert(reason);
        Flow::Stop
    }

    /// Ends the stream with an error instead of `Complete`.
    pub(crate) fn fail(&mut self, err: CortexError) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.stats.end_request();
        self.pending.push_back(Err(err));
        self.flush();
    }

    /// Sends every waiting event, waiting for the reader (or for the channel to close).
    pub(crate) fn flush_blocking(&mut self) {
        while let Some(item) = self.pending.pop_front() {
            if self.tx.send_blocking(item).is_err() {
                self.pending.clear();
            }
        }
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
