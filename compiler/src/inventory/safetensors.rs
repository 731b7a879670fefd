//! The safetensors header: an 8-byte little-endian length, then that many bytes of JSON.
//!
//! The JSON is read with a visitor of our own rather than the `safetensors` crate's
//! `read_metadata`, which wants the whole file in memory: here only the header is read, its
//! size is checked against the file before anything is allocated, and each problem keeps the
//! name of the tensor it concerns.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

use super::dtype::{Dtype, PlainType, SizeError};
use super::{FileFormat, Inventory, InventoryErrorKind as Kind, Tensor, check_overlaps, shape_text};

/// The safetensors format's own limit on the header's size.
const MAX_HEADER: u64 = 100_000_000;

#[derive(Deserialize)]
struct RawTensor {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

pub(super) fn read(mut file: File, size: u64) -> Result<Inventory, Kind> {
    if size < 8 {
        return Err(Kind::Truncated { format: "safetensors", size });
    }
    let mut length = [0u8; 8];
    file.read_exact(&mut length).map_err(|e| Kind::Io { message: e.to_string() })?;
    let declared = u64::from_le_bytes(length);
    let available = size - 8;
    if declared > available {
        return Err(Kind::HeaderBeyondFile { declared, available });
    }
    if declared > MAX_HEADER {
        return Err(Kind::HeaderTooLarge { declared, limit: MAX_HEADER });
    }
    let mut header =
        vec![0u8; usize::try_from(declared).map_err(|_| Kind::HeaderTooLarge { declared, limit: MAX_HEADER })?];
    file.read_exact(&mut header).map_err(|e| Kind::Io { message: e.to_string() })?;
    let text = std::str::from_utf8(&header).map_err(|e| Kind::NotUtf8 { at: 8 + e.valid_up_to() })?;
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<de::IgnoredAny>(text) {
            Ok(_) => Kind::NotObject,
            Err(e) => Kind::NotJson { message: e.to_string() },
        });
    }
    let problem = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = HeaderSeed { problem: &problem }
        .deserialize(&mut deserializer)
        .and_then(|header| deserializer.end().map(|()| header));
    let (metadata, raw) = match parsed {
        Ok(header) => header,
        Err(e) => {
            return Err(problem.into_inner().unwrap_or(Kind::NotJson { message: e.to_string() }));
        }
    };

    let data_start = 8 + declared;
    let data_len = size - data_start;
    let mut tensors = Vec::with_capacity(raw.len());
    for (name, t) in raw {
        let dtype = PlainType::from_name(&t.dtype)
            .map(Dtype::Plain)
            .ok_or_else(|| Kind::UnknownDtype { tensor: name.clone(), dtype: t.dtype.clone() })?;
        let expected = dtype.bytes_for(&t.shape).map_err(|e| match e {
            SizeError::Overflow => Kind::ShapeOverflow { tensor: name.clone(), shape: shape_text(&t.shape) },
            SizeError::NotWhole { unit } => {
                Kind::NotWhole { tensor: name.clone(), dtype: t.dtype.clone(), shape: shape_text(&t.shape), unit }
            }
        })?;
        let (begin, end) = t.data_offsets;
        if end < begin {
            let message = format!("data_offsets [{begin}, {end}] end before they begin");
            return Err(Kind::BadTensor { tensor: name, message });
        }
        if end - begin != expected {
            let (dtype, shape) = (dtype.name().to_owned(), shape_text(&t.shape));
            return Err(Kind::SizeMismatch { tensor: name, dtype, shape, expected, actual: end - begin });
        }
        if end > data_len {
            return Err(Kind::OutOfBounds { tensor: name, end, available: data_len });
        }
        tensors.push(Tensor { name, dtype, shape: t.shape, offset: data_start + begin, bytes: expected });
    }
    tensors.sort_by(|a, b| (a.offset, a.bytes, &a.name).cmp(&(b.offset, b.bytes, &b.name)));
    check_overlaps(&tensors)?;
    Ok(Inventory {
        path: Default::default(),
        format: FileFormat::Safetensors,
        version: None,
        file_size: size,
        header_size: data_start,
        metadata,
        tensors,
    })
}

type Header = (Vec<(String, String)>, Vec<(String, RawTensor)>);

/// Reads the header object entry by entry, keeping the first problem with its tensor's name.
struct HeaderSeed<'a> {
    problem: &'a RefCell<Option<Kind>>,
}

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = Header;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Header, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of tensors")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let mut metadata = Vec::new();
        let mut tensors = Vec::new();
        let mut seen = HashSet::new();
        let fail = |kind: Kind| {
            let message = kind.to_string();
            *self.problem.borrow_mut() = Some(kind);
            de::Error::custom(message)
        };
        while let Some(key) = map.next_key::<String>()? {
            if key == "__metadata__" {
                let values: BTreeMap<String, String> = map.next_value().map_err(|e| {
                    fail(Kind::BadMetadata { message: format!("`__metadata__` must map strings to strings: {e}") })
                })?;
                metadata.extend(values);
                continue;
            }
            if !seen.insert(key.clone()) {
                return Err(fail(Kind::DuplicateTensor { tensor: key }));
            }
            match map.next_value::<RawTensor>() {
                Ok(tensor) => tensors.push((key, tensor)),
                Err(e) => {
                    return Err(fail(Kind::BadTensor { tensor: key, message: e.to_string() }));
                }
            }
        }
        Ok((metadata, tensors))
    }
}
