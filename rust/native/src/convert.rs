//! Python inputs to cortex types: messages, `InferenceConfig`, Pinky's script.
//!
//! Rules: configs are read by attribute (the Python dataclasses in `rusty_genius.core.config`, or any object with
//! those attributes), always whole: a request carries its complete config, never None for "the defaults"; integers are read wide and range-checked here so a negative or huge value is a `ConfigError`
//! naming the field, not an OverflowError; messages must be mappings with a known `role` and a `str` `content`, and
//! an error names the index of the bad message.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMapping, PyString};
use rusty_genius_cortex::{Behavior, ChatMessage, CortexError, InferenceConfig, Role, Sampling};

use crate::errors::{RequestError, config_error, to_py};

fn attr<'py, T: FromPyObjectOwned<'py>>(obj: &Bound<'py, PyAny>, owner: &str, name: &str) -> PyResult<T> {
    let value = obj.getattr(name).map_err(|_| {
        config_error(format!("{owner} has no attribute {name:?}; pass a rusty_genius.{owner}"), Some(name))
    })?;
    value.extract::<T>().map_err(|e| {
        let type_name = value.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        let cause: PyErr = e.into();
        config_error(format!("invalid {name}: a {type_name} is not accepted ({cause})"), Some(name))
    })
}

fn to_u32(field: &'static str, value: i64, expected: &'static str) -> Result<u32, CortexError> {
    u32::try_from(value).map_err(|_| CortexError::InvalidConfig { field, value: value.to_string(), expected })
}

fn opt_u32(field: &'static str, value: Option<i64>, expected: &'static str) -> Result<Option<u32>, CortexError> {
    value.map(|v| to_u32(field, v, expected)).transpose()
}

/// Reads and validates a `Behavior`.
pub fn behavior(obj: &Bound<'_, PyAny>) -> PyResult<Behavior> {
    let o = "Behavior";
    let stop: Vec<String> = if obj.getattr("stop")?.is_instance_of::<PyString>() {
        vec![attr(obj, o, "stop")?]
    } else {
        attr(obj, o, "stop")?
    };
    let b = Behavior {
        show_thinking: attr(obj, o, "show_thinking")?,
        max_tokens: opt_u32("max_tokens", attr(obj, o, "max_tokens")?, "must be at least 1, or None for no limit")
            .map_err(to_py)?,
        stop,
        context_size: opt_u32("context_size", attr(obj, o, "context_size")?, "must be between 16 and 1048576 tokens")
            .map_err(to_py)?,
    };
    b.validate().map_err(to_py)?;
    Ok(b)
}

/// Reads and validates a `Sampling`.
pub fn sampling(obj: &Bound<'_, PyAny>) -> PyResult<Sampling> {
    let o = "Sampling";
    let s = Sampling {
        temperature: attr(obj, o, "temperature")?,
        top_k: to_u32("top_k", attr(obj, o, "top_k")?, "must be 0 (disabled) or more").map_err(to_py)?,
        top_p: attr(obj, o, "top_p")?,
        min_p: attr(obj, o, "min_p")?,
        repeat_penalty: attr(obj, o, "repeat_penalty")?,
        presence_penalty: attr(obj, o, "presence_penalty")?,
        frequency_penalty: attr(obj, o, "frequency_penalty")?,
        seed: opt_u32("seed", attr(obj, o, "seed")?, "must be between 0 and 4294967295, or None").map_err(to_py)?,
        grammar: attr(obj, o, "grammar")?,
    };
    s.validate().map_err(to_py)?;
    Ok(s)
}

/// Reads a complete `InferenceConfig`. There is no "None means the defaults" here: the Python dataclasses are the
/// one schema and own the defaults, so every request arrives with all of its settings.
pub fn config(obj: &Bound<'_, PyAny>) -> PyResult<InferenceConfig> {
    Ok(InferenceConfig {
        behavior: behavior(&obj.getattr("behavior").map_err(|_| not_a_config(obj))?)?,
        sampling: sampling(&obj.getattr("sampling").map_err(|_| not_a_config(obj))?)?,
    })
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
    let field = |key: &str| -> PyResult<String> {
        let value = map.get_item(key).map_err(|_| bad(format!("has no '{key}'")))?;
        value.extract::<String>().map_err(|_| {
            let type_name = value.get_type().name().map(|n| n.to_string()).unwrap_or_default();
            bad(format!("'{key}' must be a str, not {type_name}"))
        })
    };
    let role: Role = field("role")?
        .parse()
        .map_err(|e: CortexError| bad(e.to_string().trim_start_matches("invalid request: ").to_owned()))?;
    Ok(ChatMessage { role, content: field("content")? })
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
