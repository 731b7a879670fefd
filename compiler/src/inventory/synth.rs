//! Header-only model files: a valid safetensors header for a tensor inventory, with the data
//! region left as a sparse hole, so a "23 GB" model costs a few hundred KB of disk. mgc reads
//! only headers, so to the compiler such a file is the real model.

use std::collections::BTreeMap;
use std::io::{Read as _, Write};
use std::path::Path;

use serde::Deserialize;

use super::dtype::{Dtype, PlainType};
use super::shape_text;

/// A tensor inventory: the models in `tests/fixtures/models/*.json`.
#[derive(Clone, Debug, Deserialize)]
pub struct InventoryFixture {
    pub model: String,
    /// The key prefix the model's tensors carry in its published file.
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// `[key, shape, dtype]` in the order the inventory lists them.
    pub tensors: Vec<(String, Vec<u64>, String)>,
    #[serde(default)]
    pub data_bytes: Option<u64>,
}

/// Why an inventory cannot become a file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    #[error("tensor `{0}` has unknown dtype `{1}`")]
    UnknownDtype(String, String),
    #[error("tensor `{0}` has shape {1}, too large")]
    Overflow(String, String),
    #[error("cannot write the model: {0}")]
    Write(#[from] mgc_core::WriteError),
}

/// How the data region of a synthesised file is filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// A sparse hole: the file costs only its header on disk.
    Hole,
    /// Real values, uniform in ±0.05, from a seeded generator: a small model that computes.
    Random { seed: u64 },
}

/// Writes a header-only safetensors file for `fixture`, keys prefixed with `prefix`, tensors in
/// the order the safetensors serializer writes them (dtype descending, then key). Returns the
/// file's logical size. Written as [`mgc_core::Output`] says: a new or regular file appears whole or not at all.
pub fn write_header_only(fixture: &InventoryFixture, prefix: &str, out: &Path) -> Result<u64, SynthError> {
    write_model(fixture, prefix, out, Fill::Hole)
}

/// Writes a safetensors file for `fixture`, its data filled as `fill` says.
pub fn write_model(fixture: &InventoryFixture, prefix: &str, out: &Path, fill: Fill) -> Result<u64, SynthError> {
    let rank = |dtype: PlainType| PlainType::ALL.iter().position(|(t, _)| *t == dtype).unwrap_or(0);
    let mut tensors = Vec::with_capacity(fixture.tensors.len());
    for (key, shape, dtype_name) in &fixture.tensors {
        let dtype = PlainType::from_name(dtype_name)
            .ok_or_else(|| SynthError::UnknownDtype(key.clone(), dtype_name.clone()))?;
        let bytes =
            Dtype::Plain(dtype).bytes_for(shape).map_err(|_| SynthError::Overflow(key.clone(), shape_text(shape)))?;
        tensors.push((format!("{prefix}{key}"), shape, dtype, bytes));
    }
    tensors.sort_by(|a, b| rank(b.2).cmp(&rank(a.2)).then_with(|| a.0.as_bytes().cmp(b.0.as_bytes())));

    let mut header = String::from("{");
    if let Some(metadata) = fixture.metadata.as_ref().filter(|m| !m.is_empty()) {
        header.push_str(&format!("\"__metadata__\":{}", serde_json::to_string(metadata).unwrap_or_default()));
    }
    let mut offset: u64 = 0;
    for (name, shape, dtype, bytes) in &tensors {
        if header.len() > 1 {
            header.push(',');
        }
        let end = offset.checked_add(*bytes).ok_or_else(|| SynthError::Overflow(name.clone(), shape_text(shape)))?;
        header.push_str(&format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":{},\"data_offsets\":[{offset},{end}]}}",
            serde_json::to_string(name).unwrap_or_default(),
            dtype.name(),
            serde_json::to_string(shape).unwrap_or_default(),
        ));
        offset = end;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let total = 8 + header.len() as u64 + offset;
    mgc_core::Output::for_path(out)?.write_file("model", |file| {
        file.write_all(&(header.len() as u64).to_le_bytes())?;
        file.write_all(header.as_bytes())?;
        match fill {
            Fill::Hole if file.metadata()?.is_file() => file.set_len(total),
            // A device or a FIFO has no length to set: the hole is written out.
            Fill::Hole => std::io::copy(&mut std::io::repeat(0).take(offset), file).map(drop),
            Fill::Random { seed } => {
                let mut writer = std::io::BufWriter::new(file);
                let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                for (_, _, dtype, bytes) in &tensors {
                    write_values(&mut writer, *dtype, *bytes, &mut state)?;
                }
                writer.flush()
            }
        }
    })?;
    Ok(total)
}

/// `bytes` of values of `dtype`, uniform in ±0.05 for floats, zero for the rest.
fn write_values(out: &mut impl Write, dtype: PlainType, bytes: u64, state: &mut u64) -> std::io::Result<()> {
    let mut next = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        // 24 random bits to a float in [-0.05, 0.05).
        ((*state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
    };
    let mut written = 0u64;
    let mut chunk = Vec::with_capacity(1 << 16);
    while written < bytes {
        chunk.clear();
        while chunk.len() < (1 << 16) && written + (chunk.len() as u64) < bytes {
            match dtype {
                PlainType::F32 => chunk.extend_from_slice(&next().to_le_bytes()),
                PlainType::Bf16 => chunk.extend_from_slice(&((next().to_bits() >> 16) as u16).to_le_bytes()),
                PlainType::F16 => chunk.extend_from_slice(&f16_bits(next()).to_le_bytes()),
                _ => chunk.push(0),
            }
        }
        let take = usize::try_from((bytes - written).min(chunk.len() as u64)).unwrap_or(0);
        out.write_all(chunk.get(..take).unwrap_or_default())?;
        written += take as u64;
    }
    Ok(())
}

/// IEEE half-precision bits of a small float (no infinities or NaNs arise here).
fn f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mantissa = bits & 0x7f_ffff;
    if exp <= 0 {
        if exp < -10 {
            return sign;
        }
        let m = (mantissa | 0x80_0000) >> (1 - exp + 13);
        return sign | m as u16;
    }
    sign | ((exp as u16) << 10) | (mantissa >> 13) as u16
}
