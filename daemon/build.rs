//! Link settings for `layerlensd`: an rpath to the libtorch it was built against, so
//! the binary runs without LD_LIBRARY_PATH, and `torch_cuda` linked with
//! `--no-as-needed` when that libtorch has it. Without the latter the linker drops
//! torch_cuda (nothing references it directly) and CUDA is silently unavailable.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        println!("cargo:warning=LIBTORCH is not set; run scripts/setup.sh (no rpath will be set)");
        return;
    };
    let lib = libtorch.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg-bins=-ltorch_cuda");
        println!("cargo:rustc-link-arg-bins=-Wl,--as-needed");
    }
}
