//! Typed units: bytes, exact decimals, bandwidths. A user's string becomes one of these only in
//! the grammar (`mgc-grammar`); here they are defined, printed and compared.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// A non-negative decimal number exactly as written: `mantissa / 10^scale`.
///
/// Shares and fractions stay decimal so that `33.3%` means exactly that and sums are exact.
#[derive(Clone, Copy, Debug)]
pub struct Decimal {
    mantissa: u64,
    scale: u32,
}

/// More fractional digits than this cannot change a byte count of any real device.
const MAX_SCALE: u32 = 18;

impl Decimal {
    pub const fn new(mantissa: u64, scale: u32) -> Self {
        Self { mantissa, scale }
    }

    pub const fn from_int(value: u64) -> Self {
        Self { mantissa: value, scale: 0 }
    }

    /// Reads unsigned `12`, `1.5`, `.5`, `1.`; `None` when its integer part does not fit `u64`.
    pub fn parse(text: &str) -> Option<Self> {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut mantissa: u64 = 0;
        for b in int.bytes() {
            mantissa = mantissa.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        // Fractional digits past what `MAX_SCALE` or the mantissa holds are dropped: the value
        // moves by less than 10^-18 of its unit, no byte of any device (a slider's `3.3000000000000003`).
        let mut scale = 0;
        for b in frac.trim_end_matches('0').bytes().take(MAX_SCALE as usize) {
            let Some(next) = mantissa.checked_mul(10).and_then(|m| m.checked_add(u64::from(b - b'0'))) else {
                break;
            };
            mantissa = next;
            scale += 1;
        }
        Some(Self { mantissa, scale })
    }

    pub const fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// `floor(self * factor)`, or `None` past `u64`.
    pub fn times_floor(self, factor: u64) -> Option<u64> {
        let product = u128::from(self.mantissa).checked_mul(u128::from(factor))?;
        u64::try_from(product / 10u128.pow(self.scale)).ok()
    }

    /// `floor(total * self / whole)`: this part's bytes when parts are read against `whole`, as
    /// ratios are; `None` past `u128` or when `whole` is zero.
    pub fn part_of_floor(self, total: u64, whole: Self) -> Option<u64> {
        let scale = self.scale.max(whole.scale);
        let part = u128::from(self.mantissa).checked_mul(10u128.checked_pow(scale - self.scale)?)?;
        let whole = u128::from(whole.mantissa).checked_mul(10u128.checked_pow(scale - whole.scale)?)?;
        let product = part.checked_mul(u128::from(total))?;
        u64::try_from(product.checked_div(whole)?).ok()
    }

    pub fn to_f64(self) -> f64 {
        // Display is exact and `f64::from_str` rounds correctly.
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    /// The exact sum, or `None` on overflow.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        let scale = self.scale.max(other.scale);
        let a = self.mantissa.checked_mul(10u64.checked_pow(scale - self.scale)?)?;
        let b = other.mantissa.checked_mul(10u64.checked_pow(scale - other.scale)?)?;
        Some(Self { mantissa: a.checked_add(b)?, scale })
    }

    fn widened(self, scale: u32) -> u128 {
        u128::from(self.mantissa) * 10u128.pow(scale - self.scale)
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let scale = self.scale.max(other.scale);
        self.widened(scale).cmp(&other.widened(scale))
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.to_string();
        let scale = self.scale as usize;
        if scale == 0 {
            return f.write_str(&digits);
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() { write!(f, "{int}") } else { write!(f, "{int}.{frac}") }
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.to_f64())
    }
}

/// A number of bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bytes(pub u64);

impl Bytes {
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The shortest exact spelling in the allocation language: `2560mb`, `3gb`, `1000b`.
    pub fn to_allocation_text(self) -> String {
        for unit in [ByteUnit::Tib, ByteUnit::Gib, ByteUnit::Mib, ByteUnit::Kib] {
            let size = unit.bytes();
            if self.0 != 0 && self.0.is_multiple_of(size) {
                return format!("{}{}", self.0 / size, unit.short());
            }
        }
        format!("{}b", self.0)
    }
}

impl fmt::Display for Bytes {
    /// Human form with binary units: `23.80 GB` is never written; `22.17 GiB` is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (name, size) in units {
            if self.0 >= size {
                #[expect(clippy::cast_precision_loss, reason = "a human-readable figure")]
                let value = self.0 as f64 / size as f64;
                return write!(f, "{value:.2} {name}");
            }
        }
        write!(f, "{} B", self.0)
    }
}

/// A unit of bytes. Binary, case-insensitive, as DisTorch reads them: `gb` is 2^30 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteUnit {
    B,
    Kib,
    Mib,
    Gib,
    Tib,
}

impl ByteUnit {
    pub const ALL_SPELLINGS: [&'static str; 13] =
        ["b", "k", "kb", "kib", "m", "mb", "mib", "g", "gb", "gib", "t", "tb", "tib"];

    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "b" => Some(Self::B),
            "k" | "kb" | "kib" => Some(Self::Kib),
            "m" | "mb" | "mib" => Some(Self::Mib),
            "g" | "gb" | "gib" => Some(Self::Gib),
            "t" | "tb" | "tib" => Some(Self::Tib),
            _ => None,
        }
    }

    pub const fn bytes(self) -> u64 {
        match self {
            Self::B => 1,
            Self::Kib => 1 << 10,
            Self::Mib => 1 << 20,
            Self::Gib => 1 << 30,
            Self::Tib => 1 << 40,
        }
    }

    pub const fn short(self) -> &'static str {
        match self {
            Self::B => "b",
            Self::Kib => "kb",
            Self::Mib => "mb",
            Self::Gib => "gb",
            Self::Tib => "tb",
        }
    }
}

/// A transfer rate in bytes per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bandwidth(pub u64);

impl Bandwidth {
    pub const fn bytes_per_second(self) -> u64 {
        self.0
    }

    /// Decimal gigabytes per second, as bandwidths are quoted.
    #[expect(clippy::cast_precision_loss, reason = "a human-readable figure")]
    pub fn gb_per_second(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} GB/s", self.gb_per_second())
    }
}
