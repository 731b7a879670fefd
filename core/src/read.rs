//! Bounded reads of the text files mgc reads whole, so that a hostile path (`/dev/zero`, a 40 GB
//! model named as a workflow) is an error, not an unbounded allocation.
//!
//! The errors name the path themselves, in mgc's wording, so the file is opened with `std::fs`:
//! `fs-err` would name it a second time.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The largest workflow file mgc reads.
pub const WORKFLOW_LIMIT: u64 = 16 << 20;
/// The largest hardware profile mgc reads.
pub const PROFILE_LIMIT: u64 = 1 << 20;
/// The largest plan mgc reads (a plan lists every tensor; 100,000 tensors take ~30 MB).
pub const PLAN_LIMIT: u64 = 512 << 20;

/// Why a text file could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The system's reason, in its words.
    #[error("cannot read `{}`: {message}", path.display())]
    Io { path: PathBuf, message: String, kind: io::ErrorKind },
    #[error("`{}` is larger than {limit} bytes: not a {what}", path.display())]
    TooLarge { path: PathBuf, limit: u64, what: &'static str },
    #[error("`{}` is not UTF-8 text (byte {valid_up_to})", path.display())]
    NotUtf8 { path: PathBuf, valid_up_to: usize, what: &'static str },
}

impl ReadError {
    /// The file that could not be read.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. } | Self::TooLarge { path, .. } | Self::NotUtf8 { path, .. } => path,
        }
    }

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

/// Reads a UTF-8 text file of at most `limit` bytes; `what` names it in the error (`"plan"`).
pub fn read_text(path: &Path, limit: u64, what: &'static str) -> Result<String, ReadError> {
    let io =
        |source: io::Error| ReadError::Io { path: path.to_owned(), message: source.to_string(), kind: source.kind() };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { path: path.to_owned(), limit, what });
    }
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8 {
        path: path.to_owned(),
        valid_up_to: e.utf8_error().valid_up_to(),
        what,
    })
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use super::*;

    #[test]
    fn text_within_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.toml");
        std::fs::write(&path, "a = 1\n").unwrap();
        assert_eq!(read_text(&path, 6, "workflow").unwrap(), "a = 1\n");
    }

    #[test]
    fn each_failure_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "a = 1\n").unwrap();
        let binary = dir.path().join("bin.toml");
        std::fs::write(&binary, b"ab\xff").unwrap();
        let missing = dir.path().join("missing.toml");
        let too_large = read_text(&big, 5, "workflow").unwrap_err();
        assert!(matches!(too_large, ReadError::TooLarge { limit: 5, .. }), "{too_large}");
        assert_eq!(too_large.to_string(), format!("`{}` is larger than 5 bytes: not a workflow", big.display()));
        let not_utf8 = read_text(&binary, 100, "workflow").unwrap_err();
        assert!(matches!(not_utf8, ReadError::NotUtf8 { valid_up_to: 2, .. }), "{not_utf8}");
        let absent = read_text(&missing, 100, "workflow").unwrap_err();
        assert!(absent.to_string().starts_with(&format!("cannot read `{}`: ", missing.display())), "{absent}");
        for (error, path) in [(too_large, &big), (not_utf8, &binary), (absent, &missing)] {
            assert_eq!(error.path(), path.as_path());
        }
    }

    #[test]
    fn an_endless_file_is_cut_at_the_limit() {
        match read_text(Path::new("/dev/zero"), 1 << 10, "plan") {
            Err(ReadError::TooLarge { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
