//! The call object, `{"name": .., "arguments": .., ..}`, as its text arrives: the part of a tool call that every
//! JSON-speaking family shares.
//!
//! Rules: keys and the name, id and string values are read whole; the arguments value is streamed by its structure
//! (`json::Scan`); before the name is known any key but `name`, `arguments`/`parameters`, `id` and `type` shows that
//! the object is not a call (it is content then), after it unknown keys are skipped.

use super::json::{Scan, Step, read_string};
use super::{Ctx, Field, State, ToolCallParser, ToolFormat};
use crate::event::InferenceEvent;

impl ToolCallParser {
    pub(super) fn object(&mut self, out: &mut Vec<InferenceEvent>) -> bool {
        if !self.skip_ws() {
            return false;
        }
        if self.buf.starts_with('{') {
            self.consume(1);
            self.state = State::Key;
        } else {
            self.malformed(out);
        }
        true
    }

    pub(super) fn key(&mut self, out: &mut Vec<InferenceEvent>) -> bool {
        if !self.skip_ws() {
            return false;
        }
        if self.buf.starts_with('}') {
            self.consume(1);
            self.end_object(out);
            return true;
        }
        if !self.buf.starts_with('"') {
            self.malformed(out);
            return true;
        }
        match read_string(&self.buf) {
            None => return false,
            Some(Ok((key, n))) => {
                self.consume(n);
                match self.field(&key) {
                    Some(field) => self.state = State::Colon(field),
                    None => self.malformed(out),
                }
            }
            Some(Err(())) => self.malformed(out),
        }
        true
    }

    /// What a key means; `None` when it shows that the object is not a call.
    pub(super) fn field(&mut self, key: &str) -> Option<Field> {
        let plain_json_top = self.format == ToolFormat::Json && self.ctx == Ctx::Single { wrapped: false };
        let call = self.call.as_mut()?;
        let first = call.keys == 0;
        call.keys += 1;
        Some(match key {
            "name" => Field::Name,
            "arguments" | "parameters" => Field::Args,
            "id" => Field::Id,
            "tool_calls" | "tool_call" if first && plain_json_top => Field::Wrapper,
            // Llama 3.x may write `"type": "function"` before the name.
            "type" => Field::Skip,
            _ if call.name.is_some() => Field::Skip,
            _ => return None,
        })
    }

    pub(super) fn colon(&mut self, field: Field, out: &mut Vec<InferenceEvent>) -> bool {
        if !self.skip_ws() {
            return false;
        }
        if self.buf.starts_with(':') {
            self.consume(1);
            self.state = State::Value(field);
        } else {
            self.malformed(out);
        }
        true
    }

    pub(super) fn value(&mut self, field: Field, out: &mut Vec<InferenceEvent>) -> bool {
        if !self.skip_ws() {
            return false;
        }
        let quoted = self.buf.starts_with('"');
        match field {
            Field::Name | Field::Id | Field::Args if quoted => {
                let Some(read) = read_string(&self.buf) else { return false };
                let Ok((text, n)) = read else {
                    self.malformed(out);
                    return true;
                };
                let literal = self.consume(n);
                self.string_value(field, text, literal, out);
            }
            Field::Name if self.call.as_ref().is_none_or(|c| c.name.is_none()) => self.malformed(out),
            Field::Args => self.state = State::Scan(Field::Args, Scan::default()),
            Field::Wrapper if self.buf.starts_with('[') => {
                self.consume(1);
                self.call = None;
                self.ctx = Ctx::List { wrapped: true };
                self.state = State::ListStart;
            }
            Field::Wrapper if self.buf.starts_with('{') => self.begin_object(Ctx::Single { wrapped: true }),
            Field::Wrapper => self.malformed(out),
            _ => self.state = State::Scan(Field::Skip, Scan::default()),
        }
        true
    }

    pub(super) fn string_value(&mut self, field: Field, text: String, literal: String, out: &mut Vec<InferenceEvent>) {
        self.state = State::Comma;
        let Some(call) = self.call.as_mut() else { return };
        match field {
            Field::Name if call.name.is_none() => {
                call.name = Some(text);
                self.maybe_start(false, out);
            }
            Field::Id if self.format == ToolFormat::Mistral && call.id.is_none() => {
                call.id = Some(text);
                self.maybe_start(false, out);
            }
            Field::Args => {
                // Some models write the arguments as a string holding JSON: pass the JSON.
                let is_json = serde_json::from_str::<serde_json::Value>(&text).is_ok();
                self.args_text(if is_json { &text } else { &literal }, out);
                self.end_value(out);
            }
            _ => {}
        }
    }

    pub(super) fn scan(&mut self, field: Field, mut scan: Scan, out: &mut Vec<InferenceEvent>) -> bool {
        let (n, step) = scan.advance(&self.buf);
        let text = self.consume(n);
        if field == Field::Args {
            self.args_text(&text, out);
        }
        match step {
            Step::More => {
                self.state = State::Scan(field, scan);
                n > 0
            }
            Step::Done => {
                self.end_value(out);
                true
            }
            Step::Bad => {
                self.malformed(out);
                true
            }
        }
    }

    pub(super) fn comma(&mut self, out: &mut Vec<InferenceEvent>) -> bool {
        if !self.skip_ws() {
            return false;
        }
        if self.buf.starts_with(',') {
            self.consume(1);
            self.state = State::Key;
        } else if self.buf.starts_with('}') {
            self.consume(1);
            self.end_object(out);
        } else {
            self.malformed(out);
        }
        true
    }

    pub(super) fn end_value(&mut self, out: &mut Vec<InferenceEvent>) {
        if self.call.as_ref().is_some_and(|c| c.bare) {
            self.finish_call(out);
            self.state = State::After;
        } else {
            self.state = State::Comma;
        }
    }

    pub(super) fn end_object(&mut self, out: &mut Vec<InferenceEvent>) {
        if self.call.as_ref().is_some_and(|c| c.name.is_some()) {
            self.finish_call(out);
            self.state = State::After;
        } else {
            self.malformed(out);
        }
    }
}
