//! The one error enum of the cortex crate. `rust/native` maps each variant to one Python exception class.

/// Everything that can go wrong inside cortex.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CortexError {
    /// A configuration value is out of range. Names the field, the value and what is accepted.
    #[error("invalid {field} = {value}: {expected}")]
    InvalidConfig { field: &'static str, value: String, expected: &'static str },
    /// A tool, tool choice, JSON schema or token bias cannot be used. `field` is the request field, `path` the exact
    /// place inside it as a request writes it (`tools[1].function.parameters`), `detail` the cause.
    #[error("invalid {path}: {detail}")]
    InvalidOutput { field: &'static str, path: String, detail: String },
    /// The model's chat template failed to render this conversation (or broke a sandbox limit).
    #[error("the model's chat template failed: {0}")]
    Template(String),
    /// The request itself is malformed (messages, roles, empty input).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A model file is missing, unreadable, not GGUF, truncated or corrupted (checked before llama.cpp sees it), or
    /// llama.cpp refused to load it.
    #[error("cannot load model {}: {reason}", path.display())]
    ModelLoad { path: std::path::PathBuf, reason: String },
    /// The prompt does not fit the context window. `note` says more when there is more to say (`""` otherwise).
    #[error(
        "the prompt is {prompt_tokens} tokens but the context holds {context_size}; shorten the conversation or \
         raise context_size{note}"
    )]
    ContextOverflow { prompt_tokens: usize, context_size: usize, note: &'static str },
    /// The engine failed while generating; the stream ends with this error.
    #[error("engine failure: {0}")]
    Engine(String),
    /// The engine's worker is gone (closed by its owner, or stopped after a panic).
    #[error("the engine is closed; create a new one to keep generating")]
    EngineClosed,
}

impl CortexError {
    pub(crate) fn model_load(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        Self::ModelLoad { path: path.to_path_buf(), reason: reason.to_string() }
    }

    pub(crate) fn invalid_output(field: &'static str, path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidOutput { field, path: path.into(), detail: detail.into() }
    }

    pub(crate) fn invalid(field: &'static str, value: impl std::fmt::Display, expected: &'static str) -> Self {
        Self::InvalidConfig { field, value: value.to_string(), expected }
    }
}
