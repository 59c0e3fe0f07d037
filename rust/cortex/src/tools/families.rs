//! Each family's syntax around its calls: opening markers in prose, names outside JSON (Mistral `[ARGS]`, DeepSeek),
//! lists, separators and closing markers.
//!
//! Rules: an opening marker is looked for in prose and a possible partial one held back; a closing marker may still
//! be arriving, so a prefix of one waits; anything else after a finished call is prose.

use super::json::is_name_char;
use super::{
    Ctx, DS_CALL_BEGIN, DS_CALL_END, DS_CALLS_END, DS_SEP, FENCE, FENCE_JSON, Field, HERMES_CLOSE, HERMES_OPEN,
    MAX_NAME, MISTRAL_ARGS, MISTRAL_CALL_ID, MISTRAL_OPEN, PYTHON_TAG, State, ToolCallParser, ToolFormat, marker_at,
};
use crate::event::InferenceEvent;
use crate::stop::partial_suffix_len;

impl ToolCallParser {
    pub(super) fn prose_step(&mut self, eof: bool, out: &mut Vec<InferenceEvent>) -> bool {
        let openers = self.format.openers();
        let first = openers.iter().filter_map(|m| self.buf.find(m).map(|at| (at, *m))).min();
        if let Some((at, marker)) = first {
            let text: String = self.buf.drain(..at).collect();
            self.prose(&text, out);
            self.buf.drain(..marker.len());
            // White space before a call only separates it; it is content again if the call fails.
            let prefix = std::mem::take(&mut self.held_space) + marker;
            self.start_recording(prefix);
            self.open(marker);
            return true;
        }
        let hold = if eof { 0 } else { openers.iter().map(|m| partial_suffix_len(&self.buf, m)).max().unwrap_or(0) };
        let text: String = self.buf.drain(..self.buf.len() - hold).collect();
        self.prose(&text, out);
        false
    }

    pub(super) fn open(&mut self, marker: &str) {
        match marker {
            HERMES_OPEN => self.begin_object(Ctx::Hermes),
            PYTHON_TAG => self.begin_object(Ctx::Llama),
            MISTRAL_OPEN => self.state = State::MistralOpen,
            _ => {
                self.ctx = Ctx::DeepSeek;
                self.state = State::DsCalls;
            }
        }
    }

    pub(super) fn lead(&mut self, eof: bool) -> bool {
        let space = self.buf.len() - self.buf.trim_start().len();
        match self.buf[space..].chars().next() {
            None if !eof => return false,
            Some('{') => {
                let prefix: String = self.buf.drain(..space).collect();
                self.start_recording(prefix);
                let ctx = if self.format == ToolFormat::Llama3 { Ctx::Llama } else { Ctx::Single { wrapped: false } };
                self.begin_object(ctx);
            }
            Some('[') if self.format == ToolFormat::Json => {
                let prefix: String = self.buf.drain(..space).collect();
                self.start_recording(prefix);
                self.consume(1);
                self.ctx = Ctx::List { wrapped: false };
                self.state = State::ListStart;
            }
            _ => self.state = State::Prose,
        }
        true
    }

    /// What may follow a finished call: the next one, the enclosing syntax's end, or prose.
    pub(super) fn after(&mut self) -> bool {
        if !self.skip_ws() {
            return false;
        }
        let first = self.buf.chars().next();
        match self.ctx {
            Ctx::Hermes => match marker_at(&self.buf, &[HERMES_CLOSE]) {
                Some(true) => {
                    self.buf.drain(..HERMES_CLOSE.len());
                    self.back_to_prose()
                }
                Some(false) => false,
                None if first == Some('{') => {
                    self.begin_object(Ctx::Hermes);
                    true
                }
                None => self.back_to_prose(),
            },
            Ctx::Llama => match first {
                Some(';') => {
                    self.consume(1);
                    true
                }
                Some('{') => {
                    self.begin_object(Ctx::Llama);
                    true
                }
                _ => self.back_to_prose(),
            },
            Ctx::List { wrapped } => match first {
                Some(',') => {
                    self.consume(1);
                    self.begin_object(Ctx::List { wrapped });
                    true
                }
                Some(']') if wrapped => {
                    self.consume(1);
                    self.state = State::WrapperEnd;
                    true
                }
                Some(']') => {
                    self.consume(1);
                    self.back_to_prose()
                }
                _ => self.back_to_prose(),
            },
            Ctx::Single { wrapped: true } => {
                self.state = State::WrapperEnd;
                true
            }
            Ctx::Single { wrapped: false } => self.back_to_prose(),
            Ctx::DeepSeek => match marker_at(&self.buf, &[FENCE, DS_CALL_END, DS_CALLS_END]) {
                Some(true) if self.buf.starts_with(FENCE) => {
                    self.consume(FENCE.len());
                    true
                }
                Some(true) if self.buf.starts_with(DS_CALL_END) => {
                    self.consume(DS_CALL_END.len());
                    self.state = State::DsCalls;
                    true
                }
                Some(true) => {
                    self.consume(DS_CALLS_END.len());
                    self.back_to_prose()
                }
                Some(false) => false,
                None => self.back_to_prose(),
            },
        }
    }

    pub(super) fn wrapper_end(&mut self) -> bool {
        if !self.skip_ws() {
            return false;
        }
        if self.buf.starts_with('}') {
            self.consume(1);
        }
        self.back_to_prose()
    }

    pub(super) fn mistral_open(&mut self, out: &mut Vec<InferenceEvent>) -> bool {
        if !self.skip_ws() {
            return false;
        }
        match self.buf.chars().next() {
            Some('[') => {
                self.consume(1);
                self.ctx = Ctx::List { wrapped: false };
                self.state = State::ListStart;
            }
            Some('{') => {
                self.begin_object(Ctx::Single { wrapped: false });
            }
            Some(c) if is_name_char(c) => {
                self.begin_object(Ctx::Single { wrapped: false });
                self.state = State::MistralName;
            }
            _ => self.malformed(out),
        }
        true
    }

    /// `name[ARGS]`, `name[CALL_ID]id[ARGS]`: the name, or the id, up to its marker.
    pub(super) fn mistral_name(&mut self, out: &mut Vec<InferenceEvent>) -> bool {
        let is_name = self.state == State::MistralName;
        let markers: &[&str] = if is_name { &[MISTRAL_ARGS, MISTRAL_CALL_ID] } else { &[MISTRAL_ARGS] };
        let Some((text, marker)) = self.word_before(markers, out) else { return self.state == State::Prose };
        let Some(call) = self.call.as_mut() else { return true };
        if is_name {
            call.name = Some(text);
        } else {
            call.id = Some(text).filter(|id| !id.is_empty());
        }
        if marker == MISTRAL_CALL_ID {
            self.state = State::MistralId;
        } else {
            call.bare = true;
            self.maybe_start(true, out);
            self.state = State::Value(Field::Args);
        }
        true
    }

    pub(super) fn list_start(&mut self, out: &mut Vec<InferenceEvent>) -> bool {
        if !self.skip_ws() {
            return false;
        }
        let Ctx::List { wrapped } = self.ctx else { return self.back_to_prose() };
        match self.buf.chars().next() {
            Some('{') => {
                self.begin_object(self.ctx);
            }
            Some(']') => {
                self.consume(1);
                if wrapped {
                    self.state = State::WrapperEnd;
                } else {
                    self.back_to_prose();
                }
            }
            _ => self.malformed(out),
        }
        true
    }

    pub(super) fn ds_calls(&mut self, out: &mut Vec<InferenceEvent>) -> bool {
        if !self.skip_ws() {
            return false;
        }
        match marker_at(&self.buf, &[DS_CALL_BEGIN, DS_CALLS_END]) {
            Some(true) if self.buf.starts_with(DS_CALL_BEGIN) => {
                // Recording first: a call that fails is content with its marker.
                self.begin_call();
                self.consume(DS_CALL_BEGIN.len());
                self.state = State::DsHeader;
            }
            Some(true) => {
                self.consume(DS_CALLS_END.len());
                self.back_to_prose();
            }
            Some(false) => return false,
            // llama.cpp accepts a call without its begin marker.
            None if self.buf.starts_with(is_name_char) => {
                self.begin_call();
                self.state = State::DsHeader;
            }
            None if self.recording => self.malformed(out),
            None => {
                self.back_to_prose();
            }
        }
        true
    }

    /// `function<｜tool▁sep｜>` (R1: the name follows on its line) or `NAME<｜tool▁sep｜>` (V3.1: the arguments follow).
    pub(super) fn ds_header(&mut self, out: &mut Vec<InferenceEvent>) -> bool {
        let Some((kind, _)) = self.word_before(&[DS_SEP], out) else { return self.state == State::Prose };
        if kind == "function" {
            self.state = State::DsName;
        } else if let Some(call) = self.call.as_mut() {
            call.name = Some(kind);
            call.bare = true;
            self.maybe_start(true, out);
            self.state = State::Value(Field::Args);
        }
        true
    }

    pub(super) fn ds_name(&mut self, out: &mut Vec<InferenceEvent>) -> bool {
        let line_end = self.buf.find('\n');
        let line = &self.buf[..line_end.unwrap_or(self.buf.len())];
        let name = line.trim();
        let valid = name.chars().all(is_name_char) && line.len() <= MAX_NAME;
        match line_end {
            _ if !valid => self.malformed(out),
            None => return false,
            Some(_) if name.is_empty() => self.malformed(out),
            Some(end) => {
                let name = name.to_owned();
                self.consume(end + 1);
                if let Some(call) = self.call.as_mut() {
                    call.name = Some(name);
                    call.bare = true;
                }
                self.maybe_start(true, out);
                self.state = State::DsFence;
            }
        }
        true
    }

    pub(super) fn ds_fence(&mut self) -> bool {
        if !self.skip_ws() {
            return false;
        }
        match marker_at(&self.buf, &[FENCE_JSON]) {
            Some(false) => return false,
            Some(true) => {
                self.consume(FENCE_JSON.len());
            }
            None if self.buf.starts_with(FENCE) => {
                self.consume(FENCE.len());
            }
            None => {}
        }
        self.state = State::Value(Field::Args);
        true
    }

    /// A name (or id) ended by one of `markers`: the word and the marker, both consumed. `None` while it is
    /// unfinished, or when the text is no such word (then it is content, and the state is Prose).
    pub(super) fn word_before(
        &mut self,
        markers: &[&'static str],
        out: &mut Vec<InferenceEvent>,
    ) -> Option<(String, &'static str)> {
        let end = self.buf.find(|c| !is_name_char(c)).unwrap_or(self.buf.len());
        let rest = &self.buf[end..];
        let found = markers.iter().find(|m| rest.starts_with(**m));
        let partial = rest.is_empty() || markers.iter().any(|m| m.starts_with(rest));
        match found {
            Some(&marker) if end > 0 => {
                let word: String = self.consume(end);
                self.consume(marker.len());
                Some((word, marker))
            }
            None if partial && end <= MAX_NAME => None,
            _ => {
                self.malformed(out);
                None
            }
        }
    }
}
