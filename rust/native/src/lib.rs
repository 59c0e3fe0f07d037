//! `rusty_genius._native`: the only PyO3 code in the project. `python/rusty_genius/_native.pyi` is its contract.
//!
//! Rules: this crate converts and bridges, nothing more — engines, text shaping and threads live in cortex. Every
//! blocking call releases the GIL; every cortex error becomes a `GeniusError` subclass in `errors`.

mod build_info;
mod calls;
mod convert;
mod engine;
mod errors;
mod events;
mod logs;
mod read;
mod runtime;
mod stream;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use rusty_genius_cortex::footprint;
use rusty_genius_cortex::gguf::MetaValue;

/// Checks a `Behavior` (raises `rusty_genius.ConfigError` whose `field` names the bad field).
#[pyfunction]
fn validate_behavior(behavior: &Bound<'_, PyAny>) -> PyResult<()> {
    convert::behavior(behavior).map(drop)
}

/// Checks a `Sampling` (raises `rusty_genius.ConfigError` whose `field` names the bad field).
#[pyfunction]
fn validate_sampling(sampling: &Bound<'_, PyAny>) -> PyResult<()> {
    convert::sampling(sampling).map(drop)
}

/// Checks an `Output`: tool names, the tool choice, and every JSON schema compiled by the constraint engine (raises
/// `rusty_genius.ConfigError` whose `field` names the bad field and whose message names the exact path).
#[pyfunction]
fn validate_output(output: &Bound<'_, PyAny>) -> PyResult<()> {
    convert::output(output).map(drop)
}

/// Checks a `Reasoning` (raises `rusty_genius.ConfigError` whose `field` names the bad field).
#[pyfunction]
fn validate_reasoning(reasoning: &Bound<'_, PyAny>) -> PyResult<()> {
    convert::reasoning(reasoning).map(drop)
}

/// Checks that a file is a whole, well-formed GGUF (without loading it) and returns its header facts, its scalar
/// metadata, its vocabulary size and its tensors' bytes. Raises `ModelLoadError` saying what is wrong.
#[pyfunction]
fn check_gguf(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Bound<'_, PyDict>> {
    let info = py.detach(|| rusty_genius_cortex::gguf::check(&path)).map_err(errors::to_py)?;
    let metadata = PyDict::new(py);
    for (key, value) in &info.metadata {
        match value {
            MetaValue::Int(v) => metadata.set_item(key, v)?,
            MetaValue::UInt(v) => metadata.set_item(key, v)?,
            MetaValue::Float(v) => metadata.set_item(key, v)?,
            MetaValue::Bool(v) => metadata.set_item(key, v)?,
            MetaValue::Str(v) => metadata.set_item(key, v)?,
        }
    }
    let out = PyDict::new(py);
    out.set_item("embedding_only", rusty_genius_cortex::footprint::gguf_embedding_only(&info))?;
    out.set_item("version", info.version)?;
    out.set_item("tensor_count", info.tensor_count)?;
    out.set_item("metadata_count", info.metadata_count)?;
    out.set_item("architecture", info.architecture)?;
    out.set_item("context_length", info.context_length)?;
    out.set_item("file_size", info.file_size)?;
    out.set_item("metadata", metadata)?;
    out.set_item("vocab_size", info.vocab_size)?;
    out.set_item("tensor_bytes", info.tensor_bytes)?;
    Ok(out)
}

/// Estimates the bytes a model takes once loaded as `Brain` would load it with these options, from its GGUF header
/// alone: `weights`, `kv_cache`, `compute`, `total`, and the `context_size` and `parallel` the engine would choose.
/// Raises `ConfigError` for an option out of range, `ModelLoadError` for a bad file.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // Python keyword arguments, one per load option.
#[pyo3(signature = (
    path, context_size=None, parallel=None, batch_size=512, *, ubatch_size=None, cache_type_k="f16",
    cache_type_v="f16", flash_attention="auto",
))]
fn estimate_memory<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    context_size: Option<u32>,
    parallel: Option<u32>,
    batch_size: u32,
    ubatch_size: Option<u32>,
    cache_type_k: &str,
    cache_type_v: &str,
    flash_attention: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let cache = engine::kv_cache(cache_type_k, cache_type_v, flash_attention)?;
    let sizing = footprint::Sizing { context_size, parallel, batch_size, ubatch_size, cache };
    let estimate = py
        .detach(|| {
            sizing.check()?;
            let info = rusty_genius_cortex::gguf::check(&path)?;
            Ok(footprint::footprint_of(&info, &sizing))
        })
        .map_err(errors::to_py)?;
    let out = PyDict::new(py);
    out.set_item("weights", estimate.weights)?;
    out.set_item("kv_cache", estimate.kv_cache)?;
    out.set_item("compute", estimate.compute)?;
    out.set_item("total", estimate.total)?;
    out.set_item("context_size", estimate.context_size)?;
    out.set_item("parallel", estimate.parallel)?;
    Ok(out)
}

/// Waits (GIL released, at most a second) for asyncio results still being handed over by runtime threads. Registered
/// with `atexit` by `rusty_genius`: such a thread killed by finalization would abort the process.
#[pyfunction]
fn _drain_callbacks(py: Python<'_>) {
    runtime::drain(py, std::time::Duration::from_secs(1));
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    logs::install();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("HAS_REAL_ENGINE", cfg!(feature = "real-engine"))?;
    m.add_class::<engine::PyEngine>()?;
    m.add_class::<stream::TokenStream>()?;
    m.add_class::<stream::Ready>()?;
    m.add_class::<stream::Next>()?;
    m.add_class::<stream::Batch>()?;
    m.add_class::<events::PyEvent>()?;
    m.add_class::<events::PyUsage>()?;
    m.add_class::<events::PyTimings>()?;
    m.add("GeniusError", py.get_type::<errors::GeniusError>())?;
    m.add("RequestError", py.get_type::<errors::RequestError>())?;
    errors::init_context_overflow(py)?;
    m.add("ContextOverflowError", py.get_type::<errors::ContextOverflowError>())?;
    m.add("ModelLoadError", py.get_type::<errors::ModelLoadError>())?;
    m.add("EngineError", py.get_type::<errors::EngineError>())?;
    m.add("EngineClosedError", py.get_type::<errors::EngineClosedError>())?;
    m.add_function(wrap_pyfunction!(build_info::build_info, m)?)?;
    m.add_function(wrap_pyfunction!(check_gguf, m)?)?;
    m.add_function(wrap_pyfunction!(estimate_memory, m)?)?;
    m.add_function(wrap_pyfunction!(_drain_callbacks, m)?)?;
    m.add_function(wrap_pyfunction!(validate_behavior, m)?)?;
    m.add_function(wrap_pyfunction!(validate_sampling, m)?)?;
    m.add_function(wrap_pyfunction!(validate_output, m)?)?;
    m.add_function(wrap_pyfunction!(validate_reasoning, m)?)?;
    Ok(())
}
