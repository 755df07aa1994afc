//! Links libtorch so that `target/*/ebm` runs without LD_LIBRARY_PATH on the machine that built it,
//! and so that CUDA is really available on a GPU machine; compiles `csrc/` (fused ATen operators
//! tch does not expose) against the same libtorch headers.
//!
//! rustc links with `--as-needed`; nothing references symbols of `libtorch_cuda.so` (CUDA registers
//! itself through static initialisers), so the linker would drop it and `Cuda::is_available()`
//! would be false. We link it explicitly with `--no-as-needed` when it exists (tch-rs #907, #984).
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/ops.cpp");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys names the libtorch lib folder");
    compile_ops(Path::new(&lib));
    if !std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux") {
        return;
    }
    // Resolve the .venv/libtorch symlink so the rpath names the real folder.
    let lib = std::fs::canonicalize(&lib).map(|p| p.display().to_string()).unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{lib}");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// csrc/ops.cpp against the headers of the libtorch torch-sys links (lib/../include), with the
/// C++ ABI torch-sys uses.
fn compile_ops(lib: &Path) {
    let root = lib.parent().expect("libtorch/lib has a parent");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    cc::Build::new()
        .cpp(true)
        .file("csrc/ops.cpp")
        .include(root.join("include"))
        .flag("-std=c++17")
        .flag("-w")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .compile("ebm_ops");
}
