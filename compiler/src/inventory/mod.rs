//! Model inventories from file headers: every tensor's name, type, shape and exact bytes, read
//! without touching the weights, then split into models and grouped into layers.
//!
//! | stage | from | to | function |
//! |---|---|---|---|
//! | read | a `.safetensors` or `.gguf` file | [`Inventory`] | [`file_to_inventory`] |
//! | split | [`Inventory`] | [`Model`]s with [`Layer`]s | [`inventory_to_models`] |

mod dtype;
mod error;
mod gguf;
mod models;
mod safetensors;
pub mod synth;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use dtype::{Dtype, GGML_TYPES, GgmlType, PlainType};
pub use error::{InventoryError, InventoryErrorKind};
pub use models::{Family, Layer, Model, Role, inventory_to_models};

/// The file formats mgc reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Safetensors,
    Gguf,
}

/// One tensor of a model file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tensor {
    pub name: String,
    pub dtype: Dtype,
    /// Outermost dimension first, as torch writes shapes (GGUF's are reversed to match).
    pub shape: Vec<u64>,
    /// Where the data starts, in bytes from the start of the file.
    pub offset: u64,
    pub bytes: u64,
}

/// Everything a model file's header says, tensors in the order of their data in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub path: PathBuf,
    pub format: FileFormat,
    /// For GGUF, the format version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    pub file_size: u64,
    /// Bytes before the tensor data: the whole header.
    pub header_size: u64,
    /// `__metadata__` of safetensors, or GGUF's key-values (arrays summarised), in a stable order.
    pub metadata: Vec<(String, String)>,
    pub tensors: Vec<Tensor>,
}

impl Inventory {
    pub fn data_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.bytes).sum()
    }
}

/// Reads a model file's header, and only its header.
pub fn file_to_inventory(path: &Path) -> Result<Inventory, InventoryError> {
    read(path).map_err(|kind| InventoryError::new(path, kind))
}

fn read(path: &Path) -> Result<Inventory, InventoryErrorKind> {
    let io = |e: std::io::Error| InventoryErrorKind::Io { message: e.to_string() };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        return Err(InventoryErrorKind::Directory);
    }
    let size = meta.len();
    if size == 0 {
        return Err(InventoryErrorKind::Empty);
    }
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut start = [0u8; 9];
    let got = read_up_to(&mut file, &mut start).map_err(io)?;
    let start = start.get(..got).unwrap_or_default();
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let (format, mut inventory) = if start.starts_with(b"GGUF") || extension.as_deref() == Some("gguf") {
        (FileFormat::Gguf, gguf::read(file, size)?)
    } else if start.get(8) == Some(&b'{')
        || extension.as_deref() == Some("safetensors")
        || extension.as_deref() == Some("sft")
    {
        (FileFormat::Safetensors, safetensors::read(file, size)?)
    } else {
        let shown: Vec<String> = start.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(InventoryErrorKind::UnknownFormat { start: format!("bytes {}", shown.join(" ")) });
    };
    inventory.path = path.to_owned();
    inventory.format = format;
    Ok(inventory)
}

/// Reads as much of `buf` as the file has.
fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match file.read(rest)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Checks that the tensors' data ranges do not overlap; `tensors` must be sorted by offset.
fn check_overlaps(tensors: &[Tensor]) -> Result<(), InventoryErrorKind> {
    let mut previous: Option<&Tensor> = None;
    for tensor in tensors.iter().filter(|t| t.bytes > 0) {
        if let Some(prev) = previous
            && tensor.offset < prev.offset + prev.bytes
        {
            {
                return Err(InventoryErrorKind::Overlap { tensor: tensor.name.clone(), other: prev.name.clone() });
            }
        }
        previous = Some(tensor);
    }
    Ok(())
}

fn shape_text(shape: &[u64]) -> String {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    format!("[{}]", dims.join(", "))
}
