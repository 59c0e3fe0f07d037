//! A GGUF's Jinja chat template (`tokenizer.chat_template`), rendered in Rust with minijinja, sandboxed.
//!
//! Rules:
//! - The variables are the ones Hugging Face transformers' `apply_chat_template` passes (templates are written and
//!   tested against it): `messages` (dicts), `tools` (`none` when there are none), `add_generation_prompt`,
//!   `bos_token`, `eos_token`, and `enable_thinking` / `reasoning_effort` only when set; `raise_exception(msg)` and
//!   `strftime_now(fmt)`; `trim_blocks` and `lstrip_blocks` on; `tojson` is HF's (`json.dumps`: no HTML escaping,
//!   `", "`/`": "` separators, `indent=`, `ensure_ascii=`, `separators=`, `sort_keys=`), not Jinja2's.
//! - A template is untrusted input (a GGUF from anywhere; CVE-2024-34359 was an unsandboxed Jinja2). minijinja has
//!   no Python object model to escape through; on top of that: no loader and no `include`/`import`/`extends` (the
//!   `multi_template` feature is off), a cap on the source, on the fuel (steps and bytes) of one render, on the
//!   output, on `tojson` nesting and on `str.format` widths, and no `pprint`; every render runs on its own thread
//!   with a large stack, so the deepest value the fuel lets a template build can be printed, compared and dropped
//!   (minijinja recurses per level) without overflowing a stack, which would abort the process. Every failure is
//!   `CortexError::Template` with a message a user can act on.
//! - Tool calls are passed as OpenAI's shape with parsed `arguments`; when a template then fails (some read
//!   `content is none` on a call turn, some concatenate `arguments` as text, some need `content` to be a string),
//!   the other shapes are tried in a fixed order, as llama.cpp's minja does with its capability probes.
//! - A template that cannot render tools (`supports_tools()` false) but is offered some is given them in the system
//!   message ([`tool_instructions`], the Hermes `<tool_call>` format), earlier calls as `<tool_call>` text in the
//!   assistant turns, and results as `<tool_response>` text in turns of role `tool`; where the template rejects or
//!   silently drops role `tool` (its output lacks a result), results go in `user` turns instead.
//! - An assistant prefill ([`split_prefill`]): a conversation that ends with an assistant message of text (no tool
//!   calls) is continued, not answered: the engines render the messages before it with the open assistant turn and
//!   append its content verbatim, with no end of turn (llama-server's default, Anthropic's prefill, vLLM's
//!   `continue_final_message`). The split is made here, once, for generation, `render` and token counting alike.

use std::io;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, Value};

use crate::config::ToolSpec;
use crate::error::CortexError;
use crate::request::{ChatMessage, Role, ToolCall};

/// Largest template source accepted. Real ones are 1–20 KiB.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// Largest prompt a render may produce; more is a runaway template, far past any context window.
pub const MAX_OUTPUT_BYTES: usize = 4 << 20;
/// Fuel of one render: about one unit per instruction and per 64 bytes of data made, so it bounds both time and
/// memory (500,000 x 64 B = 32 MB). The real templates in the tests spend under 20,000 on 200 messages and 20 tools;
/// this leaves 25x headroom and stops a runaway loop within tens of milliseconds.
pub const FUEL: u64 = 500_000;
/// Deepest value `tojson` writes (real tool schemas nest a handful of levels).
const MAX_JSON_DEPTH: usize = 128;
/// Stack of the render thread (reserved, touched only as used). A template can nest a value once per ~8 fuel
/// (`{% set ns.x = [ns.x] %}` in a loop), so up to ~60,000 levels; printing, comparing or dropping it recurses once
/// per level in minijinja, at up to ~600 bytes a level measured in release builds (more in debug): 128 MiB covers
/// it with room to spare, where a default 2 MiB thread would overflow at ~3,000 levels and abort the process.
const RENDER_STACK_BYTES: usize = 128 << 20;
const NAME: &str = "chat_template";

/// ChatML as a Jinja template: what an engine without a template of its own renders (Pinky).
pub const CHATML: &str = "{% for message in messages %}<|im_start|>{{ message.role }}\n\
    {% if message.content %}{{ message.content }}{% endif %}<|im_end|>\n\
    {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// Template variables beyond messages and tools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateKwargs {
    pub enable_thinking: Option<bool>,
    pub reasoning_effort: Option<String>,
}

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    supports_tools: bool,
    supports_thinking: bool,
}

/// How tool-call turns are shaped for the template (see the module rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    /// `content` of an assistant turn that only calls tools: `none` (OpenAI's wire form) or `""`.
    null_call_content: bool,
    /// `arguments` as a parsed JSON value (HF's form) or as the JSON text.
    parsed_arguments: bool,
    /// Without template tool support: tool results keep role `tool` (else they become `user` turns).
    tool_role: bool,
}

impl ChatTemplate {
    /// Compiles a template (the GGUF's `tokenizer.chat_template`). A syntax error is CortexError::Template naming the
    /// line.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, CortexError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(CortexError::Template(format!(
                "the template is {} bytes, over the limit of {MAX_SOURCE_BYTES}",
                source.len()
            )));
        }
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(python_method);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| template_error(&e))?;
        env.set_syntax(syntax);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_fuel(Some(FUEL));
        // Debug formatting is quadratic in nesting and charged only after it is built; no chat template uses it.
        env.remove_filter("pprint");
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME, source.to_owned()).map_err(|e| template_error(&e))?;
        let template = env.get_template(NAME).map_err(|e| template_error(&e))?;
        let names = template.undeclared_variables(false);
        let supports_tools = names.contains("tools");
        let supports_thinking = names.contains("enable_thinking") || source.contains("<think>");
        Ok(Self { env, bos_token: bos_token.into(), eos_token: eos_token.into(), supports_tools, supports_thinking })
    }

    /// Whether the template itself renders `tools` (its source reads the `tools` variable).
    pub fn supports_tools(&self) -> bool {
        self.supports_tools
    }

    /// Whether it reads `enable_thinking` or opens a think block itself (its source writes `<think>`).
    pub fn supports_thinking(&self) -> bool {
        self.supports_thinking
    }

    /// The prompt for `messages`, with `tools` (rendered by the template when it supports them; otherwise described
    /// in a system message, see [`tool_instructions`]) and an open assistant turn when `add_generation_prompt`.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
        add_generation_prompt: bool,
        kwargs: &TemplateKwargs,
    ) -> Result<String, CortexError> {
        std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("chat-template".into())
                .stack_size(RENDER_STACK_BYTES)
                .spawn_scoped(scope, || self.render_shapes(messages, tools, add_generation_prompt, kwargs))
                .map_err(|e| CortexError::Template(format!("cannot start the template thread: {e}")))?;
            let rendered = worker.join().map_err(|_| CortexError::Template("the template renderer panicked".into()))?;
            rendered.map(|(text, _fuel)| text)
        })
    }

    /// Tries each shape of tool-call turns that can make a difference, in order; the first that renders wins and a
    /// total failure reports the first error. A sandbox limit is final: retrying would only spend it again. Also
    /// returns the fuel the render spent (the tests size [`FUEL`] with it).
    fn render_shapes(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
        add_generation_prompt: bool,
        kwargs: &TemplateKwargs,
    ) -> Result<(String, u64), CortexError> {
        let inline_tools = !tools.is_empty() && !self.supports_tools;
        let calls = !inline_tools && messages.iter().any(|m| !m.tool_calls.is_empty());
        let empty_calls = calls && messages.iter().any(|m| !m.tool_calls.is_empty() && m.content.is_empty());
        let results = inline_tools && messages.iter().any(|m| m.role == Role::Tool);
        let mut shapes = Vec::new();
        for tool_role in [true, false] {
            for null_call_content in [true, false] {
                for parsed_arguments in [true, false] {
                    if (tool_role || results) && (null_call_content || empty_calls) && (parsed_arguments || calls) {
                        shapes.push(Shape { null_call_content, parsed_arguments, tool_role });
                    }
                }
            }
        }
        let mut first_error = None;
        let mut dropped = None;
        for shape in shapes {
            match self.render_once(messages, tools, add_generation_prompt, kwargs, shape) {
                Ok((text, fuel)) => {
                    // A template that does not know role `tool` may drop such turns silently: try the user form.
                    let lost = shape.tool_role
                        && results
                        && messages.iter().any(|m| m.role == Role::Tool && !text.contains(m.content.as_str()));
                    if !lost {
                        return Ok((text, fuel));
                    }
                    dropped = Some((text, fuel));
                }
                Err(Failure::Limit(e)) => return Err(e),
                Err(Failure::Other(e)) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (dropped, first_error) {
            (Some(rendered), _) => Ok(rendered),
            (None, Some(e)) => Err(e),
            (None, None) => Err(CortexError::Template("no way to render this conversation".into())),
        }
    }

    fn render_once(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
        add_generation_prompt: bool,
        kwargs: &TemplateKwargs,
        shape: Shape,
    ) -> Result<(String, u64), Failure> {
        let inline_tools = !tools.is_empty() && !self.supports_tools;
        let described;
        let messages = if inline_tools {
            described = with_tool_instructions(messages, tools);
            described.as_slice()
        } else {
            messages
        };
        let values: Vec<Value> = messages.iter().map(|m| message_value(m, shape, inline_tools)).collect();
        let tools_value = if tools.is_empty() || inline_tools {
            Value::from(())
        } else {
            tools.iter().map(tool_value).collect::<Value>()
        };
        let mut ctx = vec![
            ("messages", Value::from(values)),
            ("tools", tools_value),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
        ];
        if let Some(on) = kwargs.enable_thinking {
            ctx.push(("enable_thinking", Value::from(on)));
        }
        if let Some(effort) = &kwargs.reasoning_effort {
            ctx.push(("reasoning_effort", Value::from(effort.as_str())));
        }
        let template = self.env.get_template(NAME).map_err(|e| Failure::Other(template_error(&e)))?;
        let mut out = CappedWriter { buf: Vec::new(), overflowed: false };
        let result = template
            .render_captured_to(Value::from_pairs(ctx), &mut out)
            .map(|captured| captured.state().fuel_levels().map_or(0, |(consumed, _)| consumed));
        if out.overflowed {
            return Err(Failure::Limit(CortexError::Template(format!(
                "the template's output passed its limit of {} MiB",
                MAX_OUTPUT_BYTES >> 20
            ))));
        }
        let fuel = result.map_err(|e| Failure::classify(&e))?;
        let text = String::from_utf8(out.buf)
            .map_err(|_| Failure::Other(CortexError::Template("the template produced invalid UTF-8".into())))?;
        Ok((text, fuel))
    }
}

/// A failed render: a sandbox limit (final) or anything else (another shape may work).
enum Failure {
    Limit(CortexError),
    Other(CortexError),
}

impl Failure {
    fn classify(err: &Error) -> Self {
        let limit = err.kind() == ErrorKind::OutOfFuel
            || err.detail().is_some_and(|d| d.contains("recursion limit") || d.contains("limit of"));
        if limit { Self::Limit(template_error(err)) } else { Self::Other(template_error(err)) }
    }
}

/// One message as HF passes it: `role`, `content`, and `tool_calls`, `tool_call_id`, `name`, `reasoning_content`
/// only when set. With `inline_tools`, calls and results become text the template can show without knowing tools.
fn message_value(message: &ChatMessage, shape: Shape, inline_tools: bool) -> Value {
    let mut role = message.role.as_str();
    let mut content = Value::from(message.content.as_str());
    let mut pairs: Vec<(&str, Value)> = Vec::new();
    if inline_tools && !message.tool_calls.is_empty() {
        let calls: Vec<String> = message.tool_calls.iter().map(hermes_call).collect();
        let mut text = message.content.clone();
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&calls.join("\n"));
        content = Value::from(text);
    } else if inline_tools && message.role == Role::Tool {
        content = Value::from(format!("<tool_response>\n{}\n</tool_response>", message.content));
        if !shape.tool_role {
            role = Role::User.as_str();
        }
    } else if !message.tool_calls.is_empty() {
        if message.content.is_empty() && shape.null_call_content {
            content = Value::from(());
        }
        let calls = message.tool_calls.iter().map(|call| {
            let arguments =
                if shape.parsed_arguments { parse_json(&call.arguments) } else { call.arguments.clone().into() };
            Value::from_pairs([
                ("id", Value::from(call.id.as_str())),
                ("type", Value::from("function")),
                ("function", Value::from_pairs([("name", Value::from(call.name.as_str())), ("arguments", arguments)])),
            ])
        });
        pairs.push(("tool_calls", calls.collect::<Value>()));
    }
    let mut all = vec![("role", Value::from(role)), ("content", content)];
    all.append(&mut pairs);
    if let Some(id) = &message.tool_call_id {
        all.push(("tool_call_id", Value::from(id.as_str())));
    }
    if let Some(name) = &message.name {
        all.push(("name", Value::from(name.as_str())));
    }
    if let Some(reasoning) = &message.reasoning {
        all.push(("reasoning_content", Value::from(reasoning.as_str())));
    }
    Value::from_pairs(all)
}

/// `{"type": "function", "function": {"name", "description", "parameters"}}`; a missing description is `""`, as
/// llama.cpp passes it (templates concatenate it).
fn tool_value(tool: &ToolSpec) -> Value {
    Value::from_pairs([
        ("type", Value::from("function")),
        (
            "function",
            Value::from_pairs([
                ("name", Value::from(tool.name.as_str())),
                ("description", Value::from(tool.description.as_deref().unwrap_or(""))),
                ("parameters", parse_json(&tool.parameters)),
            ]),
        ),
    ])
}

/// JSON text as a template value (key order kept); text that is not JSON stays a string.
fn parse_json(text: &str) -> Value {
    serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::from(text))
}

/// One call in the Hermes format the tool-call parser reads.
/// Arguments that are not JSON are written as a JSON string.
fn hermes_call(call: &ToolCall) -> String {
    let call =
        Value::from_pairs([("name", Value::from(call.name.as_str())), ("arguments", parse_json(&call.arguments))]);
    format!("<tool_call>\n{}\n</tool_call>", python_json(&call))
}

/// A value written as Python's `json.dumps` does by default (`", "` and `": "`), key order kept.
fn python_json(value: &Value) -> String {
    let mut writer = JsonWriter::new(None, ", ", ": ", false, false);
    match writer.value(value, 0) {
        Ok(()) => writer.out,
        Err(_) => "null".into(),
    }
}

/// An assistant prefill: when `messages` end with an assistant message without tool calls, the messages before it
/// and its content, which the model continues (the prompt is those messages rendered with the open assistant turn,
/// then this text as it is, with no end of turn after it); otherwise all of `messages` and `None`.
///
/// As in llama-server: an empty content is a prefill too, of nothing, so the conversation renders exactly as without
/// that message (an open assistant turn, not a closed empty one followed by another); a lone assistant message
/// renders an empty conversation with the open turn; an assistant turn before the last one stays a closed turn. The
/// prefill's `reasoning` is not rendered (the text continued is its content; to continue a thought, write it in the
/// content, `<think>...`). An assistant message that calls tools is a finished turn (rendered as before): the
/// answer then is a new turn.
pub fn split_prefill(messages: &[ChatMessage]) -> (&[ChatMessage], Option<&str>) {
    match messages.split_last() {
        Some((last, before)) if last.role == Role::Assistant && last.tool_calls.is_empty() => {
            (before, Some(last.content.as_str()))
        }
        _ => (messages, None),
    }
}

/// `messages` without their oldest turn, and how many messages that was: the first message after the leading system
/// messages up to (not including) the next user message. `None` when no turn can go: the last user turn (and what
/// follows it) always stays, and so do the system messages.
pub fn without_oldest_turn(messages: &[ChatMessage]) -> Option<(Vec<ChatMessage>, usize)> {
    let start = messages.iter().position(|m| m.role != Role::System)?;
    let end = start + 1 + messages[start + 1..].iter().position(|m| m.role == Role::User)?;
    let mut kept = messages[..start].to_vec();
    kept.extend_from_slice(&messages[end..]);
    Some((kept, end - start))
}

/// `messages` with [`tool_instructions`] at the start of the system message (a new one when there is none): how a
/// template that cannot show tools, or llama.cpp's built-in matcher, is told about them.
pub fn with_tool_instructions(messages: &[ChatMessage], tools: &[ToolSpec]) -> Vec<ChatMessage> {
    let instructions = tool_instructions(tools);
    let mut out = messages.to_vec();
    match out.first_mut() {
        Some(first) if first.role == Role::System => {
            first.content =
                if first.content.is_empty() { instructions } else { format!("{instructions}\n\n{}", first.content) };
        }
        _ => out.insert(0, ChatMessage::new(Role::System, instructions)),
    }
    out
}

/// The system-prompt text that describes tools to a model whose template cannot (public: also used by tests).
pub fn tool_instructions(tools: &[ToolSpec]) -> String {
    let mut text = String::from(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>",
    );
    for tool in tools {
        text.push('\n');
        text.push_str(&python_json(&tool_value(tool)));
    }
    text.push_str(
        "\n</tools>\n\nTo call a function, reply with one <tool_call></tool_call> block per call, each holding a \
         JSON object with the function name and arguments:\n<tool_call>\n\
         {\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>",
    );
    text
}

/// Widest field `str.format` may pad to: contrib's `str.format` allocates the padding before fuel sees it.
const MAX_FORMAT_WIDTH: usize = 1024;

/// Python's str/dict/list methods (minijinja-contrib's `pycompat`), with `str.format` refused when a field asks for a
/// width or precision past [`MAX_FORMAT_WIDTH`] (or a computed one): `'{:>1000000000}'.format(1)` would allocate a
/// gigabyte before any limit could stop it.
fn python_method(state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if method == "format"
        && let Some(text) = value.as_str()
        && !format_widths_ok(text)
    {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("str.format: a field width or precision is over the limit of {MAX_FORMAT_WIDTH}"),
        ));
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Whether every replacement field's spec (after `:`) has only literal numbers up to [`MAX_FORMAT_WIDTH`]; a nested
/// field (a computed width) is refused too.
fn format_widths_ok(text: &str) -> bool {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '{' {
            continue;
        }
        if chars.peek() == Some(&'{') {
            chars.next();
            continue;
        }
        let (mut in_spec, mut number) = (false, 0usize);
        loop {
            match chars.next() {
                // Unclosed: `format` itself reports it.
                None => return true,
                Some('}') => break,
                Some('{') => return false,
                Some(':') if !in_spec => in_spec = true,
                Some(d) if in_spec && d.is_ascii_digit() => {
                    number = number.saturating_mul(10).saturating_add(d as usize - '0' as usize);
                    if number > MAX_FORMAT_WIDTH {
                        return false;
                    }
                }
                Some(_) => number = 0,
            }
        }
    }
    true
}

/// A render target that refuses to grow past [`MAX_OUTPUT_BYTES`], so a runaway template stops early.
struct CappedWriter {
    buf: Vec<u8>,
    overflowed: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT_BYTES {
            self.overflowed = true;
            return Err(io::Error::other("output limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A minijinja error as a user-facing message: the line, what went wrong, and the limit when one was hit.
fn template_error(err: &Error) -> CortexError {
    let what = match err.kind() {
        ErrorKind::OutOfFuel => format!("the template ran past its limit of {FUEL} steps"),
        kind => match err.detail() {
            Some(detail) => format!("{kind}: {detail}"),
            None => kind.to_string(),
        },
    };
    match err.line() {
        Some(line) => CortexError::Template(format!("line {line}: {what}")),
        None => CortexError::Template(what),
    }
}

/// `raise_exception(msg)`: templates call it to reject a conversation they cannot render.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, format!("the template raised an exception: {message}")))
}

/// `strftime_now(fmt)`, the current UTC time (templates print today's date). Supports `%Y %y %m %d %e %j %H %I %M
/// %S %p %b %B %a %A %%` and glibc's `-` flag (`%-d`); other directives are copied as written.
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    strftime(&format, secs)
}

fn strftime(format: &str, unix_secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let (hour, minute, second) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    let month_name = MONTHS[(month - 1) as usize];
    let day_name = DAYS[(days % 7) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = chars.next();
        let no_pad = spec == Some('-');
        if no_pad {
            spec = chars.next();
        }
        let num = |n: u64, width: usize| if no_pad { n.to_string() } else { format!("{n:0width$}") };
        match spec {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&num(year % 100, 2)),
            Some('m') => out.push_str(&num(month, 2)),
            Some('d') => out.push_str(&num(day, 2)),
            Some('e') => out.push_str(&if no_pad { day.to_string() } else { format!("{day:2}") }),
            Some('j') => out.push_str(&num(day_of_year, 3)),
            Some('H') => out.push_str(&num(hour, 2)),
            Some('I') => out.push_str(&num((hour + 11) % 12 + 1, 2)),
            Some('M') => out.push_str(&num(minute, 2)),
            Some('S') => out.push_str(&num(second, 2)),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('b') => out.push_str(&month_name[..3]),
            Some('B') => out.push_str(month_name),
            Some('a') => out.push_str(&day_name[..3]),
            Some('A') => out.push_str(day_name),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01, for years from 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y % 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `tojson` as HF defines it: `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
/// A positional argument is the indent, as in Jinja2's own filter.
fn tojson(state: &State, value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent {
        Some(indent) => Some(indent),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_str() {
            Some(text) => Some(text.to_owned()),
            None => Some(" ".repeat(usize::try_from(v)?.min(64))),
        },
    };
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let (item_sep, key_sep) = match kwargs.get::<Option<Vec<String>>>("separators")? {
        Some(pair) if pair.len() == 2 => (pair[0].clone(), pair[1].clone()),
        Some(_) => return Err(Error::new(ErrorKind::InvalidOperation, "separators must be two strings")),
        None if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        None => (", ".to_owned(), ": ".to_owned()),
    };
    kwargs.assert_all_used()?;
    let mut writer = JsonWriter::new(indent, &item_sep, &key_sep, ensure_ascii, sort_keys);
    writer.value(value, 0)?;
    // The engine charges the returned string; this charges the walk over the value as well.
    state.consume_fuel((writer.out.len() / 64) as u64)?;
    Ok(Value::from_safe_string(writer.out))
}

/// Python's `json.dumps` over template values, capped in depth and size.
struct JsonWriter {
    out: String,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    ensure_ascii: bool,
    sort_keys: bool,
}

impl JsonWriter {
    fn new(indent: Option<String>, item_sep: &str, key_sep: &str, ensure_ascii: bool, sort_keys: bool) -> Self {
        Self { out: String::new(), indent, item_sep: item_sep.into(), key_sep: key_sep.into(), ensure_ascii, sort_keys }
    }

    fn value(&mut self, value: &Value, depth: usize) -> Result<(), Error> {
        if depth > MAX_JSON_DEPTH {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: the value nests deeper than the limit of {MAX_JSON_DEPTH}"),
            ));
        }
        if self.out.len() > MAX_OUTPUT_BYTES {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: the text passed the limit of {} MiB", MAX_OUTPUT_BYTES >> 20),
            ));
        }
        match value.kind() {
            ValueKind::Undefined | ValueKind::None => self.out.push_str("null"),
            ValueKind::Bool => self.out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number if value.is_integer() => self.out.push_str(&value.to_string()),
            ValueKind::Number => self.out.push_str(&python_float(f64::try_from(value.clone())?)),
            ValueKind::String => self.string(value.as_str().unwrap_or_default()),
            ValueKind::Bytes => {
                let bytes = value.as_bytes().unwrap_or_default().to_vec();
                self.container('[', ']', bytes.len(), depth, |w, i, _| {
                    w.out.push_str(&bytes[i].to_string());
                    Ok(())
                })?;
            }
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.container('[', ']', items.len(), depth, |w, i, depth| w.value(&items[i], depth))?;
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = value.try_iter()?.collect();
                if self.sort_keys {
                    keys.sort_by_key(|k| k.to_string());
                }
                self.container('{', '}', keys.len(), depth, |w, i, depth| {
                    let key = &keys[i];
                    match key.as_str() {
                        Some(text) => w.string(text),
                        None => w.string(&key.to_string()),
                    }
                    let sep = w.key_sep.clone();
                    w.out.push_str(&sep);
                    w.value(&value.get_item(key)?, depth)
                })?;
            }
            // Functions, namespaces, invalid values: Python would refuse them; their text is the least surprise.
            _ => self.string(&value.to_string()),
        }
        Ok(())
    }

    fn container(
        &mut self,
        open: char,
        close: char,
        len: usize,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.out.push(open);
        if len == 0 {
            self.out.push(close);
            return Ok(());
        }
        for i in 0..len {
            if i > 0 {
                let sep = self.item_sep.clone();
                self.out.push_str(&sep);
            }
            self.newline(depth + 1);
            item(self, i, depth + 1)?;
        }
        self.newline(depth);
        self.out.push(close);
        Ok(())
    }

    fn newline(&mut self, depth: usize) {
        if let Some(indent) = &self.indent {
            self.out.push('\n');
            for _ in 0..depth {
                self.out.push_str(indent);
            }
        }
    }

    fn string(&mut self, text: &str) {
        self.out.push('"');
        for c in text.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '\u{8}' => self.out.push_str("\\b"),
                '\u{c}' => self.out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        self.out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

/// A float as Python's `repr` writes it: shortest round-trip digits, `1.0` not `1`, exponent form (`1e+16`,
/// `1e-05`) outside 1e-4..1e16, and `NaN` / `Infinity` as `json.dumps` allows by default.
fn python_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let sci = format!("{v:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else { return sci };
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let body = if (-4..16).contains(&exp) {
        if exp >= 0 {
            let point = exp as usize + 1;
            if digits.len() <= point {
                format!("{digits}{}.0", "0".repeat(point - digits.len()))
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            }
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let mantissa = if digits.len() == 1 { digits } else { format!("{}.{}", &digits[..1], &digits[1..]) };
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests;
