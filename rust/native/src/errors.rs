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
    "The prompt does not fit the context window (the message names both sizes)."
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

/// Maps a cortex error to its Python exception.
pub fn to_py(err: CortexError) -> PyErr {
    let msg = err.to_string();
    match err {
        CortexError::InvalidConfig { field, .. } => config_error(msg, Some(field)),
        CortexError::InvalidOutput { field, path, .. } => config_error_at(msg, field, path),
        CortexError::InvalidRequest(_) | CortexError::Template(_) => RequestError::new_err(msg),
        CortexError::ContextOverflow { .. } => ContextOverflowError::new_err(msg),
        CortexError::ModelLoad { .. } => ModelLoadError::new_err(msg),
        CortexError::Engine(_) => EngineError::new_err(msg),
        CortexError::EngineClosed => EngineClosedError::new_err(msg),
    }
}
