//! With the `torch` feature: an rpath to libtorch (cargo gives binaries none), and libtorch_cuda
//! linked even though no symbol of it is named (the linker's `--as-needed` would drop it, and
//! then libtorch finds no CUDA at run time).
//!
//! Shared by the two packages that link libtorch: `mgc-runtime` (its tests and benches) and `mgc`
//! (`build = "../runtime/build.rs"`), where only `mgc-run` gets it: the `mgc` binary and the
//! tests, which run `mgc-run` as a process, never load libtorch.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    let Some(libtorch) = std::env::var_os("LIBTORCH") else { return };
    let lib = std::path::Path::new(&libtorch).join("lib");
    let mut args = vec![format!("-Wl,-rpath,{}", lib.display())];
    if lib.join("libtorch_cuda.so").exists() {
        args.extend([
            "-Wl,--no-as-needed".to_owned(),
            format!("-L{}", lib.display()),
            "-ltorch_cuda".to_owned(),
            "-Wl,--as-needed".to_owned(),
        ]);
    }
    let the_cli = std::env::var("CARGO_PKG_NAME").is_ok_and(|name| name == "mgc");
    for arg in args {
        if the_cli {
            println!("cargo:rustc-link-arg-bin=mgc-run={arg}");
        } else {
            println!("cargo:rustc-link-arg={arg}");
        }
    }
}
