//! Bounds on the text files mgc reads whole, so that a hostile path (`/dev/zero`, a 40 GB model
//! named as a workflow) is an error, not an unbounded allocation.

use std::io::Read;
use std::path::Path;

use thiserror::Error;

/// The largest workflow file mgc reads.
pub const WORKFLOW_LIMIT: u64 = 16 << 20;
/// The largest hardware profile mgc reads.
pub const PROFILE_LIMIT: u64 = 1 << 20;
/// The largest plan mgc reads (a plan lists every tensor; 100,000 tensors take ~30 MB).
pub const PLAN_LIMIT: u64 = 512 << 20;

/// A text file that cannot be read whole. The path is as the caller gave it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("cannot read `{path}`: {message}")]
    Io { path: String, message: String },
    #[error("`{path}` is larger than {limit} bytes: not a {what}")]
    TooLarge { path: String, limit: u64, what: &'static str },
    #[error("`{path}` is not UTF-8 text (byte {at})")]
    NotUtf8 { path: String, at: usize, what: &'static str },
}

impl ReadError {
    /// What to do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            Self::Io { .. } => None,
            Self::TooLarge { what, .. } | Self::NotUtf8 { what, .. } => {
                Some(format!("give the path of a {what}, a text file"))
            }
        }
    }
}

/// Reads a UTF-8 text file of at most `limit` bytes.
pub fn read_text(path: &Path, limit: u64, what: &'static str) -> Result<String, ReadError> {
    let shown = || path.display().to_string();
    let io = |e: std::io::Error| ReadError::Io { path: shown(), message: e.to_string() };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { path: shown(), limit, what });
    }
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8 { path: shown(), at: e.utf8_error().valid_up_to(), what })
}
