//! Devices: what holds or computes a model's layers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A device that can hold or compute a model's layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Device {
    Cpu,
    Cuda(u32),
    Mps,
    Xpu(u32),
    Npu(u32),
    Hip(u32),
    DirectMl(u32),
    /// The model file itself: layers streamed from disk every step.
    Disk,
}

/// The family of a [`Device`], without its ordinal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Cuda,
    Mps,
    Xpu,
    Npu,
    Hip,
    DirectMl,
    Disk,
}

impl DeviceKind {
    pub const ALL: [Self; 8] =
        [Self::Cpu, Self::Cuda, Self::Mps, Self::Xpu, Self::Npu, Self::Hip, Self::DirectMl, Self::Disk];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Mps => "mps",
            Self::Xpu => "xpu",
            Self::Npu => "npu",
            Self::Hip => "hip",
            Self::DirectMl => "directml",
            Self::Disk => "disk",
        }
    }

    /// Whether the device is numbered (`cuda:0`) or single (`cpu`).
    pub const fn has_ordinal(self) -> bool {
        !matches!(self, Self::Cpu | Self::Mps | Self::Disk)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The canonical way to write a device of this kind, for hints: `cuda:0`, `cpu`.
    pub fn example(self) -> String {
        if self.has_ordinal() { format!("{}:0", self.name()) } else { self.name().to_owned() }
    }

    pub const fn with_ordinal(self, ordinal: u32) -> Device {
        match self {
            Self::Cpu => Device::Cpu,
            Self::Cuda => Device::Cuda(ordinal),
            Self::Mps => Device::Mps,
            Self::Xpu => Device::Xpu(ordinal),
            Self::Npu => Device::Npu(ordinal),
            Self::Hip => Device::Hip(ordinal),
            Self::DirectMl => Device::DirectMl(ordinal),
            Self::Disk => Device::Disk,
        }
    }
}

impl Device {
    pub const fn kind(self) -> DeviceKind {
        match self {
            Self::Cpu => DeviceKind::Cpu,
            Self::Cuda(_) => DeviceKind::Cuda,
            Self::Mps => DeviceKind::Mps,
            Self::Xpu(_) => DeviceKind::Xpu,
            Self::Npu(_) => DeviceKind::Npu,
            Self::Hip(_) => DeviceKind::Hip,
            Self::DirectMl(_) => DeviceKind::DirectMl,
            Self::Disk => DeviceKind::Disk,
        }
    }

    pub const fn ordinal(self) -> Option<u32> {
        match self {
            Self::Cuda(n) | Self::Xpu(n) | Self::Npu(n) | Self::Hip(n) | Self::DirectMl(n) => Some(n),
            Self::Cpu | Self::Mps | Self::Disk => None,
        }
    }

    /// Whether the device is an accelerator with memory of its own.
    pub const fn is_accelerator(self) -> bool {
        !matches!(self, Self::Cpu | Self::Disk)
    }
}

/// Honours width and alignment (`{:<8}`), for tables.
impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ordinal() {
            Some(n) => f.pad(&format!("{}:{n}", self.kind().name())),
            None => f.pad(self.kind().name()),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A device name that is not in its canonical form (`cpu`, `cuda:0`, `disk`, ...).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a device (write `cpu`, `cuda:0`, `disk`, ...)")]
pub struct NotADevice(pub String);

impl FromStr for Device {
    type Err = NotADevice;

    /// Reads exactly what [`Device`]'s `Display` writes: the canonical form in plans, profiles and
    /// other machine-written files. What users type goes through the grammar, which explains
    /// mistakes (`mgc_grammar::parse_device`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wrong = || NotADevice(text.to_owned());
        let (name, ordinal) = match text.split_once(':') {
            Some((name, digits)) => {
                let canonical = !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && (digits == "0" || !digits.starts_with('0'));
                (name, Some(digits.parse::<u32>().ok().filter(|_| canonical).ok_or_else(wrong)?))
            }
            None => (text, None),
        };
        let kind = DeviceKind::from_name(name).ok_or_else(wrong)?;
        match (kind.has_ordinal(), ordinal) {
            (true, Some(n)) => Ok(kind.with_ordinal(n)),
            (false, None) => Ok(kind.with_ordinal(0)),
            _ => Err(wrong()),
        }
    }
}

/// In a JSON Schema a device is a string of its canonical form, as it is serialized.
#[cfg(feature = "schemars")]
impl schemars::JsonSchema for Device {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Device".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": Device::pattern() })
    }
}

impl Device {
    /// A regular expression for the canonical form: `^(cpu|mps|disk|(cuda|xpu|...):(0|[1-9][0-9]*))$`.
    pub fn pattern() -> String {
        let names = |numbered: bool| {
            DeviceKind::ALL
                .into_iter()
                .filter(|k| k.has_ordinal() == numbered)
                .map(DeviceKind::name)
                .collect::<Vec<_>>()
                .join("|")
        };
        format!("^({}|({}):(0|[1-9][0-9]*))$", names(false), names(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_round_trip() {
        for kind in DeviceKind::ALL {
            for device in [kind.with_ordinal(0), kind.with_ordinal(12)] {
                assert_eq!(device.to_string().parse::<Device>(), Ok(device));
            }
        }
    }

    #[test]
    fn tables_can_pad_devices() {
        assert_eq!(format!("[{:<8}][{:>4}]", Device::Cuda(1), Device::Cpu), "[cuda:1  ][ cpu]");
    }

    #[test]
    fn the_pattern_names_every_kind() {
        assert_eq!(Device::pattern(), "^(cpu|mps|disk|(cuda|xpu|npu|hip|directml):(0|[1-9][0-9]*))$");
    }

    #[test]
    fn other_spellings_are_not_devices() {
        for text in ["", "gpu", "cuda", "cuda:", "cuda:01", "cuda:-1", "cpu:0", "CUDA:0", " cpu", "cuda:99999999999"] {
            assert!(text.parse::<Device>().is_err(), "{text}");
        }
    }
}
