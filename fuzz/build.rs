//! Fuzz binaries run without LD_LIBRARY_PATH: an rpath to the libtorch that torch-sys linked,
//! as the main crate's build.rs does for `ebm` (which covers only the main crate's own targets).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        let lib = std::fs::canonicalize(&lib).map(|p| p.display().to_string()).unwrap_or(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
