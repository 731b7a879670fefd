//! Files appear whole or not at all: written beside their destination, then renamed over it.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Writes `path` through `fill`, atomically: an interrupted write leaves no partial file.
pub fn write_with(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let temp = temp_path(path);
    let result = (|| {
        let mut file = fs_err::File::create(&temp)?.into_parts().0;
        fill(&mut file)?;
        file.sync_all()?;
        drop(file);
        fs_err::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}
