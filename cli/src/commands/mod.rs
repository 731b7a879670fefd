pub mod check;
pub mod inspect;
pub mod synth;
