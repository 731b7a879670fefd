//! mgc's runtime: executes a compiled plan with libtorch (`tch`) and reports measured against
//! predicted; probes the machine. All of it needs libtorch, so it sits behind the `torch` feature.
//! Its command line is `mgc-run` (package `mgc`, feature `torch`), which `mgc run` and `mgc probe`
//! hand over to, so that the `mgc` binary itself never loads libtorch (~0.4 s a process).

#[cfg(feature = "torch")]
pub mod exec;
