pub mod check;
pub mod compile;
pub mod explain;
pub mod handover;
pub mod import;
pub mod inspect;
pub mod synth;
