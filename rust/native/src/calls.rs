//! The engine's quick calls as asyncio awaitables: tokenize, token pieces, detokenize, render a template, embed.
//!
//! Rules: each is a [`Worker::call`] run on the worker thread between steps; the awaitable resolves when the worker
//! answers (a worker that stops first: `EngineClosedError`). Embedding requests are checked here, before any work,
//! so that an error names the input at fault (`input[2]`); then their inputs go to the worker in groups of
//! [`EMBED_GROUP`], one call each, so running chat sequences advance between groups instead of waiting for the
//! whole request.

use pyo3::prelude::*;
use rusty_genius_cortex::{ChatMessage, CortexError, Engine, EngineInfo, InferenceConfig, Worker};

use crate::errors::to_py;
use crate::runtime::SmolRuntime;

/// Inputs embedded per worker call.
const EMBED_GROUP: usize = 16;

/// One input of an embedding request, as Python gave it.
#[derive(Debug, FromPyObject)]
pub enum EmbedInput {
    Text(String),
    Tokens(Vec<i32>),
}

/// What the worker answers, or EngineClosed when it stopped without answering.
async fn answer<R>(reply: rusty_genius_cortex::worker::CallReply<R>) -> Result<R, CortexError> {
    reply.recv().await.unwrap_or(Err(CortexError::EngineClosed))
}

fn awaitable<'py, R>(
    py: Python<'py>,
    fut: impl Future<Output = Result<R, CortexError>> + Send + 'static,
) -> PyResult<Bound<'py, PyAny>>
where
    R: for<'a> IntoPyObject<'a> + Send + 'static,
{
    pyo3_async_runtimes::generic::future_into_py::<SmolRuntime, _, _>(py, async move { fut.await.map_err(to_py) })
}

pub fn tokenize<'py>(
    py: Python<'py>,
    worker: &Worker,
    text: String,
    add_special: bool,
    parse_special: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let reply = worker.call(move |engine| engine.tokenize(&text, add_special, parse_special)).map_err(to_py)?;
    awaitable(py, answer(reply))
}

/// The bytes of each token (a `Vec<u8>` becomes Python `bytes`).
pub fn pieces<'py>(py: Python<'py>, worker: &Worker, ids: Vec<i32>) -> PyResult<Bound<'py, PyAny>> {
    let reply = worker.call(move |engine| engine.pieces(&ids)).map_err(to_py)?;
    awaitable(py, answer(reply))
}

/// The text of the tokens, joined (special tokens as their text; invalid UTF-8 replaced).
pub fn detokenize<'py>(py: Python<'py>, worker: &Worker, ids: Vec<i32>) -> PyResult<Bound<'py, PyAny>> {
    let reply = worker.call(move |engine| engine.pieces(&ids)).map_err(to_py)?;
    awaitable(py, async move { Ok(String::from_utf8_lossy(&answer(reply).await?.concat()).into_owned()) })
}

/// What the engine makes of a chat request's `messages` and `config` without generating: `ask` is
/// [`Engine::render`] (the prompt) or [`Engine::prompt_tokens`] (its size).
pub fn of_chat<'py, R>(
    py: Python<'py>,
    worker: &Worker,
    messages: Vec<ChatMessage>,
    config: InferenceConfig,
    ask: fn(&dyn Engine, &[ChatMessage], &InferenceConfig) -> Result<R, CortexError>,
) -> PyResult<Bound<'py, PyAny>>
where
    R: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let reply = worker.call(move |engine| ask(engine, &messages, &config)).map_err(to_py)?;
    awaitable(py, answer(reply))
}

/// The vectors of `inputs` and the tokens they took: `(vectors, prompt_tokens)`.
pub fn embed<'py>(
    py: Python<'py>,
    worker: &Worker,
    info: &EngineInfo,
    mut inputs: Vec<EmbedInput>,
    normalize: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if info.embedding_size == 0 {
        return Err(to_py(CortexError::InvalidRequest("this model makes no embeddings".into())));
    }
    // Texts are tokenized in one call first: their lengths are checked with the token arrays, by index.
    // Moved out (an empty text stays in its place, to be replaced by its tokens below).
    let texts: Vec<String> = inputs
        .iter_mut()
        .filter_map(|i| match i {
            EmbedInput::Text(t) => Some(std::mem::take(t)),
            EmbedInput::Tokens(_) => None,
        })
        .collect();
    let tokenized = worker
        .call(move |engine| texts.iter().map(|t| engine.tokenize(t, true, true)).collect::<Result<Vec<_>, _>>())
        .map_err(to_py)?;
    let info = info.clone();
    let caller = worker.caller();
    awaitable(py, async move {
        let mut texts = answer(tokenized).await?.into_iter();
        let mut ids = Vec::with_capacity(inputs.len());
        for (index, input) in inputs.into_iter().enumerate() {
            let tokens = match input {
                EmbedInput::Text(_) => texts.next().unwrap_or_default(),
                EmbedInput::Tokens(tokens) => tokens,
            };
            check_input(index, &tokens, &info)?;
            ids.push(tokens);
        }
        let prompt_tokens: usize = ids.iter().map(Vec::len).sum();
        // Queued at once: the worker runs one group per step, and the replies are read in order.
        let replies = ids
            .chunks(EMBED_GROUP)
            .map(|group| {
                let group = group.to_vec();
                caller.call(move |engine| engine.embed(&group, normalize))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut vectors = Vec::with_capacity(ids.len());
        for reply in replies {
            vectors.extend(answer(reply).await?);
        }
        Ok((vectors, prompt_tokens))
    })
}

/// An input must be non-empty, fit one window, and hold ids of the vocabulary.
fn check_input(index: usize, tokens: &[i32], info: &EngineInfo) -> Result<(), CortexError> {
    if tokens.is_empty() {
        return Err(CortexError::InvalidRequest(format!("input[{index}] is empty: send some text or tokens")));
    }
    if tokens.len() > info.context_size as usize {
        return Err(CortexError::InvalidRequest(format!(
            "input[{index}] is {} tokens, over the model's window of {}: split it into shorter inputs",
            tokens.len(),
            info.context_size
        )));
    }
    if let Some(bad) = tokens.iter().find(|&&id| id < 0 || id as u32 >= info.vocab_size) {
        return Err(CortexError::InvalidRequest(format!(
            "input[{index}]: token id {bad} is not in this model's vocabulary (0..{})",
            info.vocab_size
        )));
    }
    Ok(())
}
