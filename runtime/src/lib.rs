//! mgc's runtime: executes a compiled plan with libtorch (`tch`) and reports measured against
//! predicted; probes the machine. Its binary is `mgc-run`, which `mgc run` and `mgc probe` hand
//! over to, so that the `mgc` binary itself never loads libtorch (~0.4 s a process).

pub mod cli;
pub mod exec;
