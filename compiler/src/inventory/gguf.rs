//! The GGUF header (versions 2 and 3): magic, version, counts, metadata key-values, tensor infos.
//!
//! Hand-written rather than taken from a crate: the reader must stream only the header, bound
//! every count and string length by the bytes the file still has before allocating anything,
//! skip large metadata arrays (tokenizer vocabularies) without reading them into memory, and
//! answer an unknown ggml type id with a clear error naming the tensor. Of the crates, `ggus`
//! panics on new types, `gguf` is unmaintained, and `gguf-rs-lib` would still need those
//! checks around it; the format is small enough to read directly.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};

use super::dtype::{Dtype, GgmlType, SizeError};
use super::{FileFormat, Inventory, InventoryErrorKind as Kind, Tensor, check_overlaps, shape_text};

const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are refused rather than recursed into.
const MAX_ARRAY_DEPTH: u32 = 8;
/// Metadata strings longer than this are summarised, not kept.
const MAX_KEPT_STRING: u64 = 256;

struct Reader {
    inner: BufReader<File>,
    pos: u64,
    size: u64,
}

impl Reader {
    fn remaining(&self) -> u64 {
        self.size.saturating_sub(self.pos)
    }

    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), Kind> {
        let n = buf.len() as u64;
        if n > self.remaining() {
            return Err(Kind::UnexpectedEnd { what, at: self.size });
        }
        self.inner.read_exact(buf).map_err(|e| Kind::Io { message: e.to_string() })?;
        self.pos += n;
        Ok(())
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Kind> {
        let mut b = [0u8; 4];
        self.fill(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, Kind> {
        let mut b = [0u8; 8];
        self.fill(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    fn skip(&mut self, n: u64, what: &'static str) -> Result<(), Kind> {
        if n > self.remaining() {
            return Err(Kind::UnexpectedEnd { what, at: self.size });
        }
        let n_i64 = i64::try_from(n).map_err(|_| Kind::UnexpectedEnd { what, at: self.size })?;
        self.inner.seek_relative(n_i64).map_err(|e| Kind::Io { message: e.to_string() })?;
        self.pos += n;
        Ok(())
    }

    /// A length-prefixed string; its length is checked against the file before reading.
    fn string(&mut self, what: &'static str) -> Result<String, Kind> {
        let at = self.pos;
        let length = self.u64(what)?;
        if length > self.remaining() {
            return Err(Kind::StringBeyondFile { length, at });
        }
        let mut buf = vec![0u8; usize::try_from(length).map_err(|_| Kind::StringBeyondFile { length, at })?];
        self.fill(&mut buf, what)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// A string that is kept only when short.
    fn string_summary(&mut self, what: &'static str) -> Result<String, Kind> {
        let at = self.pos;
        let length = self.u64(what)?;
        if length > self.remaining() {
            return Err(Kind::StringBeyondFile { length, at });
        }
        if length > MAX_KEPT_STRING {
            self.skip(length, what)?;
            return Ok(format!("<string of {length} bytes>"));
        }
        let mut buf = vec![0u8; usize::try_from(length).unwrap_or(0)];
        self.fill(&mut buf, what)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Refuses a count that the rest of the file could not hold at `each` bytes an item.
    fn bounded(&self, count: u64, each: u64, what: &'static str) -> Result<u64, Kind> {
        let limit = self.remaining() / each.max(1);
        if count > limit {
            return Err(Kind::TooMany { what, count, limit });
        }
        Ok(count)
    }
}

/// GGUF metadata value types.
fn fixed_size(value_type: u32) -> Option<u64> {
    match value_type {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

fn type_name(value_type: u32) -> &'static str {
    match value_type {
        0 => "u8",
        1 => "i8",
        2 => "u16",
        3 => "i16",
        4 => "u32",
        5 => "i32",
        6 => "f32",
        7 => "bool",
        8 => "string",
        9 => "array",
        10 => "u64",
        11 => "i64",
        12 => "f64",
        _ => "?",
    }
}

/// Reads one metadata value and returns how it is shown, plus its integer value when it has one.
fn value(r: &mut Reader, key: &str, value_type: u32, depth: u32) -> Result<(String, Option<u64>), Kind> {
    let bad = |message: String| Kind::BadMetadata { message };
    if let Some(size) = fixed_size(value_type) {
        let mut b = [0u8; 8];
        let slot = b.get_mut(..usize::try_from(size).unwrap_or(8)).unwrap_or_default();
        r.fill(slot, "a metadata value")?;
        let shown = match value_type {
            0 => (u64::from(b[0]).to_string(), Some(u64::from(b[0]))),
            1 => ((b[0] as i8).to_string(), None),
            2 => {
                let v = u16::from_le_bytes([b[0], b[1]]);
                (v.to_string(), Some(u64::from(v)))
            }
            3 => (i16::from_le_bytes([b[0], b[1]]).to_string(), None),
            4 => {
                let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                (v.to_string(), Some(u64::from(v)))
            }
            5 => (i32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_string(), None),
            6 => (f32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_string(), None),
            7 => ((b[0] != 0).to_string(), None),
            10 => {
                let v = u64::from_le_bytes(b);
                (v.to_string(), Some(v))
            }
            11 => (i64::from_le_bytes(b).to_string(), None),
            _ => (f64::from_le_bytes(b).to_string(), None),
        };
        return Ok(shown);
    }
    match value_type {
        8 => Ok((r.string_summary("a metadata string")?, None)),
        9 => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(bad(format!("key `{key}` nests arrays deeper than {MAX_ARRAY_DEPTH}")));
            }
            let element = r.u32("an array's element type")?;
            let count = r.u64("an array's length")?;
            match (fixed_size(element), element) {
                (Some(size), _) => {
                    let count = r.bounded(count, size, "array elements")?;
                    r.skip(count * size, "an array")?;
                }
                (None, 8) => {
                    let count = r.bounded(count, 8, "array elements")?;
                    for _ in 0..count {
                        let at = r.pos;
                        let length = r.u64("an array string")?;
                        if length > r.remaining() {
                            return Err(Kind::StringBeyondFile { length, at });
                        }
                        r.skip(length, "an array string")?;
                    }
                }
                (None, 9) => {
                    let count = r.bounded(count, 12, "array elements")?;
                    for _ in 0..count {
                        value(r, key, 9, depth + 1)?;
                    }
                }
                (None, other) => {
                    return Err(bad(format!("key `{key}` has arrays of unknown type {other}")));
                }
            }
            Ok((format!("[{}; {count}]", type_name(element)), None))
        }
        other => Err(bad(format!("key `{key}` has unknown value type {other}"))),
    }
}

pub(super) fn read(file: File, size: u64) -> Result<Inventory, Kind> {
    let mut r = Reader { inner: BufReader::with_capacity(1 << 16, file), pos: 0, size };
    if size < 24 {
        return Err(Kind::Truncated { format: "GGUF", size });
    }
    let mut magic = [0u8; 4];
    r.fill(&mut magic, "the magic")?;
    if &magic != b"GGUF" {
        let shown: Vec<String> = magic.iter().map(|b| format!("{b:02x}")).collect();
        return Err(Kind::UnknownFormat { start: format!("bytes {}", shown.join(" ")) });
    }
    let version = r.u32("the version")?;
    if matches!(version.swap_bytes(), 2 | 3) {
        return Err(Kind::BigEndianGguf);
    }
    if !(version == 2 || version == 3) {
        return Err(Kind::GgufVersion { version });
    }
    // Each tensor info takes at least 24 bytes (name length, dims, type, offset); each key-value 12.
    let tensor_count = r.u64("the tensor count")?;
    let kv_count = r.u64("the metadata count")?;
    let tensor_count = r.bounded(tensor_count, 24, "tensors")?;
    let kv_count = r.bounded(kv_count, 12, "metadata keys")?;

    let mut metadata = Vec::new();
    let mut alignment = DEFAULT_ALIGNMENT;
    for _ in 0..kv_count {
        let key = r.string("a metadata key")?;
        let value_type = r.u32("a metadata type")?;
        let (shown, integer) = value(&mut r, &key, value_type, 0)?;
        if key == "general.alignment" {
            alignment = integer.filter(|a| a.is_power_of_two()).ok_or_else(|| Kind::BadMetadata {
                message: format!("`general.alignment` is `{shown}`, not a power of two"),
            })?;
        }
        metadata.push((key, shown));
    }

    let mut infos = Vec::new();
    let mut names = HashSet::new();
    for _ in 0..tensor_count {
        let name = r.string("a tensor name")?;
        let dims = r.u32("a tensor's dimension count")?;
        if dims > MAX_DIMS {
            return Err(Kind::TooManyDims { tensor: name, dims });
        }
        let mut shape = Vec::with_capacity(dims as usize);
        for _ in 0..dims {
            shape.push(r.u64("a tensor dimension")?);
        }
        shape.reverse();
        let type_id = r.u32("a tensor type")?;
        let offset = r.u64("a tensor offset")?;
        let ggml =
            GgmlType::from_id(type_id).ok_or_else(|| Kind::UnknownGgmlType { tensor: name.clone(), id: type_id })?;
        if !names.insert(name.clone()) {
            return Err(Kind::DuplicateTensor { tensor: name });
        }
        infos.push((name, shape, ggml, offset));
    }
    let data_start = r.pos.div_ceil(alignment).saturating_mul(alignment);
    let available = size.saturating_sub(data_start);
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, shape, ggml, offset) in infos {
        let dtype = Dtype::Ggml(ggml);
        let bytes = dtype.bytes_for(&shape).map_err(|e| match e {
            SizeError::Overflow => Kind::ShapeOverflow { tensor: name.clone(), shape: shape_text(&shape) },
            SizeError::NotWhole { unit } => {
                Kind::NotWhole { tensor: name.clone(), dtype: ggml.name.to_owned(), shape: shape_text(&shape), unit }
            }
        })?;
        if offset % alignment != 0 {
            return Err(Kind::Misaligned { tensor: name, offset, alignment });
        }
        let end = offset.checked_add(bytes).filter(|end| *end <= available);
        let Some(_) = end else {
            return Err(Kind::OutOfBounds { tensor: name, end: offset.saturating_add(bytes), available });
        };
        tensors.push(Tensor { name, dtype, shape, offset: data_start + offset, bytes });
    }
    tensors.sort_by(|a, b| (a.offset, a.bytes, &a.name).cmp(&(b.offset, b.bytes, &b.name)));
    check_overlaps(&tensors)?;
    Ok(Inventory {
        path: Default::default(),
        format: FileFormat::Gguf,
        version: Some(version),
        file_size: size,
        header_size: data_start,
        metadata,
        tensors,
    })
}
