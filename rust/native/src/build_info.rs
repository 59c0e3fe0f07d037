//! `build_info()`: what this extension was compiled with, read from the compiler's own configuration (`cfg!`), so
//! it cannot disagree with the build. `scripts/build-wheels.sh` names the distributions the same way.

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// GPU backends first, then the CPU backend every build has.
fn backends() -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg!(feature = "cuda") {
        out.push("cuda");
    }
    if cfg!(feature = "metal") {
        out.push("metal");
    }
    if cfg!(feature = "vulkan") {
        out.push("vulkan");
    }
    out.push("cpu");
    out
}

/// The CPU features the crate graph (and so llama.cpp's ggml CPU backend, which llama-cpp-sys-2 configures from the
/// same rustc target features) was compiled for.
fn cpu_features() -> Vec<&'static str> {
    let candidates: &[(&str, bool)] = &[
        ("sse3", cfg!(target_feature = "sse3")),
        ("ssse3", cfg!(target_feature = "ssse3")),
        ("sse4.1", cfg!(target_feature = "sse4.1")),
        ("sse4.2", cfg!(target_feature = "sse4.2")),
        ("avx", cfg!(target_feature = "avx")),
        ("avx2", cfg!(target_feature = "avx2")),
        ("fma", cfg!(target_feature = "fma")),
        ("f16c", cfg!(target_feature = "f16c")),
        ("bmi2", cfg!(target_feature = "bmi2")),
        ("avx512f", cfg!(target_feature = "avx512f")),
        ("avx512bw", cfg!(target_feature = "avx512bw")),
        ("avx512vnni", cfg!(target_feature = "avx512vnni")),
        ("neon", cfg!(target_feature = "neon")),
        ("dotprod", cfg!(target_feature = "dotprod")),
        ("fp16", cfg!(target_feature = "fp16")),
        ("i8mm", cfg!(target_feature = "i8mm")),
        ("sve", cfg!(target_feature = "sve")),
    ];
    candidates.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect()
}

/// The PyPI distribution this build is published as (the import name is always `rusty_genius`).
fn distribution() -> &'static str {
    if cfg!(feature = "cuda") {
        "rusty-genius-cuda"
    } else if cfg!(feature = "vulkan") {
        "rusty-genius-vulkan"
    } else {
        // The Metal build is the plain distribution with a macOS arm64 platform tag.
        "rusty-genius"
    }
}

/// `arch-os[-env]`, e.g. `x86_64-linux-gnu`, `aarch64-macos`.
fn target() -> String {
    let env = if cfg!(target_env = "gnu") {
        "-gnu"
    } else if cfg!(target_env = "musl") {
        "-musl"
    } else if cfg!(target_env = "msvc") {
        "-msvc"
    } else {
        ""
    };
    format!("{}-{}{env}", std::env::consts::ARCH, std::env::consts::OS)
}

/// llama.cpp's own report (`llama_print_system_info`): the ggml backends and CPU features it was compiled with.
#[cfg(feature = "real-engine")]
fn llama_system_info() -> Option<String> {
    // Linked from llama-cpp-sys-2's static llama.cpp, which the real engine already pulls into this library.
    unsafe extern "C" {
        fn llama_print_system_info() -> *const std::ffi::c_char;
    }
    // SAFETY: the function takes no arguments and returns a pointer to a NUL-terminated string owned by a static
    // inside llama.cpp (valid until the next call); we copy it out at once. Callers hold the GIL, so no two calls
    // from this module overlap.
    let text = unsafe {
        let ptr = llama_print_system_info();
        if ptr.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(ptr).to_string_lossy().into_owned()
    };
    Some(text.trim().to_owned())
}

#[cfg(not(feature = "real-engine"))]
fn llama_system_info() -> Option<String> {
    None
}

/// The CUDA side of a `cuda` build: the toolkit version it was compiled with (rust/native/build.rs), the GPU
/// architectures compiled in (llama.cpp's own `ARCHS` feature, i.e. nvcc's `__CUDA_ARCH_LIST__`), the CUDA devices
/// llama.cpp sees now, and why none can be used when there is none (no driver, no GPU): the engine then runs on
/// the CPU. `None` for builds without CUDA.
#[cfg(feature = "cuda")]
fn cuda<'py>(py: Python<'py>, system_info: Option<&str>) -> PyResult<Option<Bound<'py, PyDict>>> {
    let out = PyDict::new(py);
    out.set_item("version", env!("RG_CUDA_VERSION"))?;
    // "CUDA : ARCHS = 750,800,860 | USE_GRAPHS = 1 | ... | CPU : ..."
    let archs: Vec<String> = system_info
        .and_then(|text| text.split("ARCHS = ").nth(1))
        .map(|rest| rest.split(['|', ' ']).next().unwrap_or(""))
        .map(|list| list.split(',').filter(|a| !a.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    out.set_item("architectures", archs)?;
    let devices = cuda_devices();
    let error = devices.is_empty().then_some(
        "no CUDA device is usable (no NVIDIA driver, or it sees no GPU): llama.cpp's log says why; models run on \
         the CPU",
    );
    out.set_item("devices", devices)?;
    out.set_item("error", error)?;
    Ok(Some(out))
}

#[cfg(not(feature = "cuda"))]
fn cuda<'py>(_py: Python<'py>, _system_info: Option<&str>) -> PyResult<Option<Bound<'py, PyDict>>> {
    Ok(None)
}

/// `"name: description"` of each device of ggml's CUDA backend registry (an empty list when CUDA cannot start).
#[cfg(feature = "cuda")]
fn cuda_devices() -> Vec<String> {
    use std::ffi::{CStr, c_char, c_void};
    // ggml-backend.h; the symbols come from libggml(-base).so, which the real engine links.
    unsafe extern "C" {
        fn ggml_backend_dev_count() -> usize;
        fn ggml_backend_dev_get(index: usize) -> *mut c_void;
        fn ggml_backend_dev_name(device: *mut c_void) -> *const c_char;
        fn ggml_backend_dev_description(device: *mut c_void) -> *const c_char;
        fn ggml_backend_dev_backend_reg(device: *mut c_void) -> *mut c_void;
        fn ggml_backend_reg_name(reg: *mut c_void) -> *const c_char;
    }
    let text = |ptr: *const c_char| {
        // SAFETY: ggml returns NUL-terminated strings owned by the (process-lifetime) backend registry, or null.
        (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned())
    };
    let mut out = Vec::new();
    // SAFETY: the registry is initialised on first use and lives for the process; indices below the count are
    // valid devices, and every pointer passed back to ggml came from ggml.
    unsafe {
        for index in 0..ggml_backend_dev_count() {
            let device = ggml_backend_dev_get(index);
            if device.is_null()
                || text(ggml_backend_reg_name(ggml_backend_dev_backend_reg(device))).as_deref() != Some("CUDA")
            {
                continue;
            }
            let name = text(ggml_backend_dev_name(device)).unwrap_or_default();
            let description = text(ggml_backend_dev_description(device)).unwrap_or_default();
            out.push(format!("{name}: {description}"));
        }
    }
    out
}

/// What this build of the extension was compiled with: version, distribution, backends, CPU features, target,
/// profile, the CUDA toolkit, architectures and devices (`None` without CUDA) and llama.cpp's system info (`None`
/// without the real engine).
#[pyfunction]
pub fn build_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("version", env!("CARGO_PKG_VERSION"))?;
    out.set_item("distribution", distribution())?;
    out.set_item("backends", backends())?;
    out.set_item("real_engine", cfg!(feature = "real-engine"))?;
    out.set_item("cpu_features", cpu_features())?;
    out.set_item("target", target())?;
    out.set_item("profile", if cfg!(debug_assertions) { "debug" } else { "release" })?;
    let system_info = llama_system_info();
    out.set_item("cuda", cuda(py, system_info.as_deref())?)?;
    out.set_item("llama_system_info", system_info)?;
    Ok(out)
}
