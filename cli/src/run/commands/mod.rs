pub mod probe;
pub mod run;
