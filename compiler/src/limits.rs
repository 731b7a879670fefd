//! Bounds on the text files mgc reads whole, so that a hostile path (`/dev/zero`, a 40 GB model
//! named as a workflow) is an error, not an unbounded allocation.

use std::io::Read;
use std::path::Path;

/// The largest workflow file mgc reads.
pub const WORKFLOW_LIMIT: u64 = 16 << 20;
/// The largest hardware profile mgc reads.
pub const PROFILE_LIMIT: u64 = 1 << 20;
/// The largest plan mgc reads (a plan lists every tensor; 100,000 tensors take ~30 MB).
pub const PLAN_LIMIT: u64 = 512 << 20;

/// Reads a UTF-8 text file of at most `limit` bytes.
pub fn read_text(path: &Path, limit: u64, what: &str) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!("`{}` is larger than {} bytes: not a {what}", path.display(), limit));
    }
    String::from_utf8(bytes)
        .map_err(|e| format!("`{}` is not UTF-8 text (byte {})", path.display(), e.utf8_error().valid_up_to()))
}
