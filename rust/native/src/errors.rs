//! The Python exception tree and the one place cortex errors become Python exceptions.
//!
//! Tree: `GeniusError` ─┬─ `ConfigError`      a config value is out of range or of the wrong type
//!                      ├─ `RequestError` ─── `ContextOverflowError`   the messages are malformed / too long
//!                      ├─ `ModelLoadError`   a model file is missing, not GGUF, truncated or corrupted
//!                      └─ `EngineError` ──── `EngineClosedError`
//! The classes report `rusty_genius` as their module: that is where users import them from.

use pyo3::PyErr;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use rusty_genius_cortex::CortexError;

create_exception!(rusty_genius, GeniusError, PyException, "Base class of every rusty-genius error.");
create_exception!(rusty_genius, ConfigError, GeniusError, "An inference or engine setting is invalid.");
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

/// Maps a cortex error to its Python exception.
pub fn to_py(err: CortexError) -> PyErr {
    let msg = err.to_string();
    match err {
        CortexError::InvalidConfig { .. } => ConfigError::new_err(msg),
        CortexError::InvalidRequest(_) => RequestError::new_err(msg),
        CortexError::ContextOverflow { .. } => ContextOverflowError::new_err(msg),
        CortexError::ModelLoad { .. } => ModelLoadError::new_err(msg),
        CortexError::Engine(_) => EngineError::new_err(msg),
        CortexError::EngineClosed => EngineClosedError::new_err(msg),
    }
}
