//! Links libtorch so that `target/*/ebm` runs without LD_LIBRARY_PATH on the machine that built it,
//! and so that CUDA is really available on a GPU machine; compiles `csrc/` (fused ATen operators
//! tch does not expose) against the same libtorch headers.
//!
//! Also exports tch's version as Cargo resolved it (`EBM_TCH_VERSION`, read from Cargo.lock: Cargo
//! tells a build script nothing about the versions of its dependencies), for `ebm info`.
//!
//! rustc links with `--as-needed`; nothing references symbols of `libtorch_cuda.so` (CUDA registers
//! itself through static initialisers), so the linker would drop it and `Cuda::is_available()`
//! would be false. We link it explicitly with `--no-as-needed` when it exists (tch-rs #907, #984).
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rustc-check-cfg=cfg(ebm_c10d)");
    println!("cargo:rustc-check-cfg=cfg(ebm_nccl)");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys names the libtorch lib folder");
    compile_ops(Path::new(&lib));
    compile_dist(Path::new(&lib));
    export_tch_version();
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
        .file("csrc/mlp_langevin.cpp")
        .file("csrc/mlp_avx512.cpp")
        .include(root.join("include"))
        .flag("-std=c++17")
        .flag("-w")
        // Arithmetic exactly as written (csrc/mlp_langevin.cpp mirrors the tensor ops' roundings).
        .flag("-ffp-contract=off")
        // at::parallel_for is a header template that runs `#pragma omp parallel` (libtorch's CPU
        // build uses OpenMP): without -fopenmp it would run every chunk on the calling thread.
        .flag("-fopenmp")
        .opt_level(3)
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .compile("ebm_ops");
    // The OpenMP runtime those pragmas call: libgomp.so.1, which libtorch_cpu already loads (the
    // torch wheel's own copy, found first through its rpath).
    println!("cargo:rustc-link-lib=dylib=gomp");
}

/// csrc/dist.cpp (c10d's TCPStore and ProcessGroupGloo, exported by libtorch_cpu) when Gloo's
/// headers are found: the torch wheel ships c10d's headers but not Gloo's, which
/// ProcessGroupGloo.hpp includes. They are looked for in GLOO_INCLUDE_DIR, then /usr/include and
/// /usr/local/include (Debian/Ubuntu: `apt-get install libgloo-dev`). Found: the cfg `ebm_c10d` is
/// set and `ebm::dist` talks to other processes; not found: a warning, and `ebm::dist` says how to
/// get them when a run asks for more than one process.
fn compile_dist(lib: &Path) {
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE_DIR");
    let candidates = std::env::var("GLOO_INCLUDE_DIR")
        .into_iter()
        .chain(["/usr/include".to_string(), "/usr/local/include".to_string()]);
    let Some(gloo) = candidates.map(std::path::PathBuf::from).find(|d| d.join("gloo/algorithm.h").exists()) else {
        println!("cargo:warning=Gloo's headers not found (GLOO_INCLUDE_DIR, /usr/include): ebm is built without multi-process training (apt-get install libgloo-dev, then rebuild)");
        return;
    };
    println!("cargo:rerun-if-changed={}", gloo.join("gloo/config.h").display());
    let root = lib.parent().expect("libtorch/lib has a parent");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let build = || {
        let mut b = cc::Build::new();
        b.cpp(true)
            .file("csrc/dist.cpp")
            .include(root.join("include"))
            .include(root.join("include/torch/csrc/api/include"))
            .include(&gloo)
            .flag("-std=c++17")
            .flag("-w")
            .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str());
        b
    };
    if let Some(dirs) = nccl_includes(lib) {
        let mut b = build();
        b.define("EBM_NCCL", "1").includes(&dirs).cargo_warnings(false);
        match b.try_compile("ebm_dist") {
            Ok(()) => {
                // ProcessGroupNCCL lives in libtorch_cuda (linked below, --no-as-needed), its
                // CUDA guards in libc10_cuda.
                println!("cargo:rustc-link-search=native={}", lib.display());
                println!("cargo:rustc-link-lib=dylib=torch_cuda");
                println!("cargo:rustc-link-lib=dylib=c10_cuda");
                println!("cargo:rustc-cfg=ebm_c10d");
                println!("cargo:rustc-cfg=ebm_nccl");
                return;
            }
            Err(e) => {
                println!("cargo:warning=csrc/dist.cpp did not compile with NCCL ({e}): ebm is built with Gloo only")
            }
        }
    }
    build().compile("ebm_dist");
    println!("cargo:rustc-cfg=ebm_c10d");
}

/// The include folders ProcessGroupNCCL.hpp needs beyond libtorch's, when libtorch has CUDA
/// (lib/libtorch_cuda.so): nccl.h (NCCL_INCLUDE_DIR, else the pip wheel beside torch's,
/// site-packages/nvidia/nccl/include, else /usr/include) and CUDA's host headers: the runtime's
/// (cuda_runtime_api.h), the C runtime's (crt/host_config.h: pip `nvidia-cuda-crt`) and CCCL's
/// (nv/target: pip `nvidia-cuda-cccl`), looked for in EBM_CUDA_INCLUDE (folders separated by
/// `:`), CUDA_HOME/include, site-packages/nvidia/cu*/include and /usr/local/cuda/include. None (a
/// warning naming what is missing): ebm is built with Gloo only.
fn nccl_includes(lib: &Path) -> Option<Vec<PathBuf>> {
    for k in ["NCCL_INCLUDE_DIR", "CUDA_HOME", "EBM_CUDA_INCLUDE"] {
        println!("cargo:rerun-if-env-changed={k}");
    }
    if !lib.join("libtorch_cuda.so").exists() {
        return None;
    }
    let nvidia = std::fs::canonicalize(lib).ok()?.parent()?.parent()?.join("nvidia");
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let nccl = var("NCCL_INCLUDE_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([nvidia.join("nccl/include"), "/usr/include".into()])
        .find(|d| d.join("nccl.h").exists());
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(&nvidia)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("include")).collect())
        .unwrap_or_default();
    wheels.sort();
    let mut cuda: Vec<PathBuf> =
        var("EBM_CUDA_INCLUDE").map(|v| v.split(':').map(PathBuf::from).collect()).unwrap_or_default();
    cuda.extend(var("CUDA_HOME").map(|h| PathBuf::from(h).join("include")));
    cuda.extend(wheels);
    cuda.push("/usr/local/cuda/include".into());
    // CCCL's wheel keeps its headers under include/cccl as well.
    let cuda: Vec<PathBuf> = cuda.into_iter().flat_map(|d| [d.join("cccl"), d]).filter(|d| d.is_dir()).collect();
    let missing: Vec<&str> = ["cuda_runtime_api.h", "crt/host_config.h", "nv/target"]
        .into_iter()
        .filter(|h| !cuda.iter().any(|d| d.join(h).exists()))
        .collect();
    match nccl {
        Some(n) if missing.is_empty() => Some(std::iter::once(n).chain(cuda).collect()),
        n => {
            let what = n.map_or("nccl.h".to_string(), |_| missing.join(", "));
            println!("cargo:warning=NCCL backend not built: {what} not found (pip install nvidia-cuda-crt nvidia-cuda-cccl of the CUDA runtime's version, or set NCCL_INCLUDE_DIR / EBM_CUDA_INCLUDE): ebm is built with Gloo only");
            None
        }
    }
}

/// `cargo:rustc-env=EBM_TCH_VERSION=...`: the version of the `tch` package in Cargo.lock, or
/// "unknown" when there is no lock file beside Cargo.toml (ebm built as another crate's dependency).
fn export_tch_version() {
    let lock = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let version = locked_version(&text, "tch").unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=EBM_TCH_VERSION={version}");
}

/// The `version` of the `[[package]]` named `name` in the text of a Cargo.lock.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    lock.split("[[package]]").skip(1).find_map(|block| {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        (field("name")? == name).then(|| field("version")).flatten()
    })
}
