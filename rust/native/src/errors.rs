//! The Python exception tree and the one place cortex errors become Python exceptions.
//!
//! Tree: `GeniusError` ─┬─ `ConfigError`      a setting is out of range or of the wrong type (`field`: which one)
//!                      ├─ `RequestError` ─── `ContextOverflowError`   the messages are malformed / too long
//!                      ├─ `ModelLoadError`   a model file is missing, not GGUF, truncated or corrupted
//!                      └─ `EngineError` ──── `EngineClosedError`
//! The classes report `rusty_genius` as their module: that is where users import them from.
//!
//! `ConfigError` is the one class defined in Python (`rusty_genius.core.errors`), because it carries data: the
//! offending setting as its `field` attribute, so nothing has to recover it from the message. Rust raises it with
//! [`config_error`], which imports the class when it is first raised (not when this module is imported: the Python
//! module imports `GeniusError` from here, so an import-time reference back would be a cycle).
//!
//! `ContextOverflowError` carries both sizes as instance attributes (`prompt_tokens`, `context_size`; the class
//! holds `None` for both, set in the module init, for one raised without them), so a server reports them as numbers
//! rather than parsing the message.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::IntoPyDict;
use pyo3::{create_exception, import_exception};
use rusty_genius_cortex::CortexError;

create_exception!(rusty_genius, GeniusError, PyException, "Base class of every rusty-genius error.");
create_exception!(rusty_genius, RequestError, GeniusError, "A chat request is malformed (messages, roles).");
create_exception!(
    rusty_genius,
    ContextOverflowError,
    RequestError,
    "The prompt does not fit the context window: `prompt_tokens` and `context_size` give both sizes."
);
create_exception!(
    rusty_genius,
    ModelLoadError,
    GeniusError,
    "A model file is missing, not GGUF, truncated or corrupted, or llama.cpp refused it."
);
create_exception!(rusty_genius, EngineError, GeniusError, "The engine failed while generating.");
create_exception!(rusty_genius, EngineClosedError, EngineError, "The engine was closed; create a new one.");

import_exception!(rusty_genius.core.errors, ConfigError);

/// A `ConfigError` with its message and the setting at fault (`None` when the error is about no single setting).
pub fn config_error(message: impl Into<String>, field: Option<&str>) -> PyErr {
    ConfigError::new_err((message.into(), field.map(str::to_owned)))
}

/// A `ConfigError` that also names the exact place inside the field (its `path` attribute, keyword-only in Python).
fn config_error_at(message: String, field: &str, path: String) -> PyErr {
    Python::attach(|py| {
        let made =
            py.get_type::<ConfigError>().call((message.clone(), field), Some(&[("path", path)].into_py_dict(py)?));
        Ok::<_, PyErr>(match made {
            Ok(instance) => PyErr::from_value(instance),
            Err(e) => e,
        })
    })
    .unwrap_or_else(|e| e)
}

/// A `ContextOverflowError` with both sizes set on the instance.
fn context_overflow(message: String, prompt_tokens: usize, context_size: usize) -> PyErr {
    Python::attach(|py| {
        let err = ContextOverflowError::new_err(message);
        let value = err.value(py);
        value.setattr("prompt_tokens", prompt_tokens)?;
        value.setattr("context_size", context_size)?;
        Ok::<_, PyErr>(err)
    })
    .unwrap_or_else(|e| e)
}

/// Sets the class-level `None`s of `ContextOverflowError`'s size attributes (see the module header).
pub fn init_context_overflow(py: Python<'_>) -> PyResult<()> {
    let class = py.get_type::<ContextOverflowError>();
    class.setattr("prompt_tokens", py.None())?;
    class.setattr("context_size", py.None())
}

/// Maps a cortex error to its Python exception.
pub fn to_py(err: CortexError) -> PyErr {
    let msg = err.to_string();
    match err {
        CortexError::InvalidConfig { field, .. } => config_error(msg, Some(field)),
        CortexError::InvalidOutput { field, path, .. } => config_error_at(msg, field, path),
        CortexError::InvalidRequest(_) | CortexError::Template(_) => RequestError::new_err(msg),
        CortexError::ContextOverflow { prompt_tokens, context_size, .. } => {
            context_overflow(msg, prompt_tokens, context_size)
        }
        CortexError::ModelLoad { .. } => ModelLoadError::new_err(msg),
        CortexError::Engine(_) => EngineError::new_err(msg),
        CortexError::EngineClosed => EngineClosedError::new_err(msg),
    }
}
