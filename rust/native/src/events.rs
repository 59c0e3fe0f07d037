//! Python views of cortex events: `Event`, `Usage`, `Timings`.
//!
//! Rules: one frozen `Event` class with a `kind` string (interned, so `ev.kind == "content"` is cheap) and the
//! fields of that kind; the text is made a Python string once, when the event crosses over.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use rusty_genius_cortex::{Completion, InferenceEvent, ThoughtEvent, TokenLogprob, ToolCallEvent, Usage};

/// Token counts of one generation.
#[pyclass(frozen, get_all, name = "Usage", module = "rusty_genius._native")]
#[derive(Debug, Clone, Copy)]
pub struct PyUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub cached_prompt_tokens: u32,
    /// Of ``cached_prompt_tokens``, those restored from the KV store (saved when the model was last unloaded).
    pub restored_prompt_tokens: u32,
    /// Messages of the conversation left out so that it fit the context (``context_overflow="drop_oldest_turns"``).
    pub dropped_messages: u32,
    /// Tokens ``context_overflow="shift"`` took out of the context: cut from an overlong prompt, and discarded by
    /// each shift while generating.
    pub shifted_tokens: u32,
    /// Draft tokens speculative decoding fed to the model, and how many it kept (``spec_type="ngram-simple"``).
    pub draft_tokens: u32,
    pub accepted_draft_tokens: u32,
}

#[pymethods]
impl PyUsage {
    #[getter]
    fn total_tokens(&self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }

    fn __repr__(&self) -> String {
        format!(
            "Usage(prompt_tokens={}, completion_tokens={}, cached_prompt_tokens={}, restored_prompt_tokens={}, \
             dropped_messages={}, shifted_tokens={}, draft_tokens={}, accepted_draft_tokens={})",
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_prompt_tokens,
            self.restored_prompt_tokens,
            self.dropped_messages,
            self.shifted_tokens,
            self.draft_tokens,
            self.accepted_draft_tokens
        )
    }
}

/// Timings of one generation, measured on the engine's thread.
#[pyclass(frozen, get_all, name = "Timings", module = "rusty_genius._native")]
#[derive(Debug, Clone, Copy)]
pub struct PyTimings {
    pub prompt_ms: f64,
    pub decode_ms: f64,
    pub prompt_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
}

#[pymethods]
impl PyTimings {
    fn __repr__(&self) -> String {
        format!(
            "Timings(prompt_ms={:.3}, decode_ms={:.3}, prompt_tokens_per_s={:.1}, decode_tokens_per_s={:.1})",
            self.prompt_ms, self.decode_ms, self.prompt_tokens_per_s, self.decode_tokens_per_s
        )
    }
}

/// One event of a generation stream.
#[pyclass(frozen, name = "Event", module = "rusty_genius._native")]
#[derive(Debug)]
pub struct PyEvent {
    kind: Py<PyString>,
    text: Option<Py<PyString>>,
    completion: Option<Completion>,
    /// A tool call's number, id and function name (`tool_call_*` events only; id and name on the start only).
    call: Option<(u32, Option<String>, Option<String>)>,
    /// A `token_logprob` event's numbers (its token's text is `text`).
    logprob: Option<Box<TokenLogprob>>,
    /// A `process_start` event's prompt counts.
    prompt: Option<Usage>,
}

impl PyEvent {
    pub fn new(py: Python<'_>, event: InferenceEvent) -> Self {
        let mut call = None;
        let mut logprob = None;
        let mut prompt = None;
        let (kind, text, completion) = match event {
            InferenceEvent::ProcessStart(usage) => {
                prompt = Some(usage);
                (pyo3::intern!(py, "process_start"), None, None)
            }
            InferenceEvent::Thought(ThoughtEvent::Start) => (pyo3::intern!(py, "thought_start"), None, None),
            InferenceEvent::Thought(ThoughtEvent::Delta(t)) => (pyo3::intern!(py, "thought_delta"), Some(t), None),
            InferenceEvent::Thought(ThoughtEvent::Stop) => (pyo3::intern!(py, "thought_stop"), None, None),
            InferenceEvent::Content(t) => (pyo3::intern!(py, "content"), Some(t), None),
            InferenceEvent::ToolCall(ToolCallEvent::Start { index, id, name }) => {
                call = Some((index, Some(id), Some(name)));
                (pyo3::intern!(py, "tool_call_start"), None, None)
            }
            InferenceEvent::ToolCall(ToolCallEvent::Arguments { index, delta }) => {
                call = Some((index, None, None));
                (pyo3::intern!(py, "tool_call_delta"), Some(delta), None)
            }
            InferenceEvent::ToolCall(ToolCallEvent::Stop { index }) => {
                call = Some((index, None, None));
                (pyo3::intern!(py, "tool_call_stop"), None, None)
            }
            InferenceEvent::TokenLogprob(mut lp) => {
                let token = std::mem::take(&mut lp.token);
                logprob = Some(Box::new(lp));
                (pyo3::intern!(py, "token_logprob"), Some(token), None)
            }
            InferenceEvent::Complete(c) => (pyo3::intern!(py, "complete"), None, Some(c)),
        };
        let text = text.map(|t| PyString::new(py, &t).unbind());
        Self { kind: kind.clone().unbind(), text, completion, call, logprob, prompt }
    }

    pub fn is_complete(&self) -> bool {
        self.completion.is_some()
    }
}

#[pymethods]
impl PyEvent {
    /// `process_start`, `thought_start`, `thought_delta`, `thought_stop`, `content`, `tool_call_start`,
    /// `tool_call_delta`, `tool_call_stop`, `token_logprob` or `complete`.
    #[getter]
    fn kind(&self, py: Python<'_>) -> Py<PyString> {
        self.kind.clone_ref(py)
    }

    /// The text of a `thought_delta` or `content` event, a piece of a call's arguments (JSON text) on a
    /// `tool_call_delta`, or the token (lossy UTF-8) on a `token_logprob`; None for the other kinds.
    #[getter]
    fn text(&self, py: Python<'_>) -> Option<Py<PyString>> {
        self.text.as_ref().map(|t| t.clone_ref(py))
    }

    /// The number of the tool call (from 0, in the order calls start) on `tool_call_*` events; None otherwise.
    #[getter]
    fn index(&self) -> Option<u32> {
        self.call.as_ref().map(|c| c.0)
    }

    /// The call's id (`call_…`, unique per request) on a `tool_call_start` event; None otherwise.
    #[getter]
    fn id(&self) -> Option<&str> {
        self.call.as_ref().and_then(|c| c.1.as_deref())
    }

    /// The called function's name on a `tool_call_start` event; None otherwise.
    #[getter]
    fn name(&self) -> Option<&str> {
        self.call.as_ref().and_then(|c| c.2.as_deref())
    }

    /// The token's log-probability on a `token_logprob` event; None otherwise.
    #[getter]
    fn logprob(&self) -> Option<f32> {
        self.logprob.as_ref().map(|lp| lp.logprob)
    }

    /// The token's exact bytes on a `token_logprob` event; None otherwise.
    #[getter]
    fn token_bytes<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.logprob.as_ref().map(|lp| PyBytes::new(py, &lp.bytes))
    }

    /// The likeliest tokens at a `token_logprob` event's position, likeliest first, as (token, logprob, bytes);
    /// None for other kinds.
    #[getter]
    fn top_logprobs<'py>(&self, py: Python<'py>) -> Option<Vec<(String, f32, Bound<'py, PyBytes>)>> {
        self.logprob.as_ref().map(|lp| {
            lp.top.iter().map(|(token, bytes, logprob)| (token.clone(), *logprob, PyBytes::new(py, bytes))).collect()
        })
    }

    /// `stop`, `length`, `cancelled` or `tool_calls` on a `complete` event; None otherwise.
    #[getter]
    fn finish_reason(&self) -> Option<&'static str> {
        self.completion.as_ref().map(|c| c.finish_reason.as_str())
    }

    /// The stop string that ended the answer, on a `complete` event whose finish reason is `stop` because of one;
    /// None otherwise (the model ended it, or another reason).
    #[getter]
    fn stop_sequence(&self) -> Option<&str> {
        self.completion.as_ref().and_then(|c| c.stop_sequence.as_deref())
    }

    /// Token counts on a `complete` event; on `process_start`, the prompt's as admitted (completion 0); None otherwise.
    #[getter]
    fn usage(&self) -> Option<PyUsage> {
        self.completion.as_ref().map(|c| c.usage).or(self.prompt).map(|u| PyUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_prompt_tokens: u.cached_prompt_tokens,
            restored_prompt_tokens: u.restored_prompt_tokens,
            dropped_messages: u.dropped_messages,
            shifted_tokens: u.shifted_tokens,
            draft_tokens: u.draft_tokens,
            accepted_draft_tokens: u.accepted_draft_tokens,
        })
    }

    /// Timings on a `complete` event; None otherwise.
    #[getter]
    fn timings(&self) -> Option<PyTimings> {
        self.completion.as_ref().map(|c| PyTimings {
            prompt_ms: c.timings.prompt_ms,
            decode_ms: c.timings.decode_ms,
            prompt_tokens_per_s: c.timings.prompt_tokens_per_s,
            decode_tokens_per_s: c.timings.decode_tokens_per_s,
        })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let kind = self.kind.bind(py).repr()?;
        if let Some((index, id, name)) = &self.call {
            let mut out = format!("Event(kind={kind}, index={index}");
            if let (Some(id), Some(name)) = (id, name) {
                out += &format!(", id={id:?}, name={name:?}");
            }
            if let Some(text) = &self.text {
                out += &format!(", text={}", text.bind(py).repr()?);
            }
            return Ok(out + ")");
        }
        if let (Some(lp), Some(text)) = (&self.logprob, &self.text) {
            return Ok(format!("Event(kind={kind}, text={}, logprob={})", text.bind(py).repr()?, lp.logprob));
        }
        Ok(match (&self.text, &self.completion) {
            (Some(text), _) => format!("Event(kind={kind}, text={})", text.bind(py).repr()?),
            (None, Some(c)) => format!("Event(kind={kind}, finish_reason='{}')", c.finish_reason.as_str()),
            (None, None) => format!("Event(kind={kind})"),
        })
    }
}
