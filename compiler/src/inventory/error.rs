//! Errors reading a model file: which file, which tensor, what is wrong.

use std::path::PathBuf;

use thiserror::Error;

/// A model file that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, Error, miette::Diagnostic)]
#[error("`{}`: {kind}", path.display())]
pub struct InventoryError {
    pub path: PathBuf,
    pub kind: InventoryErrorKind,
    #[help]
    pub help: Option<String>,
}

impl InventoryError {
    pub fn new(path: impl Into<PathBuf>, kind: InventoryErrorKind) -> Self {
        let help = kind.help();
        Self { path: path.into(), kind, help }
    }
}

/// What is wrong with the file. Messages are lowercase; tensor names are in backticks.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InventoryErrorKind {
    #[error("cannot read: {message}")]
    Io { message: String },
    #[error("is a directory, not a model file")]
    Directory,
    #[error("is empty")]
    Empty,
    #[error("is neither safetensors nor GGUF (it starts with {start})")]
    UnknownFormat { start: String },
    #[error("is {size} bytes, too short for a {format} header")]
    Truncated { format: &'static str, size: u64 },
    #[error("declares a {declared}-byte header, but the file has only {available} bytes after the length")]
    HeaderBeyondFile { declared: u64, available: u64 },
    #[error("declares a {declared}-byte header, more than the {limit}-byte limit")]
    HeaderTooLarge { declared: u64, limit: u64 },
    #[error("header is not valid UTF-8 at byte {at}")]
    NotUtf8 { at: usize },
    #[error("header is not valid JSON: {message}")]
    NotJson { message: String },
    #[error("header is JSON but not an object")]
    NotObject,
    #[error("tensor `{tensor}`: {message}")]
    BadTensor { tensor: String, message: String },
    #[error("tensor `{tensor}` appears twice")]
    DuplicateTensor { tensor: String },
    #[error("tensor `{tensor}` has unknown dtype `{dtype}`")]
    UnknownDtype { tensor: String, dtype: String },
    #[error("tensor `{tensor}` has unknown ggml type {id}")]
    UnknownGgmlType { tensor: String, id: u32 },
    #[error("tensor `{tensor}`: shape {shape} is too large (its size overflows)")]
    ShapeOverflow { tensor: String, shape: String },
    #[error("tensor `{tensor}`: {dtype} {shape} does not fill whole units of {unit} elements")]
    NotWhole { tensor: String, dtype: String, shape: String, unit: u64 },
    #[error("tensor `{tensor}`: data is {actual} bytes, but {dtype} {shape} needs {expected}")]
    SizeMismatch { tensor: String, dtype: String, shape: String, expected: u64, actual: u64 },
    #[error("tensor `{tensor}`: data ends at byte {end}, past the end of the file's data ({available} bytes)")]
    OutOfBounds { tensor: String, end: u64, available: u64 },
    #[error("tensor `{tensor}` overlaps tensor `{other}`")]
    Overlap { tensor: String, other: String },
    #[error("metadata: {message}")]
    BadMetadata { message: String },
    #[error("GGUF version {version} is not supported")]
    GgufVersion { version: u32 },
    #[error("is a big-endian GGUF file")]
    BigEndianGguf,
    #[error("declares {count} {what}, more than the file could hold ({limit} at most)")]
    TooMany { what: &'static str, count: u64, limit: u64 },
    #[error("a string of {length} bytes at byte {at} runs past the end of the file")]
    StringBeyondFile { length: u64, at: u64 },
    #[error("ends inside the header, at byte {at}, while reading {what}")]
    UnexpectedEnd { what: &'static str, at: u64 },
    #[error("tensor `{tensor}` has {dims} dimensions; GGUF allows at most 4")]
    TooManyDims { tensor: String, dims: u32 },
    #[error("tensor `{tensor}`: offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned { tensor: String, offset: u64, alignment: u64 },
}

impl InventoryErrorKind {
    fn help(&self) -> Option<String> {
        Some(match self {
            Self::UnknownFormat { .. } => "mgc reads `.safetensors` and `.gguf` model files".into(),
            Self::Truncated { .. }
            | Self::HeaderBeyondFile { .. }
            | Self::UnexpectedEnd { .. }
            | Self::OutOfBounds { .. } => "the file looks cut short: download it again".into(),
            Self::UnknownGgmlType { .. } => "a newer quantization than this mgc knows, or a damaged file".into(),
            Self::GgufVersion { .. } => "mgc reads GGUF versions 2 and 3".into(),
            Self::BigEndianGguf => {
                "mgc reads little-endian GGUF files, the kind llama.cpp and ComfyUI-GGUF write".into()
            }
            _ => return None,
        })
    }
}
