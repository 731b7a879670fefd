//! Why a plan does not run. Every refusal names what and how much; none is a panic.

use mgc_core::Bytes;

/// A run that cannot start or did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error("cannot read `{path}`: {message}")]
    Read { path: String, message: String },
    #[error(transparent)]
    ReadText(#[from] mgc_core::ReadError),
    #[error("`{path}`: {message}")]
    Plan { path: String, message: String },
    #[error("model file `{path}` changed since the plan was compiled: {what}")]
    Changed { path: String, what: String },
    #[error("the plan needs `{device}`, which this machine does not have ({have})")]
    DeviceAbsent { device: String, have: String },
    #[error("`{device}` needs {} at its peak but has {} available: {} short", Bytes(*needed), Bytes(*available), Bytes(needed.saturating_sub(*available)))]
    OutOfMemory { device: String, needed: u64, available: u64 },
    #[error("{what} is not supported by this runtime yet")]
    Unsupported { what: String },
    #[error("libtorch failed: {0}")]
    Torch(String),
    #[error("the CUDA driver failed: {0}")]
    Cuda(String),
}

impl RunError {
    /// What to do about it.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            Self::Changed { .. } => Some("compile the plan again: `mgc compile WORKFLOW.toml`"),
            Self::DeviceAbsent { .. } => Some("compile a plan for this machine, or run this one where its devices are"),
            Self::OutOfMemory { .. } => Some("free memory, or compile with a smaller budget for that device"),
            _ => None,
        }
    }

    /// 1 when the input is the problem, 2 when the tool failed.
    pub const fn exit_code(&self) -> u8 {
        match self {
            Self::Torch(_) | Self::Cuda(_) => 2,
            _ => 1,
        }
    }
}

impl From<tch::TchError> for RunError {
    fn from(error: tch::TchError) -> Self {
        Self::Torch(error.to_string())
    }
}
