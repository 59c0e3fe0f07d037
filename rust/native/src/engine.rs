//! `Engine`: a loaded engine on its worker thread, as Python sees it.
//!
//! Rules: constructors build the engine on its worker thread with the GIL released; `chat` takes the request's
//! complete config (no defaults are filled in here), validates and queues the request and returns its
//! `TokenStream` at once (no await: streaming starts when it is iterated); `close` joins the worker with the GIL
//! released and is idempotent.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::prelude::*;
use rusty_genius_cortex::footprint::{CacheType, FlashAttention, KvCache};
use rusty_genius_cortex::{ChatRequest, CortexError, Engine, EngineInfo, Pinky, PinkyOptions, RawPrompt, Worker};

use crate::calls;
use crate::convert;
use crate::errors::{config_error, to_py};
use crate::stream::TokenStream;

/// A loaded engine.
#[pyclass(frozen, name = "Engine", module = "rusty_genius._native")]
#[derive(Debug)]
pub struct PyEngine {
    name: String,
    worker: Mutex<Option<Worker>>,
    info: EngineInfo,
}

impl PyEngine {
    /// Wraps a started worker, reading its engine's info once (it does not change).
    fn started(py: Python<'_>, name: &str, worker: Worker) -> PyResult<Self> {
        let info = py.detach(|| worker.call_blocking(|engine| Ok(engine.info()))).map_err(to_py)?;
        Ok(Self { name: name.into(), worker: Mutex::new(Some(worker)), info })
    }

    fn with_worker<R>(&self, f: impl FnOnce(&Worker) -> PyResult<R>) -> PyResult<R> {
        let guard = self.worker();
        f(guard.as_ref().ok_or_else(|| to_py(CortexError::EngineClosed))?)
    }

    fn worker(&self) -> MutexGuard<'_, Option<Worker>> {
        self.worker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stat(&self, read: impl Fn(&Worker) -> u64) -> u64 {
        self.worker().as_ref().map_or(0, read)
    }
}

/// The cache options from their Python names (`"q8_0"`, `"auto"`), checked together (`ConfigError` naming the option).
pub fn kv_cache(cache_type_k: &str, cache_type_v: &str, flash_attention: &str) -> PyResult<KvCache> {
    let cache = KvCache {
        type_k: CacheType::parse("cache_type_k", cache_type_k).map_err(to_py)?,
        type_v: CacheType::parse("cache_type_v", cache_type_v).map_err(to_py)?,
        flash_attention: FlashAttention::parse("flash_attention", flash_attention).map_err(to_py)?,
    };
    cache.check().map_err(to_py)?;
    Ok(cache)
}

/// Returns freed heap memory to the system. glibc keeps large freed blocks (a model's KV cache and compute
/// buffers) in its arenas, so without this an unloaded model still counts in the process's RSS.
fn give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases glibc's own free lists; it takes no pointers from us.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[pymethods]
impl PyEngine {
    /// Starts Pinky, the stub engine.
    #[staticmethod]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, one per Pinky option.
    #[pyo3(signature = (*, delay=0.005, reply_tokens=24, think=true, script=None, fail_after=None, pre_open_think=false, load_delay=0.0, parallel=1))]
    fn pinky(
        py: Python<'_>,
        delay: f64,
        reply_tokens: usize,
        think: bool,
        script: Option<&Bound<'_, PyAny>>,
        fail_after: Option<usize>,
        pre_open_think: bool,
        load_delay: f64,
        parallel: usize,
    ) -> PyResult<Self> {
        let seconds = |name: &str, value: f64| {
            Duration::try_from_secs_f64(value).map_err(|_| {
                config_error(format!("invalid {name} = {value}: must be a number of seconds >= 0"), Some(name))
            })
        };
        let delay = seconds("delay", delay)?;
        let load_delay = seconds("load_delay", load_delay)?;
        let options = PinkyOptions {
            delay,
            reply_tokens,
            think,
            script: script.map(convert::script).transpose()?,
            fail_after,
            pre_open_think,
            parallel,
        };
        options.validate().map_err(to_py)?;
        let worker = py
            .detach(|| {
                Worker::spawn("pinky", move || {
                    // Stands in for a model load, to test what callers see while one is under way.
                    std::thread::sleep(load_delay);
                    Ok(Box::new(Pinky::new(options)?) as Box<dyn Engine>)
                })
            })
            .map_err(to_py)?;
        Self::started(py, "pinky", worker)
    }

    /// Loads a GGUF model into Brain, the llama.cpp engine (checks the file first; raises `ModelLoadError`, and
    /// `ConfigError` naming the option for a bad one).
    #[staticmethod]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, one per load option.
    #[pyo3(signature = (
        model_path, *, gpu_layers=None, threads=None, context_size=None, batch_size=512, parallel=None,
        ubatch_size=None, cache_type_k="f16", cache_type_v="f16", flash_attention="auto", mmap=true, mlock=false,
        kv_store=None, kv_store_size=0,
        spec_type="none", draft_max=16, draft_model=None,
    ))]
    fn brain(
        py: Python<'_>,
        model_path: std::path::PathBuf,
        gpu_layers: Option<u32>,
        threads: Option<u32>,
        context_size: Option<u32>,
        batch_size: u32,
        parallel: Option<u32>,
        ubatch_size: Option<u32>,
        cache_type_k: &str,
        cache_type_v: &str,
        flash_attention: &str,
        mmap: bool,
        mlock: bool,
        kv_store: Option<std::path::PathBuf>,
        kv_store_size: u64,
        spec_type: &str,
        draft_max: u32,
        draft_model: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        let cache = kv_cache(cache_type_k, cache_type_v, flash_attention)?;
        let spec_type = rusty_genius_cortex::draft::SpecType::parse("spec_type", spec_type).map_err(to_py)?;
        #[cfg(feature = "real-engine")]
        {
            use rusty_genius_cortex::brain::{BrainOptions, load_engine};
            let options = BrainOptions {
                gpu_layers,
                threads,
                context_size,
                batch_size,
                ubatch_size,
                parallel,
                cache_type_k: cache.type_k,
                cache_type_v: cache.type_v,
                flash_attention: cache.flash_attention,
                mmap,
                mlock,
                kv_store,
                kv_store_size,
                spec_type,
                draft_max,
                draft_model,
                ..BrainOptions::new(model_path)
            };
            options.validate().map_err(to_py)?;
            let worker = py.detach(|| Worker::spawn("brain", move || load_engine(&options))).map_err(to_py)?;
            Self::started(py, "brain", worker)
        }
        #[cfg(not(feature = "real-engine"))]
        {
            let _ = (py, model_path, gpu_layers, threads, context_size, batch_size, parallel, ubatch_size);
            let _ = (cache, mmap, mlock, kv_store, kv_store_size, spec_type, draft_max, draft_model);
            Err(to_py(CortexError::Engine(
                "this build of rusty-genius has no real engine (built without the `real-engine` feature)".into(),
            )))
        }
    }

    /// Queues a chat request with its complete config and returns its event stream.
    #[pyo3(signature = (messages, config, *, on_done=None))]
    fn chat(
        &self,
        messages: &Bound<'_, PyAny>,
        config: &Bound<'_, PyAny>,
        on_done: Option<Py<PyAny>>,
    ) -> PyResult<TokenStream> {
        let request =
            ChatRequest { messages: convert::messages(messages)?, config: convert::config(config)?, prompt: None };
        self.with_worker(|worker| Ok(TokenStream::new(worker.submit(request).map_err(to_py)?, on_done)))
    }

    /// Queues a raw completion: the model continues `prompt` as it is (no chat template; plain text out, no think
    /// or tool-call parsing). `suffix`: fill in the middle between `prompt` and it (models with FIM tokens).
    #[pyo3(signature = (prompt, config, *, suffix=None, on_done=None))]
    fn generate(
        &self,
        prompt: String,
        config: &Bound<'_, PyAny>,
        suffix: Option<String>,
        on_done: Option<Py<PyAny>>,
    ) -> PyResult<TokenStream> {
        let request = ChatRequest {
            messages: Vec::new(),
            config: convert::config(config)?,
            prompt: Some(RawPrompt { text: prompt, suffix }),
        };
        self.with_worker(|worker| Ok(TokenStream::new(worker.submit(request).map_err(to_py)?, on_done)))
    }

    /// Awaitable: the token ids of `text`.
    #[pyo3(signature = (text, *, add_special=true, parse_special=true))]
    fn tokenize<'py>(
        &self,
        py: Python<'py>,
        text: String,
        add_special: bool,
        parse_special: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.with_worker(|worker| calls::tokenize(py, worker, text, add_special, parse_special))
    }

    /// Awaitable: the bytes of each token.
    fn token_pieces<'py>(&self, py: Python<'py>, ids: Vec<i32>) -> PyResult<Bound<'py, PyAny>> {
        self.with_worker(|worker| calls::pieces(py, worker, ids))
    }

    /// Awaitable: the text of the tokens.
    fn detokenize<'py>(&self, py: Python<'py>, ids: Vec<i32>) -> PyResult<Bound<'py, PyAny>> {
        self.with_worker(|worker| calls::detokenize(py, worker, ids))
    }

    /// Awaitable: the prompt the chat template makes of `messages` and `config` (tools, reasoning settings).
    fn apply_template<'py>(
        &self,
        py: Python<'py>,
        messages: &Bound<'py, PyAny>,
        config: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (messages, config) = (convert::messages(messages)?, convert::config(config)?);
        self.with_worker(|worker| calls::of_chat(py, worker, messages, config, |e, m, c| e.render(m, c)))
    }

    /// Awaitable: the tokens the prompt of a chat request of `messages` and `config` takes, without generating.
    fn count_tokens<'py>(
        &self,
        py: Python<'py>,
        messages: &Bound<'py, PyAny>,
        config: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (messages, config) = (convert::messages(messages)?, convert::config(config)?);
        self.with_worker(|worker| calls::of_chat(py, worker, messages, config, |e, m, c| e.prompt_tokens(m, c)))
    }

    /// Awaitable: `(vectors, prompt_tokens)` for `inputs` (texts or token-id lists).
    #[pyo3(signature = (inputs, *, normalize=true))]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<calls::EmbedInput>,
        normalize: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.with_worker(|worker| calls::embed(py, worker, &self.info, inputs, normalize))
    }

    /// Tokens each sequence's window holds.
    #[getter]
    fn context_size(&self) -> u32 {
        self.info.context_size
    }

    /// Token ids run from 0 to this, exclusive.
    #[getter]
    fn vocab_size(&self) -> u32 {
        self.info.vocab_size
    }

    /// Width of the model's embeddings.
    #[getter]
    fn embedding_size(&self) -> u32 {
        self.info.embedding_size
    }

    /// How embeddings are pooled: `mean`, `cls`, `last` or `rank`.
    #[getter]
    fn pooling(&self) -> &'static str {
        self.info.pooling
    }

    /// An embedding model: it answers embedding requests only.
    #[getter]
    fn embedding_only(&self) -> bool {
        self.info.embedding_only
    }

    /// It has fill-in-the-middle tokens (`generate(..., suffix=...)`).
    #[getter]
    fn fill_in_middle(&self) -> bool {
        self.info.fill_in_middle
    }

    /// Stops the running generation, fails queued ones, and ends the worker thread.
    fn close(&self, py: Python<'_>) {
        let worker = self.worker().take();
        if let Some(mut worker) = worker {
            py.detach(move || {
                worker.close();
                drop(worker);
                give_memory_back();
            });
        }
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn closed(&self) -> bool {
        self.worker().as_ref().is_none_or(Worker::is_closed)
    }

    /// True while a generation is running on the worker.
    #[getter]
    fn busy(&self) -> bool {
        self.worker().as_ref().is_some_and(|w| w.stats().busy())
    }

    /// Generations running now (at most `parallel`).
    #[getter]
    fn running(&self) -> usize {
        self.worker().as_ref().map_or(0, |w| w.stats().running())
    }

    /// Generations the engine runs at once (continuous batching); 0 once closed.
    #[getter]
    fn parallel(&self) -> usize {
        self.worker().as_ref().map_or(0, |w| w.stats().parallel())
    }

    /// Tokens generated over the engine's life.
    #[getter]
    fn generated_tokens(&self) -> u64 {
        self.stat(|w| w.stats().generated_tokens())
    }

    /// Requests finished (completed, cancelled or failed) over the engine's life.
    #[getter]
    fn completed_requests(&self) -> u64 {
        self.stat(|w| w.stats().completed_requests())
    }

    fn __repr__(&self) -> String {
        format!("Engine(name={:?}, parallel={}, closed={})", self.name, self.parallel(), self.closed())
    }
}
