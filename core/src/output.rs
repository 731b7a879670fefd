//! Where a command's output goes, decided once for every command that writes a file
//! (`compile -o`, `explain --svg`, `probe -o`, `synth-model -o`):
//!
//! - `-` is standard output;
//! - a path that exists and is not a regular file (a character device such as `/dev/null`, a
//!   FIFO) is opened and written in place: never replaced, never renamed onto;
//! - a symbolic link is followed, and its target is written as a regular file is: the link stays;
//! - a regular file, or a new path, appears whole or not at all: written beside its destination,
//!   synced, then renamed over it.
//!
//! The errors name the path themselves, in mgc's wording, so files are opened with `std::fs`:
//! `fs-err` would name them a second time.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// As many links as Linux follows before it gives up (`ELOOP`).
const MAX_LINKS: usize = 40;

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("`{}`: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("`{}`: more than {MAX_LINKS} symbolic links, or a loop of them", path.display())]
    TooManyLinks { path: PathBuf },
    #[error("a {what} cannot be written to standard output (`-`): name a file")]
    NotOnStdout { what: &'static str },
}

/// Where an output goes; see the module's documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// `-`: standard output.
    Stdout,
    /// An existing file that is not a regular file (a device, a FIFO): written in place.
    InPlace(PathBuf),
    /// A regular file or a new path, symbolic links already followed: replaced atomically.
    Replace(PathBuf),
}

impl Output {
    /// Decides where `path` is written; `-` is standard output.
    pub fn for_path(path: &Path) -> Result<Self, WriteError> {
        if path.as_os_str() == "-" {
            return Ok(Self::Stdout);
        }
        let target = follow_links(path)?;
        match fs::metadata(&target) {
            Ok(meta) if !meta.is_file() => Ok(Self::InPlace(target)),
            _ => Ok(Self::Replace(target)),
        }
    }

    /// The folder a replaced file is written in; `None` for standard output and files written in
    /// place.
    pub fn folder(&self) -> Option<&Path> {
        match self {
            Self::Replace(path) => Some(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))),
            Self::Stdout | Self::InPlace(_) => None,
        }
    }

    /// Writes through `fill`; `stdout` is the writer `-` means.
    pub fn write(
        &self,
        stdout: &mut dyn Write,
        fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), WriteError> {
        match self {
            Self::Stdout => {
                let io = |source| WriteError::Io { path: PathBuf::from("-"), source };
                fill(stdout).map_err(io)?;
                stdout.flush().map_err(io)
            }
            Self::InPlace(path) => in_place(path, |file| fill(file)),
            Self::Replace(path) => replace(path, |file| fill(file)),
        }
    }

    /// Writes through `fill`, which needs a file of its own (to size it, say); `what` names the
    /// output when it cannot go to standard output.
    pub fn write_file(
        &self,
        what: &'static str,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<(), WriteError> {
        match self {
            Self::Stdout => Err(WriteError::NotOnStdout { what }),
            Self::InPlace(path) => in_place(path, fill),
            Self::Replace(path) => replace(path, fill),
        }
    }
}

/// Writes `bytes` to `path` as [`Output`] decides; `stdout` is the writer `-` means.
pub fn write_output(path: &Path, stdout: &mut dyn Write, bytes: &[u8]) -> Result<Output, WriteError> {
    let output = Output::for_path(path)?;
    output.write(stdout, |w| w.write_all(bytes))?;
    Ok(output)
}

/// The path `path` names once every symbolic link is followed; it may not exist yet.
fn follow_links(path: &Path) -> Result<PathBuf, WriteError> {
    let mut current = path.to_owned();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link =
                    fs::read_link(&current).map_err(|source| WriteError::Io { path: current.clone(), source })?;
                current = match current.parent() {
                    Some(folder) if link.is_relative() => folder.join(link),
                    _ => link,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(WriteError::TooManyLinks { path: path.to_owned() })
}

/// Opens an existing device or FIFO and writes to it; nothing is created, truncated or renamed.
fn in_place(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> Result<(), WriteError> {
    let io = |source| WriteError::Io { path: path.to_owned(), source };
    let mut file = OpenOptions::new().write(true).open(path).map_err(io)?;
    fill(&mut file).map_err(io)?;
    file.flush().map_err(io)
}

/// Writes `path` beside itself, syncs, then renames over it: an interrupted write leaves no
/// partial file. A file replaced keeps its permissions.
fn replace(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> Result<(), WriteError> {
    let temp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&temp)?;
        if let Ok(meta) = fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        fill(&mut file)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(|source| WriteError::Io { path: path.to_owned(), source })
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests;
