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

/// What this build of the extension was compiled with: version, distribution, backends, CPU features, target,
/// profile and llama.cpp's system info (`None` without the real engine).
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
    out.set_item("llama_system_info", llama_system_info())?;
    Ok(out)
}
