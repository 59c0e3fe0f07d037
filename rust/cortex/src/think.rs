//! The `<think>` state machine: text deltas in, thought and content events out.
//!
//! Rules:
//! - Tags may be split anywhere across deltas; a possible partial tag is held back, never emitted.
//! - A prompt that pre-opens the tag starts the parser inside a thought (`ThinkParser::new(tags, true)`).
//! - A prompt that ends with text of the assistant's own (a prefill, see `template::split_prefill`) starts the parser
//!   where that text leaves it ([`ThinkStart::after`]): the prefill is parsed like output, but its events are not
//!   sent (the client wrote that text), so the output is only the continuation, in the right state.
//! - A thought never closed is flushed at `finish` and closed with `Stop`.
//! - A stray close tag outside a thought is dropped; an open tag inside a thought is plain thought text.
//! - Leading white space of a thought, and of the answer right after a thought, is dropped (models put "\n" there).
//! - Any split of a text gives the same events, once adjacent deltas are merged (property-tested below).

use crate::event::{InferenceEvent, ThoughtEvent};
use crate::stop::partial_suffix_len;

/// The pair of tags around a thought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinkTags {
    pub open: String,
    pub close: String,
}

impl Default for ThinkTags {
    fn default() -> Self {
        Self { open: "<think>".into(), close: "</think>".into() }
    }
}

/// Where a prompt leaves the parser: inside a thought or not, and whether white space at the start of the output is
/// dropped (right after a tag, where models put a new line) or kept (after text, which the output continues).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThinkStart {
    pub in_thought: bool,
    pub skip_space: bool,
}

impl ThinkStart {
    /// A prompt ending with the open assistant turn; `pre_opened`: the turn opens a thought (the template wrote
    /// `<think>` last), so the output starts as a thought, its leading white space dropped.
    pub fn pre_opened(pre_opened: bool) -> Self {
        Self { in_thought: pre_opened, skip_space: pre_opened }
    }

    /// Where the parser is once it has read `text` (an assistant prefill, appended to a prompt that left it at
    /// `self`), with the default tags as the pipeline uses them. So a prefill that opens a thought and leaves it open
    /// (`<think>Let me`) continues as a thought, one that closes it (`<think>hm</think>The answer is`) or never opens
    /// one continues as the answer, and plain text after a template's pre-opened `<think>` stays in the thought. White
    /// space at the start of the output is dropped only when the prefill ends right after a tag (`<think>\n`). A
    /// partial tag at the end of `text` (`<thi`) counts as text: the continuation cannot complete it.
    pub fn after(self, text: &str) -> Self {
        let mut parser = ThinkParser::starting(ThinkTags::default(), self);
        parser.feed(text, &mut Vec::new());
        Self { in_thought: parser.in_thought(), skip_space: parser.skip_space && parser.held.is_empty() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Content,
    Thinking,
}

/// Incremental parser; one per generation.
#[derive(Debug)]
pub struct ThinkParser {
    /// `None`: plain text, no thoughts (a raw completion).
    tags: Option<ThinkTags>,
    state: State,
    /// Text held back because it may be the start of a tag.
    held: String,
    /// A pre-opened thought whose `Start` has not been emitted yet.
    start_pending: bool,
    /// Drop white space until the next non-white-space character.
    skip_space: bool,
}

impl ThinkParser {
    /// `pre_opened`: the prompt already ends inside a thought, so the output starts as thinking.
    pub fn new(tags: ThinkTags, pre_opened: bool) -> Self {
        Self::starting(tags, ThinkStart::pre_opened(pre_opened))
    }

    /// A parser starting where the prompt left off (see [`ThinkStart`]); inside a thought, the output begins with
    /// the thought's `Start` event (the client did not see one for the prompt's part of it).
    pub fn starting(tags: ThinkTags, start: ThinkStart) -> Self {
        Self {
            tags: Some(tags),
            state: if start.in_thought { State::Thinking } else { State::Content },
            held: String::new(),
            start_pending: start.in_thought,
            skip_space: start.skip_space,
        }
    }

    /// A parser that finds no thoughts: every delta is content, as it is (white space too).
    pub fn plain() -> Self {
        Self { tags: None, state: State::Content, held: String::new(), start_pending: false, skip_space: false }
    }

    /// True inside a thought (what arrives next is reasoning, not the answer).
    pub fn in_thought(&self) -> bool {
        self.state == State::Thinking
    }

    /// True while white space is being dropped (after a thought closes, or at the start of a pre-opened one):
    /// text arriving now that is only white space reaches no event.
    pub fn skipping_space(&self) -> bool {
        self.skip_space
    }

    /// Parses one delta, appending the events it completes to `out`.
    pub fn feed(&mut self, delta: &str, out: &mut Vec<InferenceEvent>) {
        self.emit_pending_start(out);
        // Taken out for the call (and put back) so that the tags can be read while the parser changes.
        let Some(tags) = self.tags.take() else {
            self.text(delta, out);
            return;
        };
        self.feed_tagged(&tags, delta, out);
        self.tags = Some(tags);
    }

    fn feed_tagged(&mut self, tags: &ThinkTags, delta: &str, out: &mut Vec<InferenceEvent>) {
        let mut buf = std::mem::take(&mut self.held);
        buf.push_str(delta);
        let mut rest = buf.as_str();
        loop {
            match self.state {
                State::Content => {
                    let open = rest.find(&tags.open).map(|i| (i, true));
                    let close = rest.find(&tags.close).map(|i| (i, false));
                    match open.into_iter().chain(close).min() {
                        Some((at, is_open)) => {
                            self.text(&rest[..at], out);
                            if is_open {
                                out.push(InferenceEvent::Thought(ThoughtEvent::Start));
                                self.state = State::Thinking;
                                self.skip_space = true;
                                rest = &rest[at + tags.open.len()..];
                            } else {
                                rest = &rest[at + tags.close.len()..];
                            }
                        }
                        None => {
                            let hold = partial_suffix_len(rest, &tags.open).max(partial_suffix_len(rest, &tags.close));
                            self.hold_back(rest, hold, out);
                            return;
                        }
                    }
                }
                State::Thinking => match rest.find(&tags.close) {
                    Some(at) => {
                        self.text(&rest[..at], out);
                        out.push(InferenceEvent::Thought(ThoughtEvent::Stop));
                        self.state = State::Content;
                        self.skip_space = true;
                        rest = &rest[at + tags.close.len()..];
                    }
                    None => {
                        let hold = partial_suffix_len(rest, &tags.close);
                        self.hold_back(rest, hold, out);
                        return;
                    }
                },
            }
        }
    }

    /// Flushes held text; closes a thought left open.
    pub fn finish(&mut self, out: &mut Vec<InferenceEvent>) {
        self.emit_pending_start(out);
        let held = std::mem::take(&mut self.held);
        self.text(&held, out);
        if self.state == State::Thinking {
            out.push(InferenceEvent::Thought(ThoughtEvent::Stop));
            self.state = State::Content;
        }
    }

    fn emit_pending_start(&mut self, out: &mut Vec<InferenceEvent>) {
        if std::mem::take(&mut self.start_pending) {
            out.push(InferenceEvent::Thought(ThoughtEvent::Start));
        }
    }

    fn hold_back(&mut self, rest: &str, hold: usize, out: &mut Vec<InferenceEvent>) {
        let (emit, keep) = rest.split_at(rest.len() - hold);
        self.text(emit, out);
        self.held.push_str(keep);
    }

    /// Emits text in the current state, dropping leading white space where asked.
    fn text(&mut self, mut text: &str, out: &mut Vec<InferenceEvent>) {
        if self.skip_space {
            text = text.trim_start();
            if text.is_empty() {
                return;
            }
            self.skip_space = false;
        }
        if text.is_empty() {
            return;
        }
        out.push(match self.state {
            State::Content => InferenceEvent::Content(text.to_owned()),
            State::Thinking => InferenceEvent::Thought(ThoughtEvent::Delta(text.to_owned())),
        });
    }
}

/// Splitting text at character boundaries, for the split-anywhere tests of this parser and its siblings.
#[cfg(test)]
pub(crate) mod split_points {
    use proptest::sample::Index;

    /// Every char boundary of `s`, both ends included.
    pub(crate) fn boundaries(s: &str) -> Vec<usize> {
        (0..=s.len()).filter(|&i| s.is_char_boundary(i)).collect()
    }

    /// `input` cut at the boundaries the `cuts` pick (in order; repeated cuts give empty pieces).
    pub(crate) fn split<'a>(input: &'a str, cuts: &[Index]) -> Vec<&'a str> {
        let bounds = boundaries(input);
        let mut at: Vec<usize> = cuts.iter().map(|c| bounds[c.index(bounds.len())]).collect();
        at.sort_unstable();
        let mut pieces = Vec::new();
        let mut prev = 0;
        for &c in &at {
            pieces.push(&input[prev..c]);
            prev = c;
        }
        pieces.push(&input[prev..]);
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::split_points::{boundaries, split};
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum E {
        Start,
        Think(String),
        Stop,
        Text(String),
    }

    /// Parses `pieces` and merges adjacent deltas of one kind.
    fn parse(pieces: &[&str], pre_opened: bool) -> Vec<E> {
        let mut parser = ThinkParser::new(ThinkTags::default(), pre_opened);
        let mut raw = Vec::new();
        for p in pieces {
            parser.feed(p, &mut raw);
        }
        parser.finish(&mut raw);
        let mut merged: Vec<E> = Vec::new();
        for ev in raw {
            let e = match ev {
                InferenceEvent::Thought(ThoughtEvent::Start) => E::Start,
                InferenceEvent::Thought(ThoughtEvent::Stop) => E::Stop,
                InferenceEvent::Thought(ThoughtEvent::Delta(t)) => {
                    assert!(!t.is_empty(), "empty thought delta");
                    E::Think(t)
                }
                InferenceEvent::Content(t) => {
                    assert!(!t.is_empty(), "empty content delta");
                    E::Text(t)
                }
                other => panic!("unexpected {other:?}"),
            };
            match (merged.last_mut(), e) {
                (Some(E::Think(a)), E::Think(b)) | (Some(E::Text(a)), E::Text(b)) => a.push_str(&b),
                (_, e) => merged.push(e),
            }
        }
        merged
    }

    fn think(s: &str) -> E {
        E::Think(s.into())
    }
    fn text(s: &str) -> E {
        E::Text(s.into())
    }

    /// (input, pre_opened, expected merged events)
    fn cases() -> Vec<(&'static str, bool, Vec<E>)> {
        vec![
            ("plain answer", false, vec![text("plain answer")]),
            ("<think>hmm</think>answer", false, vec![E::Start, think("hmm"), E::Stop, text("answer")]),
            ("before<think>x</think>after", false, vec![text("before"), E::Start, think("x"), E::Stop, text("after")]),
            ("<think>\nwhy?\n</think>\n\nbecause", false, vec![E::Start, think("why?\n"), E::Stop, text("because")]),
            ("pre-opened</think>answer", true, vec![E::Start, think("pre-opened"), E::Stop, text("answer")]),
            ("never closed <b>", false, vec![text("never closed <b>")]),
            ("<think>left open", false, vec![E::Start, think("left open"), E::Stop]),
            ("still thinking", true, vec![E::Start, think("still thinking"), E::Stop]),
            ("", true, vec![E::Start, E::Stop]),
            ("stray</think> close", false, vec![text("stray close")]),
            ("<think>a<think>b</think>c", false, vec![E::Start, think("a<think>b"), E::Stop, text("c")]),
            ("a < b <th ink", false, vec![text("a < b <th ink")]),
            ("ends with <thi", false, vec![text("ends with <thi")]),
            ("<think>ends with </thi", false, vec![E::Start, think("ends with </thi"), E::Stop]),
            ("<think>é中</think>🦀 ok", false, vec![E::Start, think("é中"), E::Stop, text("🦀 ok")]),
            ("<think></think>", false, vec![E::Start, E::Stop]),
            ("  lead", false, vec![text("  lead")]),
        ]
    }

    #[test]
    fn a_plain_parser_passes_tags_and_white_space_through_as_content() {
        let mut parser = ThinkParser::plain();
        let mut out = Vec::new();
        for piece in ["  <thi", "nk>a</think>\n", "b"] {
            parser.feed(piece, &mut out);
        }
        parser.finish(&mut out);
        let text: String = out
            .iter()
            .map(|e| match e {
                InferenceEvent::Content(t) => t.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(text, "  <think>a</think>\nb");
        assert!(!parser.in_thought());
    }

    #[test]
    fn table_unsplit() {
        for (input, pre, want) in cases() {
            assert_eq!(parse(&[input], pre), want, "input {input:?}");
        }
    }

    #[test]
    fn table_at_every_split_point() {
        for (input, pre, want) in cases() {
            let cuts = boundaries(input);
            for &i in &cuts {
                for &j in cuts.iter().filter(|&&j| j >= i) {
                    let pieces = [&input[..i], &input[i..j], &input[j..]];
                    assert_eq!(parse(&pieces, pre), want, "input {input:?} split at {i},{j}");
                }
            }
        }
    }

    #[test]
    fn table_one_character_at_a_time() {
        for (input, pre, want) in cases() {
            let chars: Vec<String> = input.chars().map(String::from).collect();
            let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
            assert_eq!(parse(&pieces, pre), want, "input {input:?}");
        }
    }

    #[test]
    fn nothing_is_held_back_that_cannot_be_a_tag() {
        let mut parser = ThinkParser::new(ThinkTags::default(), false);
        let mut out = Vec::new();
        parser.feed("hello <", &mut out);
        assert_eq!(out, vec![InferenceEvent::Content("hello ".into())]);
        out.clear();
        parser.feed("b>", &mut out);
        assert_eq!(out, vec![InferenceEvent::Content("<b>".into())]);
    }

    /// A prompt ending in `prefill` (after a template that pre-opened `<think>` or not), then `output`: the events of
    /// the output alone.
    fn continue_after(pre_opened: bool, prefill: &str, output: &str) -> Vec<E> {
        let start = ThinkStart::pre_opened(pre_opened).after(prefill);
        let mut parser = ThinkParser::starting(ThinkTags::default(), start);
        let mut raw = Vec::new();
        parser.feed(output, &mut raw);
        parser.finish(&mut raw);
        raw.into_iter()
            .map(|ev| match ev {
                InferenceEvent::Thought(ThoughtEvent::Start) => E::Start,
                InferenceEvent::Thought(ThoughtEvent::Stop) => E::Stop,
                InferenceEvent::Thought(ThoughtEvent::Delta(t)) => E::Think(t),
                InferenceEvent::Content(t) => E::Text(t),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_prefill_leaves_the_parser_where_its_text_ends() {
        // (template pre-opened, prefill, output, events of the output)
        let cases: Vec<(bool, &str, &str, Vec<E>)> = vec![
            // No tags: the answer goes on, its leading space kept.
            (false, "The capital is", " Paris.", vec![text(" Paris.")]),
            (false, "", "\n\nParis", vec![text("\n\nParis")]),
            // A thought opened and left open: the output continues it, then answers.
            (false, "<think>Let me", " see</think>\n\nParis", vec![E::Start, think(" see"), E::Stop, text("Paris")]),
            (false, "<think>\n", "\nhm</think>ok", vec![E::Start, think("hm"), E::Stop, text("ok")]),
            // Closed in the prefill: the answer; right after the close its leading white space is dropped.
            (false, "<think>hm</think>", "\n\nParis", vec![text("Paris")]),
            (false, "<think>hm</think>\n\nIt is", " Paris", vec![text(" Paris")]),
            // After a template's pre-opened `<think>`: plain text stays in the thought, a close ends it.
            (true, "I should", " check</think>Paris", vec![E::Start, think(" check"), E::Stop, text("Paris")]),
            (true, "", "\nhm</think>ok", vec![E::Start, think("hm"), E::Stop, text("ok")]),
            (true, "hm</think>\n\n", "Paris", vec![text("Paris")]),
            (true, "hm</think>The answer:", " 4", vec![text(" 4")]),
            // A partial tag at the end of the prefill is text; an open tag in a thought is thought text.
            (false, "a <thi", "nk>b", vec![text("nk>b")]),
            (true, "x <think> y", " z", vec![E::Start, think(" z"), E::Stop]),
        ];
        for (pre, prefill, output, want) in cases {
            assert_eq!(continue_after(pre, prefill, output), want, "pre-opened {pre}, prefill {prefill:?}");
        }
        assert_eq!(ThinkStart::pre_opened(false).after(""), ThinkStart::default());
        assert_eq!(ThinkStart::pre_opened(true).after(""), ThinkStart::pre_opened(true));
        assert_eq!(ThinkStart::default().after("<think>"), ThinkStart::pre_opened(true));
    }

    fn fragment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "<think>", "</think>", "<", "</", "<th", "ink>", "think", ">", "/", "a", "b c", " ", "\n", "é", "中", "🦀",
        ])
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(
            parts in prop::collection::vec(fragment(), 0..24),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            pre in any::<bool>(),
        ) {
            let input: String = parts.concat();
            prop_assert_eq!(parse(&split(&input, &cuts), pre), parse(&[input.as_str()], pre));
        }
    }
}
