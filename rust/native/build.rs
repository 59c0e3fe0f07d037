//! Records the CUDA toolkit version a `cuda` build was compiled with, for `build_info()`: the version of the nvcc
//! that llama.cpp's CMake uses (the same variables scripts/build-wheels.sh sets), read from `nvcc --version`.
//! Builds without the `cuda` feature record nothing and run no command.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// The nvcc llama.cpp's CMake picks: CMAKE_CUDA_COMPILER, else a toolkit root's bin/nvcc, else nvcc on PATH.
fn nvcc() -> PathBuf {
    if let Some(path) = env::var_os("CMAKE_CUDA_COMPILER") {
        return PathBuf::from(path);
    }
    for root in ["CUDAToolkit_ROOT", "CUDA_PATH", "CUDA_HOME"] {
        if let Some(dir) = env::var_os(root) {
            let candidate = PathBuf::from(dir).join("bin").join("nvcc");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("nvcc")
}

/// `release 13.5,` in nvcc's banner.
fn release(banner: &str) -> Option<String> {
    let rest = &banner[banner.find("release ")? + "release ".len()..];
    let version: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    (!version.is_empty()).then_some(version)
}

fn main() {
    // Without these lines cargo would rerun this script on any change in the package; with PATH among them, a CPU
    // build would rebuild the extension whenever PATH differs between two builds. So CPU builds watch only this file.
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    for var in ["CMAKE_CUDA_COMPILER", "CUDAToolkit_ROOT", "CUDA_PATH", "CUDA_HOME", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let version = Command::new(nvcc())
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| release(&String::from_utf8_lossy(&out.stdout)))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=RG_CUDA_VERSION={version}");
}
