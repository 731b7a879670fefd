//! `mgc-run`'s command-line types, apart from the commands' code.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
pub use mgc_cli::args::Format;

#[derive(Debug, Parser)]
#[command(
    name = "mgc-run",
    version,
    about = "Runs mgc plans with libtorch and measures this machine",
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a plan and report measured against predicted
    Run(RunArgs),
    /// Measure this machine and write the hardware profile the compiler reads
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub plan: PathBuf,
    /// Steps of every model but text encoders and VAEs, which run once (a model of unknown role
    /// steps); the first step is reported apart, as the warm-up
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: u32,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// How streamed layers are copied: `streams` overlaps copies with compute on CUDA (a copy
    /// stream, events between streams); `torch` waits for each copy (for comparison)
    #[arg(long, value_enum, default_value_t)]
    pub copies: CopiesArg,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum CopiesArg {
    #[default]
    Streams,
    Torch,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}
