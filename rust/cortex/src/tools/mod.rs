//! Tool calls in a model's answer: content text in, content and tool-call events out, one syntax per model family.
//!
//! Rules:
//! - Each family's call syntax ([`ToolFormat`]) is recognised at its markers only. Llama 3.x and plain JSON have no
//!   opening marker: their answer is a call only when it starts (after white space) with `{` (or `[` for JSON).
//! - Markers may be split anywhere across deltas; a possible partial marker is held back, as in `think`.
//! - A call's `Start` goes out as soon as its name is known, then its arguments as `Arguments` deltas while their text
//!   arrives, then `Stop` where the value ends. Arguments written before the name wait for it. A Mistral JSON call
//!   also waits for its `id` (the model writes it last, and Mistral's template wants exactly that id back).
//! - The deltas are the model's JSON text verbatim (its white space is kept, not normalised); arguments written as a
//!   JSON string holding JSON are passed decoded; a call without arguments gets `{}`.
//! - Ids are `call_<id_prefix>_<index>`, except where the model gives one (Mistral), which is kept.
//! - Nothing is lost: text that never became a call (not JSON, a JSON object without a name, a call cut off before
//!   its name) is content, its markers included. A started call cannot be taken back: text that breaks its syntax
//!   after the name ends it there and is content. At `finish` a started call is closed with its arguments as the
//!   model left them (cut short if the generation was).
//! - White space that only separates calls, from each other or from prose, is dropped; other white space is kept.
//! - Any split of a text gives the same events, once adjacent deltas are merged (property-tested in `tests`).
//! - Not parsed, so content: Llama 3.1's built-in `<|python_tag|>tool.call(..)` syntax, OpenAI-style nested
//!   `{"function": {..}}` objects, and a Hermes-family JSON call written without its `<tool_call>` tags.
//!
//! Layout: this file holds the API, the states and the shared moves; `object` the call object, `families` each
//! family's markers around it, `json` the value scanner.

mod families;
mod json;
mod object;
#[cfg(test)]
mod tests;

use crate::event::{InferenceEvent, ToolCallEvent};
use json::Scan;

/// How a model family writes tool calls (sources: llama.cpp `common/chat.cpp` and each family's chat template).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// Hermes 2/3, Qwen2.5, Qwen3: `<tool_call>\n{"name": .., "arguments": {..}}\n</tool_call>`, any number.
    Hermes,
    /// Llama 3.1–3.3: the whole answer is `{"name": .., "parameters": {..}}`, or `<|python_tag|>` and calls
    /// separated by `;`.
    Llama3,
    /// Mistral: `[TOOL_CALLS][{"name": .., "arguments": {..}, "id": ".."}, ..]`, or (newer templates)
    /// `[TOOL_CALLS]name[CALL_ID]id[ARGS]{..}` with `[CALL_ID]id` optional.
    Mistral,
    /// DeepSeek R1/V3: `<｜tool▁calls▁begin｜>` then per call
    /// `<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{..}\n```<｜tool▁call▁end｜>` (V3.1:
    /// `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{..}<｜tool▁call▁end｜>`), then `<｜tool▁calls▁end｜>`.
    DeepSeek,
    /// Plain JSON: the whole answer is `{"name": .., "arguments": ..}`, a list of those, or `{"tool_calls": [..]}`.
    Json,
}

impl ToolFormat {
    /// The family a chat template's source uses (searched for its markers: `<tool_call>` → Hermes (Qwen2.5, Qwen3,
    /// Hermes); `<|python_tag|>` or Llama 3.x `"parameters"`/`ipython` markers → Llama3; `[TOOL_CALLS]` → Mistral;
    /// `<｜tool▁calls▁begin｜>` → DeepSeek; nothing known → Hermes, which is also what templates without tool
    /// support are told to use).
    pub fn detect(template_source: &str) -> Self {
        let has = |marker: &str| template_source.contains(marker);
        // The order of llama.cpp's `common_chat_templates_apply_jinja`: DeepSeek's and Hermes' markers are the most
        // specific (a Hermes 3 template is a Llama 3.1 model's, with ChatML and `<tool_call>`).
        if has(DS_CALLS_BEGIN) {
            Self::DeepSeek
        } else if has(HERMES_OPEN) {
            Self::Hermes
        } else if has(MISTRAL_OPEN) {
            Self::Mistral
        } else if has(PYTHON_TAG) || (has("<|start_header_id|>") && (has("ipython") || has("\"parameters\""))) {
            Self::Llama3
        } else {
            Self::Hermes
        }
    }

    /// The markers that open calls in the middle of prose.
    fn openers(self) -> &'static [&'static str] {
        match self {
            Self::Hermes => &[HERMES_OPEN],
            // A special token, never prose: a call wherever it comes.
            Self::Llama3 => &[PYTHON_TAG],
            Self::Mistral => &[MISTRAL_OPEN],
            Self::DeepSeek => &[DS_CALLS_BEGIN],
            Self::Json => &[],
        }
    }
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";
const MISTRAL_OPEN: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";
const MISTRAL_CALL_ID: &str = "[CALL_ID]";
const DS_CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
const DS_CALLS_END: &str = "<｜tool▁calls▁end｜>";
const DS_CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
const DS_CALL_END: &str = "<｜tool▁call▁end｜>";
const DS_SEP: &str = "<｜tool▁sep｜>";
const FENCE: &str = "```";
const FENCE_JSON: &str = "```json";
/// A name (or id) longer than this is not one: the text is prose, not held back any longer.
const MAX_NAME: usize = 256;

/// What a field of a call object is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    Id,
    Args,
    Skip,
    /// `tool_calls`/`tool_call` around the calls of a plain-JSON answer.
    Wrapper,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The answer's start, for the formats whose calls open with a bare `{`: only white space so far.
    Lead,
    /// Prose, looking for an opening marker.
    Prose,
    /// A call object: its `{`, a key or `}`, the `:`, a value, a value being scanned, then `,` or `}`.
    Object,
    Key,
    Colon(Field),
    Value(Field),
    Scan(Field, Scan),
    Comma,
    /// After a call: the format's separators and closing markers.
    After,
    /// After `[TOOL_CALLS]`: a list, an object, or `name[ARGS]`; the name; the id after `[CALL_ID]`.
    MistralOpen,
    MistralName,
    MistralId,
    /// After a list's `[`: a call object or `]`.
    ListStart,
    /// DeepSeek: between calls; `function<｜tool▁sep｜>` (or `NAME<｜tool▁sep｜>`); the name line; the code fence.
    DsCalls,
    DsHeader,
    DsName,
    DsFence,
    /// The `}` that closes `{"tool_calls": [..]}`.
    WrapperEnd,
}

/// What encloses the current call, which decides what may follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Hermes,
    Llama,
    List { wrapped: bool },
    Single { wrapped: bool },
    DeepSeek,
}

/// The call being parsed.
#[derive(Debug, Default)]
struct Call {
    name: Option<String>,
    id: Option<String>,
    /// Arguments text not sent yet (it came before the name, or the call waits for its id).
    args: String,
    has_args: bool,
    started: bool,
    index: u32,
    keys: u32,
    /// The arguments are the call's last part, not a field of an object (Mistral `[ARGS]`, DeepSeek).
    bare: bool,
}

/// Incremental parser; one per generation.
#[derive(Debug)]
pub struct ToolCallParser {
    format: ToolFormat,
    id_prefix: String,
    state: State,
    ctx: Ctx,
    /// Text received and not consumed yet.
    buf: String,
    call: Option<Call>,
    calls: u32,
    /// While a call has not started: the text it consumed, which is content if it never becomes a call.
    recording: bool,
    raw: String,
    /// Drop white space until the next non-white-space character (after a call).
    skip_space: bool,
    /// Trailing white space of prose, sent when more prose follows and dropped when a call does.
    held_space: String,
}

impl ToolCallParser {
    /// `id_prefix` seeds call ids: ids are `call_<id_prefix>_<index>` — unique per request (the caller passes a
    /// random/unique prefix).
    pub fn new(format: ToolFormat, id_prefix: &str) -> Self {
        let lead = matches!(format, ToolFormat::Llama3 | ToolFormat::Json);
        Self {
            format,
            id_prefix: id_prefix.to_owned(),
            state: if lead { State::Lead } else { State::Prose },
            ctx: Ctx::Hermes,
            buf: String::new(),
            call: None,
            calls: 0,
            recording: false,
            raw: String::new(),
            skip_space: false,
            held_space: String::new(),
        }
    }

    /// Parses a content delta (text already outside any think block), appending Content and ToolCall events to `out`.
    pub fn feed(&mut self, delta: &str, out: &mut Vec<InferenceEvent>) {
        self.buf.push_str(delta);
        while self.step(false, out) {}
    }

    /// End of output: flushes held text. A call whose name is known is closed (started first if it waited for an
    /// id); one cut off before its name is content.
    pub fn finish(&mut self, out: &mut Vec<InferenceEvent>) {
        while self.step(true, out) {}
        let held = std::mem::take(&mut self.held_space);
        if !held.is_empty() {
            out.push(InferenceEvent::Content(held));
        }
    }

    /// How many calls started so far (the pipeline sets finish_reason "tool_calls" when > 0).
    pub fn calls(&self) -> u32 {
        self.calls
    }

    /// Makes one move; false when nothing can be done until more text comes.
    fn step(&mut self, eof: bool, out: &mut Vec<InferenceEvent>) -> bool {
        let moved = match self.state {
            State::Prose => return self.prose_step(eof, out),
            State::Lead => self.lead(eof),
            State::Object => self.object(out),
            State::Key => self.key(out),
            State::Colon(field) => self.colon(field, out),
            State::Value(field) => self.value(field, out),
            State::Scan(field, scan) => self.scan(field, scan, out),
            State::Comma => self.comma(out),
            State::After => self.after(),
            State::MistralOpen => self.mistral_open(out),
            State::MistralName | State::MistralId => self.mistral_name(out),
            State::ListStart => self.list_start(out),
            State::DsCalls => self.ds_calls(out),
            State::DsHeader => self.ds_header(out),
            State::DsName => self.ds_name(out),
            State::DsFence => self.ds_fence(),
            State::WrapperEnd => self.wrapper_end(),
        };
        if !moved && eof {
            self.stuck(out);
            return true;
        }
        moved
    }

    /// Streams (or keeps, before `Start`) a piece of the current call's arguments.
    fn args_text(&mut self, text: &str, out: &mut Vec<InferenceEvent>) {
        let Some(call) = self.call.as_mut() else { return };
        if text.is_empty() {
            return;
        }
        call.has_args = true;
        if call.started {
            out.push(InferenceEvent::ToolCall(ToolCallEvent::Arguments { index: call.index, delta: text.to_owned() }));
        } else {
            call.args.push_str(text);
        }
    }

    /// Sends `Start` once the name is known (and, for a Mistral JSON call, its id, unless `force`).
    fn maybe_start(&mut self, force: bool, out: &mut Vec<InferenceEvent>) {
        let Some(call) = self.call.as_mut() else { return };
        let Some(name) = call.name.clone().filter(|_| !call.started) else { return };
        let waits_for_id = self.format == ToolFormat::Mistral && !call.bare && call.id.is_none();
        if waits_for_id && !force {
            return;
        }
        let index = self.calls;
        self.calls += 1;
        let id = call.id.take().unwrap_or_else(|| format!("call_{}_{index}", self.id_prefix));
        call.started = true;
        call.index = index;
        out.push(InferenceEvent::ToolCall(ToolCallEvent::Start { index, id, name }));
        if !call.args.is_empty() {
            let delta = std::mem::take(&mut call.args);
            out.push(InferenceEvent::ToolCall(ToolCallEvent::Arguments { index, delta }));
        }
        self.recording = false;
        self.raw.clear();
    }

    /// Ends the current call: `Start` if it still waited, `{}` if it had no arguments, `Stop`.
    fn finish_call(&mut self, out: &mut Vec<InferenceEvent>) {
        self.maybe_start(true, out);
        if let Some(call) = self.call.take().filter(|c| c.started) {
            let index = call.index;
            if !call.has_args {
                out.push(InferenceEvent::ToolCall(ToolCallEvent::Arguments { index, delta: "{}".into() }));
            }
            out.push(InferenceEvent::ToolCall(ToolCallEvent::Stop { index }));
        }
        self.recording = false;
        self.raw.clear();
    }

    /// The text is not (or no longer) call syntax: an unstarted call's text is content, a started call ends here.
    fn malformed(&mut self, out: &mut Vec<InferenceEvent>) {
        if self.recording {
            let raw = std::mem::take(&mut self.raw);
            self.recording = false;
            self.call = None;
            self.prose(&raw, out);
        } else {
            self.finish_call(out);
        }
        self.state = State::Prose;
    }

    /// At the end of the output, the state waits for text that will never come.
    fn stuck(&mut self, out: &mut Vec<InferenceEvent>) {
        if let State::Scan(Field::Args, _) = self.state {
            let rest = self.consume(self.buf.len());
            self.args_text(&rest, out);
        }
        let named = self.call.as_ref().is_some_and(|c| c.name.is_some());
        if self.recording && !named {
            self.malformed(out);
        } else {
            // Partial closing syntax of a call that is complete or being closed now.
            self.buf.clear();
            self.finish_call(out);
            self.state = State::Prose;
        }
    }

    fn begin_object(&mut self, ctx: Ctx) {
        self.ctx = ctx;
        self.begin_call();
        self.state = State::Object;
    }

    fn begin_call(&mut self) {
        if !self.recording {
            self.start_recording(String::new());
        }
        self.call = Some(Call::default());
    }

    fn start_recording(&mut self, prefix: String) {
        self.recording = true;
        self.raw = prefix;
    }

    fn back_to_prose(&mut self) -> bool {
        self.state = State::Prose;
        self.skip_space = true;
        true
    }

    /// Drops leading white space; false when nothing else is buffered yet.
    fn skip_ws(&mut self) -> bool {
        let n = self.buf.len() - self.buf.trim_start().len();
        self.consume(n);
        !self.buf.is_empty()
    }

    /// Takes `n` bytes off the front of the buffer, recording them while a call has not started.
    fn consume(&mut self, n: usize) -> String {
        let text: String = self.buf.drain(..n).collect();
        if self.recording {
            self.raw.push_str(&text);
        }
        text
    }

    /// Emits prose, dropping white space that only separates it from calls.
    fn prose(&mut self, text: &str, out: &mut Vec<InferenceEvent>) {
        let mut text = text;
        if self.skip_space {
            text = text.trim_start();
            if text.is_empty() {
                return;
            }
            self.skip_space = false;
        }
        let body = text.trim_end();
        if !body.is_empty() {
            let mut content = std::mem::take(&mut self.held_space);
            content.push_str(body);
            out.push(InferenceEvent::Content(content));
        }
        self.held_space.push_str(&text[body.len()..]);
    }
}

/// Whether `text` starts with one of `markers` (`Some(true)`), may still become one (`Some(false)`), or not (`None`).
fn marker_at(text: &str, markers: &[&str]) -> Option<bool> {
    if markers.iter().any(|m| text.starts_with(m)) {
        Some(true)
    } else if markers.iter().any(|m| m.starts_with(text)) {
        Some(false)
    } else {
        None
    }
}
