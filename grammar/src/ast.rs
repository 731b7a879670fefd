//! The typed allocation: what a string means, every part with its span.

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use mgc_core::{Bytes, Decimal, Device, Span, Spanned};

/// The kind of amount a string uses; one string uses one kind (`*` goes with any).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `cuda:0,8gb`: exact bytes of the model on the device.
    Bytes,
    /// `cuda:0,25%`: a share of the model.
    Ratio,
    /// `cuda:0,0.5`: a fraction of the device's memory.
    Fraction,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bytes => "bytes",
            Self::Ratio => "shares (%)",
            Self::Fraction => "fractions",
        })
    }
}

/// Where an entry puts its amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Device(Device),
    /// The model's compute device, whichever it is: the meaning of a bare `0.8`.
    Compute,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(device) => device.fmt(f),
            Self::Compute => f.write_str("compute"),
        }
    }
}

/// How much of the model an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amount {
    Bytes(Bytes),
    /// Percent of the model, `0 < p <= 100`.
    Percent(Decimal),
    /// Fraction of the device's memory, `0 < f <= 1`.
    Fraction(Decimal),
    /// `*`: whatever the other entries leave.
    Rest,
}

impl Amount {
    pub const fn mode(self) -> Option<Mode> {
        match self {
            Self::Bytes(_) => Some(Mode::Bytes),
            Self::Percent(_) => Some(Mode::Ratio),
            Self::Fraction(_) => Some(Mode::Fraction),
            Self::Rest => None,
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(bytes) => f.write_str(&bytes.to_allocation_text()),
            Self::Percent(p) => write!(f, "{p}%"),
            Self::Fraction(x) => write!(f, "{x}"),
            Self::Rest => f.write_str("*"),
        }
    }
}

/// One `device,amount` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub target: Spanned<Target>,
    pub amount: Spanned<Amount>,
    /// The whole entry.
    pub span: Span,
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("device", &self.target.value.to_string())?;
        match self.amount.value {
            Amount::Bytes(bytes) => map.serialize_entry("bytes", &bytes)?,
            Amount::Percent(p) => map.serialize_entry("percent", &p)?,
            Amount::Fraction(x) => map.serialize_entry("fraction", &x)?,
            Amount::Rest => map.serialize_entry("rest", &true)?,
        }
        map.end()
    }
}

/// A parsed allocation string, in the user's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Allocation {
    pub mode: Mode,
    /// Written as a bare fraction (`0.8`): the compute device's share, the rest on `cpu`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bare: bool,
    pub entries: Vec<Entry>,
}

impl Allocation {
    /// The device that takes what the other entries leave, if any.
    pub fn rest(&self) -> Option<&Entry> {
        self.entries.iter().find(|e| e.amount.value == Amount::Rest)
    }

    /// The devices named, in the user's order.
    pub fn devices(&self) -> impl Iterator<Item = Spanned<Device>> + '_ {
        self.entries.iter().filter_map(|e| match e.target.value {
            Target::Device(device) => Some(Spanned::new(device, e.target.span)),
            Target::Compute => None,
        })
    }

    /// Whether two allocations mean the same, wherever they were written.
    pub fn same_meaning(&self, other: &Self) -> bool {
        self.mode == other.mode
            && self.bare == other.bare
            && self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|(a, b)| a.target.value == b.target.value && a.amount.value == b.amount.value)
    }
}

impl fmt::Display for Allocation {
    /// The canonical spelling, which parses back to the same meaning.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (true, Some(entry)) = (self.bare, self.entries.first()) {
            return entry.amount.value.fmt(f);
        }
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{},{}", entry.target.value, entry.amount.value)?;
        }
        Ok(())
    }
}
