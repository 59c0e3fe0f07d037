//! Python inputs to cortex types: messages, `InferenceConfig`, Pinky's script.
//!
//! Rules: configs are read by attribute (the Python dataclasses in `rusty_genius.core.config`, or any object with
//! those attributes), always whole: a request carries its complete config, never None for "the defaults"; integers
//! are read wide and range-checked here so a negative or huge value (even one past 64 bits) is a `ConfigError`
//! naming the field, not an OverflowError; messages must be mappings with a known `role` and a `str` `content`, and
//! an error names the index of the bad message.
//! Errors say what is wrong in the caller's terms, never with Python's exception text (the reading helpers in
//! `read`).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMapping, PyString};
use rusty_genius_cortex::config::{Output, Reasoning, ResponseFormat, ToolChoice, ToolSpec};
use rusty_genius_cortex::request::ToolCall;
use rusty_genius_cortex::{Behavior, ChatMessage, ContextOverflow, CortexError, InferenceConfig, Role, Sampling};

use crate::errors::{RequestError, config_error, to_py};
use crate::read::{attr, json_text, lone_surrogate, no_attribute, not_accepted, opt_u32, req_u32, type_name};

/// Reads and validates a `Behavior`.
pub fn behavior(obj: &Bound<'_, PyAny>) -> PyResult<Behavior> {
    let o = "Behavior";
    let b = Behavior {
        show_thinking: attr(obj, o, "show_thinking")?,
        max_tokens: opt_u32(obj, o, "max_tokens", "must be at least 1, or None for no limit")?,
        stop: stop(obj)?,
        context_size: opt_u32(obj, o, "context_size", "must be between 16 and 1048576 tokens")?,
        logprobs: opt_u32(obj, o, "logprobs", "must be between 0 and 20, or None (off)")?,
        context_overflow: context_overflow(obj)?,
    };
    b.validate().map_err(to_py)?;
    Ok(b)
}

/// Reads `Behavior.context_overflow`: `"error"`, `"drop_oldest_turns"` or `"shift"`.
fn context_overflow(obj: &Bound<'_, PyAny>) -> PyResult<ContextOverflow> {
    let name: String = attr(obj, "Behavior", "context_overflow")?;
    ContextOverflow::parse(&name).ok_or_else(|| {
        let names = ContextOverflow::NAMES.join(", ");
        config_error(format!("context_overflow must be one of {names}, not {name:?}"), Some("context_overflow"))
    })
}

/// Reads `Behavior.stop`: a `str` or a sequence of them; an error names the bad item (`stop[1]`).
fn stop(obj: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let value = obj.getattr("stop").map_err(|_| no_attribute("Behavior", "stop"))?;
    let bad = |what: String| config_error(what, Some("stop"));
    if value.is_instance_of::<PyString>() {
        return value.extract().map(|s| vec![s]).map_err(|_| bad(not_accepted(&value, "stop", "a str")));
    }
    let items: Vec<Bound<'_, PyAny>> =
        value.extract().map_err(|_| bad(not_accepted(&value, "stop", "a str or a sequence of str")))?;
    let item = |(i, v): (usize, &Bound<'_, PyAny>)| {
        v.extract::<String>().map_err(|_| bad(not_accepted(v, &format!("stop[{i}]"), "a str")))
    };
    items.iter().enumerate().map(item).collect()
}

/// Reads and validates a `Sampling`.
pub fn sampling(obj: &Bound<'_, PyAny>) -> PyResult<Sampling> {
    let o = "Sampling";
    let s = Sampling {
        temperature: attr(obj, o, "temperature")?,
        top_k: req_u32(obj, o, "top_k", "must be 0 (disabled) or more")?,
        top_p: attr(obj, o, "top_p")?,
        min_p: attr(obj, o, "min_p")?,
        repeat_penalty: attr(obj, o, "repeat_penalty")?,
        presence_penalty: attr(obj, o, "presence_penalty")?,
        frequency_penalty: attr(obj, o, "frequency_penalty")?,
        seed: opt_u32(obj, o, "seed", "must be between 0 and 4294967295, or None")?,
        grammar: attr(obj, o, "grammar")?,
        logit_bias: logit_bias(obj)?,
    };
    s.validate().map_err(to_py)?;
    Ok(s)
}

/// Reads `Sampling.logit_bias`: a mapping of token id to bias (its `items()`). Ids and biases are read wide, then
/// narrowed here, so an id past i32 or a bias past f32 is a `ConfigError` naming `logit_bias`.
fn logit_bias(obj: &Bound<'_, PyAny>) -> PyResult<Vec<(i32, f32)>> {
    let field = "logit_bias";
    let bad = |what: String| config_error(format!("invalid logit_bias: {what}"), Some(field));
    let value = obj.getattr(field).map_err(|_| bad("Sampling has no attribute 'logit_bias'".into()))?;
    let shape = || bad("must be a mapping of token id (an integer) to bias (a number)".into());
    let items = value.call_method0("items").and_then(|items| items.try_iter()).map_err(|_| shape())?;
    let mut out = Vec::new();
    for item in items {
        let (token, bias): (i64, f64) = item.and_then(|i| i.extract()).map_err(|_| shape())?;
        let token = i32::try_from(token)
            .map_err(|_| bad(format!("token id {token} is {}", if token < 0 { "negative" } else { "too large" })))?;
        // A finite bias past f32 becomes infinite and is refused by the range check.
        #[allow(clippy::cast_possible_truncation)]
        out.push((token, bias as f32));
    }
    Ok(out)
}

/// Reads a complete `InferenceConfig`. There is no "None means the defaults" here: the Python dataclasses are the
/// one schema and own the defaults, so every request arrives with all of its settings.
pub fn config(obj: &Bound<'_, PyAny>) -> PyResult<InferenceConfig> {
    Ok(InferenceConfig {
        behavior: behavior(&obj.getattr("behavior").map_err(|_| not_a_config(obj))?)?,
        sampling: sampling(&obj.getattr("sampling").map_err(|_| not_a_config(obj))?)?,
        output: output(&obj.getattr("output").map_err(|_| not_a_config(obj))?)?,
        reasoning: reasoning(&obj.getattr("reasoning").map_err(|_| not_a_config(obj))?)?,
    })
}

/// Reads and validates an `Output` (tools, tool choice, response format): structure here and in cortex, then each
/// schema compiled by the constraint engine so one it cannot enforce is refused before any request runs.
pub fn output(obj: &Bound<'_, PyAny>) -> PyResult<Output> {
    let o = "Output";
    let items: Vec<Bound<'_, PyAny>> = attr(obj, o, "tools")?;
    let mut tools = Vec::with_capacity(items.len());
    for (i, tool) in items.iter().enumerate() {
        let name: String = tool
            .getattr("name")
            .and_then(|v| v.extract())
            .map_err(|_| config_error(format!("invalid tools[{i}]: a tool needs a str name"), Some("tools")))?;
        let description: Option<String> = tool.getattr("description").and_then(|v| v.extract()).map_err(|_| {
            config_error(format!("invalid tools[{i}].description: must be a str or None"), Some("tools"))
        })?;
        let parameters = json_text(&tool.getattr("parameters")?, &format!("tools[{i}].parameters"))
            .map_err(|what| config_error(what, Some("tools")))?;
        tools.push(ToolSpec { name, description, parameters });
    }
    let choice: String = attr(obj, o, "tool_choice")?;
    let tool_name: Option<String> = attr(obj, o, "tool_name")?;
    let tool_choice = match (choice.as_str(), tool_name) {
        (_, Some(name)) => ToolChoice::Function(name),
        ("auto", None) => ToolChoice::Auto,
        ("none", None) => ToolChoice::None,
        ("required", None) => ToolChoice::Required,
        (other, None) => {
            return Err(config_error(
                format!("invalid tool_choice = {other:?}: must be 'auto', 'none', 'required' or a function name"),
                Some("tool_choice"),
            ));
        }
    };
    let kind: String = attr(obj, o, "response_format")?;
    let format = match kind.as_str() {
        "text" => ResponseFormat::Text,
        "json_object" => ResponseFormat::JsonObject,
        "json_schema" => {
            let schema = obj.getattr("json_schema")?;
            if schema.is_none() {
                return Err(config_error(
                    "invalid response_format: 'json_schema' needs a schema (json_schema.schema)",
                    Some("response_format"),
                ));
            }
            ResponseFormat::JsonSchema {
                name: attr(obj, o, "schema_name")?,
                schema: json_text(&schema, "response_format.json_schema")
                    .map_err(|what| config_error(what, Some("response_format")))?,
                strict: attr(obj, o, "strict")?,
            }
        }
        other => {
            return Err(config_error(
                format!("invalid response_format = {other:?}: must be 'text', 'json_object' or 'json_schema'"),
                Some("response_format"),
            ));
        }
    };
    let out = Output { tools, tool_choice, parallel_tool_calls: attr(obj, o, "parallel_tool_calls")?, format };
    out.validate().map_err(to_py)?;
    rusty_genius_cortex::constraint::check(&out).map_err(to_py)?;
    Ok(out)
}

/// Reads and validates a `Reasoning`.
pub fn reasoning(obj: &Bound<'_, PyAny>) -> PyResult<Reasoning> {
    let o = "Reasoning";
    let r = Reasoning {
        enabled: attr(obj, o, "enable_thinking")?,
        effort: attr(obj, o, "reasoning_effort")?,
        budget_tokens: opt_u32(obj, o, "thinking_budget", "must be 0 or more tokens, or None for no limit")?,
    };
    r.validate().map_err(to_py)?;
    Ok(r)
}

fn not_a_config(obj: &Bound<'_, PyAny>) -> PyErr {
    let type_name = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
    config_error(format!("config must be a rusty_genius.InferenceConfig, not {type_name}"), None)
}

/// Reads chat messages: a sequence of `{"role": ..., "content": ...}` mappings.
pub fn messages(obj: &Bound<'_, PyAny>) -> PyResult<Vec<ChatMessage>> {
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(RequestError::new_err(
            "messages must be a list of {'role': ..., 'content': ...} dicts, not a string",
        ));
    }
    let items: Vec<Bound<'_, PyAny>> = obj
        .extract()
        .map_err(|_| RequestError::new_err("messages must be a list of {'role': ..., 'content': ...} dicts"))?;
    items.iter().enumerate().map(|(i, item)| message(i, item)).collect()
}

fn message(i: usize, item: &Bound<'_, PyAny>) -> PyResult<ChatMessage> {
    let bad = |what: String| RequestError::new_err(format!("messages[{i}]: {what}"));
    let map = item.cast::<PyMapping>().map_err(|_| bad("must be a dict with 'role' and 'content'".into()))?;
    let str_of = |key: &str, value: &Bound<'_, PyAny>| -> PyResult<String> {
        value.extract::<String>().map_err(|_| match value.cast::<PyString>().ok().and_then(|s| lone_surrogate(s)) {
            Some(code) => RequestError::new_err(format!(
                "messages[{i}].{key} holds a lone surrogate (U+{code:04X}); send valid Unicode text"
            )),
            None => bad(format!("'{key}' must be a str, not {}", type_name(value))),
        })
    };
    let field = |key: &str| -> PyResult<String> {
        let value = map.get_item(key).map_err(|_| bad(format!("has no '{key}'")))?;
        str_of(key, &value)
    };
    let role: Role = field("role")?
        .parse()
        .map_err(|e: CortexError| bad(e.to_string().trim_start_matches("invalid request: ").to_owned()))?;
    // Optional keys: absent and None are the same.
    let optional =
        |key: &str| -> PyResult<Option<Bound<'_, PyAny>>> { Ok(map.get_item(key).ok().filter(|v| !v.is_none())) };
    let text = |key: &str| -> PyResult<Option<String>> { optional(key)?.map(|v| str_of(key, &v)).transpose() };
    let mut tool_calls = Vec::new();
    if let Some(calls) = optional("tool_calls")? {
        let calls: Vec<Bound<'_, PyAny>> =
            calls.extract().map_err(|_| bad("'tool_calls' must be a list of calls".into()))?;
        for (j, call) in calls.iter().enumerate() {
            tool_calls.push(tool_call(call).map_err(|what| bad(format!("tool_calls[{j}]: {what}")))?);
        }
    }
    // An assistant message that only calls tools has no content.
    let content = if role == Role::Assistant && !tool_calls.is_empty() {
        text("content")?.unwrap_or_default()
    } else {
        field("content")?
    };
    let tool_call_id = text("tool_call_id")?;
    if role == Role::Tool && tool_call_id.is_none() {
        return Err(bad("a 'tool' message needs 'tool_call_id' (the id of the call it answers)".into()));
    }
    Ok(ChatMessage {
        role,
        content,
        tool_calls,
        tool_call_id,
        name: text("name")?,
        reasoning: text("reasoning_content")?,
    })
}

/// One call of an assistant message, in OpenAI's shape: `{"id", "type": "function", "function": {"name",
/// "arguments"}}`; `arguments` is JSON text (a mapping is accepted and serialised).
fn tool_call(call: &Bound<'_, PyAny>) -> Result<ToolCall, String> {
    let map = call.cast::<PyMapping>().map_err(|_| "must be a dict".to_owned())?;
    let id: String = map.get_item("id").and_then(|v| v.extract()).map_err(|_| "needs a str 'id'".to_owned())?;
    let function = map.get_item("function").map_err(|_| "needs 'function': {'name', 'arguments'}".to_owned())?;
    let function = function.cast::<PyMapping>().map_err(|_| "'function' must be a dict".to_owned())?;
    let name: String =
        function.get_item("name").and_then(|v| v.extract()).map_err(|_| "needs a str 'function.name'".to_owned())?;
    let arguments = match function.get_item("arguments") {
        Err(_) => "{}".to_owned(),
        Ok(v) if v.is_none() => "{}".to_owned(),
        Ok(v) => json_text(&v, "function.arguments")?,
    };
    Ok(ToolCall { id, name, arguments })
}

/// Pinky script pieces: each a `str` (UTF-8 encoded) or `bytes` (kept as is, to split characters on purpose).
pub fn script(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u8>>> {
    let items: Vec<Bound<'_, PyAny>> =
        obj.extract().map_err(|_| config_error("script must be a list of str or bytes pieces", Some("script")))?;
    items
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            if let Ok(b) = piece.cast::<PyBytes>() {
                Ok(b.as_bytes().to_vec())
            } else if let Ok(s) = piece.cast::<PyString>() {
                Ok(s.to_str()?.as_bytes().to_vec())
            } else {
                Err(config_error(format!("script[{i}] must be str or bytes"), Some("script")))
            }
        })
        .collect()
}
