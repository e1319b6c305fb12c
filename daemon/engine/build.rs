//! Compiles the C++ shim in `csrc/` against the headers of the libtorch that tch
//! links (`LIBTORCH`, written to .cargo/config.toml by scripts/setup.sh).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/stats.cpp");
    println!("cargo:rerun-if-changed=csrc/ops.cpp");
    println!("cargo:rerun-if-changed=csrc/text.h");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let libtorch =
        PathBuf::from(std::env::var("LIBTORCH").expect("LIBTORCH is not set: run scripts/setup.sh first, it points tch at the shared libtorch"));
    let cxx11_abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    cc::Build::new()
        .cpp(true)
        .file("csrc/shim.cpp")
        .file("csrc/ops.cpp")
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag_if_supported("-Wno-unused-parameter")
        .define("_GLIBCXX_USE_CXX11_ABI", cxx11_abi.as_str())
        .warnings(false)
        .compile("layerlens_shim");
    // The fused statistics kernel is a hot loop: always optimised, vectorised through
    // `omp simd`, with an AVX2 clone picked at load time, and threaded through
    // at::parallel_for, whose OpenMP pragmas need -fopenmp here.
    cc::Build::new()
        .cpp(true)
        .file("csrc/stats.cpp")
        .include(libtorch.join("include"))
        .flag("-std=c++17")
        .flag("-fopenmp")
        .opt_level(3)
        .define("_GLIBCXX_USE_CXX11_ABI", cxx11_abi.as_str())
        .warnings(false)
        .compile("layerlens_stats");
    // Link the libgomp that libtorch itself loads (the wheel ships it next to
    // libtorch_cpu.so under the same soname), so the process has one OpenMP runtime.
    // Without a bundled copy, libtorch was built against the system's.
    let bundled_gomp = libtorch.join("lib").join("libgomp.so.1");
    if bundled_gomp.exists() {
        println!("cargo:rustc-link-search=native={}", libtorch.join("lib").display());
        println!("cargo:rustc-link-lib=dylib:+verbatim=libgomp.so.1");
    } else {
        println!("cargo:rustc-link-lib=dylib=gomp");
    }
    // The engine's own unit tests link libtorch; let them find it without LD_LIBRARY_PATH.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", libtorch.join("lib").display());
    // ... and with the CUDA half the daemon links (daemon/build.rs says why it must be
    // forced), so they load the libraries the daemon runs with, and its CUDA code
    // paths (the device-memory query) are tested as they run there.
    if libtorch.join("lib").join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", libtorch.join("lib").display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
