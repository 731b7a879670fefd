//! Command-line types, apart from the commands' code.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// mgc, the MultiGPU compiler: plans where a diffusion model's layers live and when they move.
#[derive(Debug, Parser)]
#[command(name = "mgc", version, about, long_about = None, max_term_width = 100)]
#[command(after_help = "Exit codes: 0 fine, 1 the input has problems, 2 mgc itself failed.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a workflow file, or an allocation string, and explain every problem
    Check(CheckArgs),
    /// Show the models, layers and bytes of a model file, reading only its header
    Inspect(InspectArgs),
    /// Compile a workflow into a plan: where every layer lives, which copies run when, peaks, step time
    Compile(CompileArgs),
    /// Explain a plan: memory per device, placement per model, the predicted step
    Explain(ExplainArgs),
    /// Predict how fast a model steps as its compute device holds more of it, from none to all
    Sweep(SweepArgs),
    /// Print the JSON Schema of the plan format
    Schema,
    /// Run a plan with libtorch and report measured against predicted (hands over to `mgc-run`)
    #[command(disable_help_flag = true)]
    Run {
        /// The arguments of `mgc-run run`: PLAN [--steps N] [--format human|json]
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Measure this machine and write a hardware profile (hands over to `mgc-run`)
    #[command(disable_help_flag = true)]
    Probe {
        /// The arguments of `mgc-run probe`: [-o PROFILE.toml] [--format human|json]
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Import a saved ComfyUI workflow: each ComfyUI-MultiGPU loader becomes a `[[model]]`
    Import(ImportArgs),
    /// Write a header-only model file from a tensor inventory (JSON), to try mgc without the weights
    SynthModel(SynthArgs),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables and diagnostics for people
    #[default]
    Human,
    /// One JSON document on stdout, errors included
    Json,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("input").required(true))]
pub struct CheckArgs {
    /// The workflow file (TOML)
    #[arg(group = "input")]
    pub workflow: Option<PathBuf>,
    /// Check an allocation string instead, such as `cuda:0,8gb;cpu,*`
    #[arg(long, short, group = "input", value_name = "STRING", allow_hyphen_values = true)]
    pub allocation: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The workflow file (TOML)
    pub workflow: PathBuf,
    /// The model whose budget on its compute device varies (the others stay as the workflow has them)
    #[arg(long, short)]
    pub model: String,
    /// The smallest budget [default: nothing]
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub from: Option<mgc_core::Bytes>,
    /// The largest budget [default: the whole model]
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub to: Option<mgc_core::Bytes>,
    /// How many budgets, evenly spaced
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(2..=200))]
    pub points: u32,
    /// Also draw the curve as an SVG picture
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// A size as the allocation language writes one (`4gb`, `512mb`).
fn size(text: &str) -> Result<mgc_core::Bytes, String> {
    mgc_grammar::parse_size(text).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A model file: `.safetensors` or `.gguf`
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// A tensor inventory: `{"model", "prefix", "tensors": [[key, shape, dtype], ...]}`
    pub inventory: PathBuf,
    /// The safetensors file to write (its data region is a sparse hole)
    #[arg(long, short)]
    pub output: PathBuf,
    /// Key prefix for every tensor (default: the inventory's own `prefix`)
    #[arg(long)]
    pub prefix: Option<String>,
    /// Fill the data with seeded random values instead of a sparse hole: a small model that runs
    #[arg(long)]
    pub random: bool,
    /// The seed of `--random`
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The workflow file (TOML)
    pub workflow: PathBuf,
    /// Where to write the plan, `-` for stdout [default: the workflow's name with `.plan.json`]
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A workflow saved by ComfyUI (JSON, the UI or the API format)
    pub workflow: PathBuf,
    /// Where to write the mgc workflow, `-` for stdout [default: the input's name with `.toml`]
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// ComfyUI's `models` folder, where the model files are looked for (`diffusion_models`, `vae`, ...)
    #[arg(long, value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// Also compile the imported workflow into this plan (every model file must be found)
    #[arg(long, value_name = "PLAN")]
    pub compile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A plan written by `mgc compile`, or a workflow (TOML), compiled on the spot
    pub plan: PathBuf,
    /// Also draw the plan as an SVG picture: memory per device and one step's timeline (`-`: stdout)
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Print one stage of the compiler as JSON instead (the file must be a workflow)
    #[arg(long, value_enum, value_name = "STAGE")]
    pub stage: Option<StageArg>,
}

/// The compiler's stages, in order, as `mgc explain --stage` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StageArg {
    /// Every layer of every model, and the edges that order them
    Graph,
    /// The bytes each model may keep on each device, from its allocation
    Budgets,
    /// Each layer's home, and why
    Placement,
    /// The copies of one step, their edges and times; each model's step
    Schedule,
    /// Every device's memory at its peak
    Peaks,
    /// The plan itself
    Plan,
}

impl From<StageArg> for mgc_compiler::compile::Stage {
    fn from(stage: StageArg) -> Self {
        match stage {
            StageArg::Graph => Self::Graph,
            StageArg::Budgets => Self::Budgets,
            StageArg::Placement => Self::Placement,
            StageArg::Schedule => Self::Schedule,
            StageArg::Peaks => Self::Peaks,
            StageArg::Plan => Self::Plan,
        }
    }
}
