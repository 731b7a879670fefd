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
    /// `#cuda:0;4.0;cpu`: bytes moved off the compute device onto donors, in order.
    #[serde(rename = "virtual_vram")]
    VirtualVram,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bytes => "bytes",
            Self::Ratio => "shares (%)",
            Self::Fraction => "fractions",
            Self::VirtualVram => "virtual vram",
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
    /// `cpu,5gb*`: the amount written before the `*`, which DisTorch does not use either.
    pub unused: Option<Spanned<Amount>>,
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
        if let Some(unused) = &self.unused {
            map.serialize_entry("unused", &unused.value.to_string())?;
        }
        map.end()
    }
}

/// `#cuda:1;8.0;cuda:0,cpu`: DisTorch's virtual VRAM. The donors hold `amount` of the model
/// between them, filled in order; the compute device keeps the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualVram {
    pub amount: Spanned<Bytes>,
    pub donors: Vec<Spanned<Device>>,
}

impl Serialize for VirtualVram {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("bytes", &self.amount.value)?;
        let donors: Vec<String> = self.donors.iter().map(|d| d.value.to_string()).collect();
        map.serialize_entry("donors", &donors)?;
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
    /// Empty in virtual VRAM mode, where `virtual_vram` says everything.
    pub entries: Vec<Entry>,
    /// `…#cuda:0`: the compute device a DisTorch full string names; it must be the model's.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_device")]
    pub compute: Option<Spanned<Device>>,
    /// Set exactly in virtual VRAM mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_vram: Option<VirtualVram>,
    /// `entries#cuda:0;4.0;cpu`: a virtual VRAM part that the entries before `#` override, as in
    /// DisTorch; where it was written.
    #[serde(skip)]
    pub ignored_virtual_vram: Option<Span>,
}

#[expect(clippy::ref_option, reason = "the signature serde's `serialize_with` calls")]
fn serialize_device<S: Serializer>(device: &Option<Spanned<Device>>, serializer: S) -> Result<S::Ok, S::Error> {
    match device {
        Some(device) => serializer.collect_str(&device.value),
        None => serializer.serialize_none(),
    }
}

/// Something `mgc check` tells about how a string was read, though nothing is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub span: Span,
}

impl Allocation {
    /// The device that takes what the other entries leave, if any.
    pub fn rest(&self) -> Option<&Entry> {
        self.entries.iter().find(|e| e.amount.value == Amount::Rest)
    }

    /// The devices named, in the user's order: entries, then the compute device and donors of a
    /// full string.
    pub fn devices(&self) -> impl Iterator<Item = Spanned<Device>> + '_ {
        let entries = self.entries.iter().filter_map(|e| match e.target.value {
            Target::Device(device) => Some(Spanned::new(device, e.target.span)),
            Target::Compute => None,
        });
        let donors = self.virtual_vram.iter().flat_map(|v| v.donors.iter().cloned());
        entries.chain(self.compute.clone()).chain(donors)
    }

    /// The shares of a ratio string without `*` add up to this, and each is read as a part of it
    /// (`8%;8%;4%` is 8:8:4); `None` when the shares are plain percents of the model.
    pub fn ratio_sum(&self) -> Option<Decimal> {
        if self.mode != Mode::Ratio || self.rest().is_some() {
            return None;
        }
        self.entries
            .iter()
            .filter_map(|e| match e.amount.value {
                Amount::Percent(p) => Some(p),
                _ => None,
            })
            .try_fold(Decimal::from_int(0), Decimal::checked_add)
            .filter(|sum| *sum != Decimal::from_int(100) && !sum.is_zero())
    }

    /// How the string was read where a reader could be surprised: ratios normalised, an amount
    /// before `*` not used, a virtual VRAM part overridden.
    pub fn notes(&self) -> Vec<Note> {
        let mut notes = Vec::new();
        if let (Some(sum), Some(first), Some(last)) = (self.ratio_sum(), self.entries.first(), self.entries.last()) {
            let parts: Vec<String> = self.entries.iter().map(|e| e.amount.value.to_string()).collect();
            let ratio = parts.iter().map(|p| p.trim_end_matches('%')).collect::<Vec<_>>().join(":");
            let shares: Vec<String> = self
                .entries
                .iter()
                .filter_map(|e| match e.amount.value {
                    Amount::Percent(p) => Some(format!("{}%", percent_text(p.to_f64() * 100.0 / sum.to_f64()))),
                    _ => None,
                })
                .collect();
            notes.push(Note {
                text: format!("shares add up to {sum}%: read as {ratio} → {}", shares.join(" / ")),
                span: Span::new(first.span.start, last.span.end),
            });
        }
        for entry in &self.entries {
            if let Some(unused) = &entry.unused {
                notes.push(Note {
                    text: format!(
                        "`{}` before `*` is not used: `{}` takes the rest of the model",
                        unused.value, entry.target.value
                    ),
                    span: unused.span,
                });
            }
        }
        if let Some(span) = self.ignored_virtual_vram {
            notes.push(Note {
                text: "the virtual vram after the compute device is not used: the entries before `#` decide".into(),
                span,
            });
        }
        notes
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
            && self.compute.as_ref().map(|c| c.value) == other.compute.as_ref().map(|c| c.value)
            && match (&self.virtual_vram, &other.virtual_vram) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    a.amount.value == b.amount.value
                        && a.donors.iter().map(|d| d.value).eq(b.donors.iter().map(|d| d.value))
                }
                _ => false,
            }
    }
}

/// A percentage with at most two decimals, without trailing zeros: `40`, `33.33`.
fn percent_text(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
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
        if let Some(compute) = &self.compute {
            write!(f, "#{}", compute.value)?;
        }
        if let Some(virtual_vram) = &self.virtual_vram {
            write!(f, ";{};", virtual_vram.amount.value.to_allocation_text())?;
            for (i, donor) in virtual_vram.donors.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                donor.value.fmt(f)?;
            }
        }
        Ok(())
    }
}
