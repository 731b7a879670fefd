//! Element types of model files and their byte sizes: safetensors dtypes and ggml block types.

use std::fmt;

use serde::{Serialize, Serializer};

/// A safetensors dtype: a plain element type, its size in bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlainType {
    Bool,
    F4,
    F6E2M3,
    F6E3M2,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    F8E8M0,
    I16,
    U16,
    F16,
    Bf16,
    I32,
    U32,
    F32,
    C64,
    F64,
    I64,
    U64,
}

impl PlainType {
    /// Every dtype of the safetensors format, with the name it has in a header.
    pub const ALL: [(Self, &'static str); 20] = [
        (Self::Bool, "BOOL"),
        (Self::F4, "F4"),
        (Self::F6E2M3, "F6_E2M3"),
        (Self::F6E3M2, "F6_E3M2"),
        (Self::U8, "U8"),
        (Self::I8, "I8"),
        (Self::F8E5M2, "F8_E5M2"),
        (Self::F8E4M3, "F8_E4M3"),
        (Self::F8E8M0, "F8_E8M0"),
        (Self::I16, "I16"),
        (Self::U16, "U16"),
        (Self::F16, "F16"),
        (Self::Bf16, "BF16"),
        (Self::I32, "I32"),
        (Self::U32, "U32"),
        (Self::F32, "F32"),
        (Self::C64, "C64"),
        (Self::F64, "F64"),
        (Self::I64, "I64"),
        (Self::U64, "U64"),
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(t, _)| *t)
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(t, _)| *t == self).map_or("?", |(_, n)| n)
    }

    pub const fn bits(self) -> u64 {
        match self {
            Self::F4 => 4,
            Self::F6E2M3 | Self::F6E3M2 => 6,
            Self::Bool | Self::U8 | Self::I8 | Self::F8E5M2 | Self::F8E4M3 | Self::F8E8M0 => 8,
            Self::I16 | Self::U16 | Self::F16 | Self::Bf16 => 16,
            Self::I32 | Self::U32 | Self::F32 => 32,
            Self::C64 | Self::F64 | Self::I64 | Self::U64 => 64,
        }
    }
}

/// A ggml tensor type: elements stored in blocks of `block_size`, each `type_size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GgmlType {
    pub id: u32,
    pub name: &'static str,
    pub block_size: u64,
    pub type_size: u64,
}

const QK_K: u64 = 256;

/// Every ggml type in current use, from ggml's block layouts. Ids 4, 5 (Q4_2, Q4_3) and 31–33,
/// 36–38 (the repacked Q4_0_N_M and IQ4_NL_N_M) were removed from ggml and are refused.
pub const GGML_TYPES: [GgmlType; 34] = [
    ggml(0, "F32", 1, 4),
    ggml(1, "F16", 1, 2),
    ggml(2, "Q4_0", 32, 2 + 16),
    ggml(3, "Q4_1", 32, 2 + 2 + 16),
    ggml(6, "Q5_0", 32, 2 + 4 + 16),
    ggml(7, "Q5_1", 32, 2 + 2 + 4 + 16),
    ggml(8, "Q8_0", 32, 2 + 32),
    ggml(9, "Q8_1", 32, 4 + 4 + 32),
    ggml(10, "Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4),
    ggml(11, "Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
    ggml(12, "Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12),
    ggml(13, "Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12),
    ggml(14, "Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16),
    ggml(15, "Q8_K", QK_K, 4 + QK_K + QK_K / 8),
    ggml(16, "IQ2_XXS", QK_K, 2 + QK_K / 4),
    ggml(17, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32),
    ggml(18, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8),
    ggml(19, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16),
    ggml(20, "IQ4_NL", 32, 2 + 16),
    ggml(21, "IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
    ggml(22, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16),
    ggml(23, "IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64),
    ggml(24, "I8", 1, 1),
    ggml(25, "I16", 1, 2),
    ggml(26, "I32", 1, 4),
    ggml(27, "I64", 1, 8),
    ggml(28, "F64", 1, 8),
    ggml(29, "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
    ggml(30, "BF16", 1, 2),
    ggml(34, "TQ1_0", QK_K, 2 + 4 * 13),
    ggml(35, "TQ2_0", QK_K, 2 + 64),
    ggml(39, "MXFP4", 32, 1 + 16),
    ggml(40, "NVFP4", 64, 4 + 32),
    ggml(41, "Q1_0", 128, 2 + 16),
];

const fn ggml(id: u32, name: &'static str, block_size: u64, type_size: u64) -> GgmlType {
    GgmlType { id, name, block_size, type_size }
}

impl GgmlType {
    pub fn from_id(id: u32) -> Option<Self> {
        GGML_TYPES.iter().find(|t| t.id == id).copied()
    }

    /// Whether the type is a quantized block type (not a plain float or integer).
    pub const fn is_quantized(self) -> bool {
        self.block_size > 1
    }
}

/// The element type of a tensor, from either format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dtype {
    Plain(PlainType),
    Ggml(GgmlType),
}

/// Why a tensor's byte size cannot be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeError {
    Overflow,
    /// Sub-byte types must fill whole bytes; ggml rows must be whole blocks.
    NotWhole {
        unit: u64,
    },
}

impl Dtype {
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain(t) => t.name(),
            Self::Ggml(t) => t.name,
        }
    }

    /// The bytes of a tensor of this type with `shape` (outermost dimension first), computed with
    /// checked arithmetic. `row` is the innermost dimension, which ggml blocks run along.
    pub fn bytes_for(self, shape: &[u64]) -> Result<u64, SizeError> {
        let elements = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).ok_or(SizeError::Overflow)?;
        match self {
            Self::Plain(t) => {
                let bits = elements.checked_mul(t.bits()).ok_or(SizeError::Overflow)?;
                if bits % 8 != 0 {
                    return Err(SizeError::NotWhole { unit: 8 / gcd(8, t.bits()) });
                }
                Ok(bits / 8)
            }
            Self::Ggml(t) => {
                let row = shape.last().copied().unwrap_or(1);
                if row % t.block_size != 0 {
                    return Err(SizeError::NotWhole { unit: t.block_size });
                }
                (elements / t.block_size).checked_mul(t.type_size).ok_or(SizeError::Overflow)
            }
        }
    }
}

const fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Dtype {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}
