//! The command line's own errors: inputs that cannot be read, outputs that cannot be written,
//! a file of the wrong kind. The stages' errors are their own diagnostics; all are rendered in
//! [`crate::render`].

use mgc_core::ReadError;
use miette::Diagnostic;
use thiserror::Error;

use crate::Status;

/// What stops a command before or after its stage runs.
#[derive(Clone, Debug, PartialEq, Eq, Error, Diagnostic)]
#[non_exhaustive]
pub enum CliError {
    #[error("{error}")]
    Read {
        error: ReadError,
        #[help]
        help: Option<String>,
    },
    #[error("`{path}` looks like a plan (JSON), not a workflow (TOML)")]
    #[diagnostic(help(
        "`mgc explain {path}` reads a plan; `mgc {command}` reads the workflow (TOML) a plan is compiled from"
    ))]
    PlanNotWorkflow { path: String, command: &'static str },
    #[error("`{path}` is JSON, not a workflow (TOML)")]
    #[diagnostic(help("a workflow is a TOML file of `[[device]]` and `[[model]]` tables"))]
    JsonNotWorkflow { path: String },
    #[error("`{path}`: {message}")]
    BadPlan { path: String, message: String },
    #[error("`{path}` has no model `{model}`")]
    #[diagnostic(help("name one of the workflow's `[[model]]` tables by its `name`"))]
    NoSuchModel { model: String, path: String },
    #[error("`{path}` is a plan; `--stage` shows how a workflow becomes one")]
    #[diagnostic(help("give `mgc explain --stage` the workflow (TOML) the plan was compiled from"))]
    StageOfPlan { path: String },
    #[error("there is no stage `{stage}`")]
    #[diagnostic(help("name one of the compiler's stages: graph, budgets, placement, schedule, peaks, plan"))]
    UnknownStage { stage: String },
    #[error("`{path}` is not a tensor inventory: {message}")]
    #[diagnostic(help("an inventory is JSON: `{{\"model\", \"prefix\", \"tensors\": [[key, shape, dtype], ...]}}`"))]
    BadInventory { path: String, message: String },
    #[error("cannot write the model `{path}`: {message}")]
    WriteModel { path: String, message: String },
    #[error("cannot write the plan `{path}`: {message}")]
    #[diagnostic(help("give `--output` a path in a folder that exists and that you may write to"))]
    WritePlan { path: String, message: String },
    #[error("cannot write the picture `{path}`: {message}")]
    #[diagnostic(help("give `--svg` a path in a folder that exists and that you may write to"))]
    WritePicture { path: String, message: String },
    #[error("cannot start `{runner}`: {message}")]
    #[diagnostic(help(
        "`mgc {command}` needs the runtime; build it with `cargo build --release -p mgc --features torch` (it sits beside `mgc`)"
    ))]
    CannotStart { runner: String, command: &'static str, message: String },
    #[error("{message}")]
    #[diagnostic(help("`mgc --help` lists the commands; `mgc COMMAND --help` their arguments"))]
    Usage { message: String },
}

impl CliError {
    pub fn read(error: ReadError) -> Self {
        let help = error.help();
        Self::Read { error, help }
    }

    /// Whether the user's input is wrong, or the tool failed.
    pub const fn status(&self) -> Status {
        match self {
            Self::Read { .. }
            | Self::PlanNotWorkflow { .. }
            | Self::JsonNotWorkflow { .. }
            | Self::BadPlan { .. }
            | Self::StageOfPlan { .. }
            | Self::UnknownStage { .. }
            | Self::NoSuchModel { .. }
            | Self::BadInventory { .. } => Status::InputProblem,
            Self::WriteModel { .. }
            | Self::WritePlan { .. }
            | Self::WritePicture { .. }
            | Self::CannotStart { .. }
            | Self::Usage { .. } => Status::ToolFailed,
        }
    }
}
