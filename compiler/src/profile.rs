//! Hardware profiles: measured link bandwidths, compute throughputs and disk read speed, in the
//! TOML format `mgc probe` writes. A workflow names one with `profile = "FILE"`; its figures
//! replace the defaults, and a workflow's own `[[link]]` and `tflops` replace the profile's.
//!
//! ```toml
//! [[device]]
//! name = "cuda:0"
//! flops_per_second = 1.5e14
//!
//! [[link]]
//! from = "cpu"
//! to = "cuda:0"
//! bytes_per_second = 2.5e10
//!
//! [disk]
//! read_bytes_per_second = 3.2e9
//! ```

use mgc_core::Device;
use mgc_grammar::{AllocationError, parse_device};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What is wrong with a hardware profile's text.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProfileError {
    #[error("{message}")]
    Toml { message: String },
    #[error("device `{name}`: {error}")]
    Device { name: String, error: AllocationError },
    #[error("link `{from}` -> `{to}`: {error}")]
    LinkEnd { from: String, to: String, error: AllocationError },
    #[error("{what} must be a positive number, not {value}")]
    NotPositive { what: String, value: String },
}

/// A hardware profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub device: Vec<ProfileDevice>,
    #[serde(default)]
    pub link: Vec<ProfileLink>,
    pub disk: Option<ProfileDisk>,
}

/// A device's measured throughput.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDevice {
    pub name: String,
    /// Matmul throughput at 16-bit weights, FLOP/s.
    pub flops_per_second: f64,
    /// The fixed cost of applying one weight tensor (launch, bookkeeping), seconds.
    #[serde(default)]
    pub seconds_per_tensor: Option<f64>,
    /// Elements a second through a norm or an elementwise op (the 1-D weights of a layer).
    #[serde(default)]
    pub elements_per_second: Option<f64>,
    /// Threads the figures were measured with (a CPU's cores).
    #[serde(default)]
    pub threads: Option<u32>,
    /// Matmul throughput by problem size: `[[n, flops_per_second], ...]` for n×n×n, n ascending.
    #[serde(default)]
    pub flops_by_size: Vec<(f64, f64)>,
}

/// A link's measured bandwidth, in the direction the bytes go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileLink {
    pub from: String,
    pub to: String,
    pub bytes_per_second: f64,
}

/// The model file's read speed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDisk {
    pub read_bytes_per_second: f64,
}

impl Profile {
    /// Reads a profile, checking every device name and figure.
    pub fn from_toml(text: &str) -> Result<Self, ProfileError> {
        let profile: Self =
            toml::from_str(text).map_err(|e| ProfileError::Toml { message: e.message().trim().to_owned() })?;
        let positive = |what: &str, x: f64| {
            if x.is_finite() && x > 0.0 {
                Ok(())
            } else {
                Err(ProfileError::NotPositive { what: what.to_owned(), value: x.to_string() })
            }
        };
        for d in &profile.device {
            parse_device(&d.name).map_err(|error| ProfileError::Device { name: d.name.clone(), error })?;
            positive(&format!("`flops_per_second` of `{}`", d.name), d.flops_per_second)?;
            if let Some(rate) = d.elements_per_second {
                positive(&format!("`elements_per_second` of `{}`", d.name), rate)?;
            }
            if let Some(overhead) = d.seconds_per_tensor {
                positive(&format!("`seconds_per_tensor` of `{}`", d.name), overhead)?;
            }
            for (size, flops) in &d.flops_by_size {
                positive(&format!("a size in `flops_by_size` of `{}`", d.name), *size)?;
                positive(&format!("a throughput in `flops_by_size` of `{}`", d.name), *flops)?;
            }
        }
        for l in &profile.link {
            for end in [&l.from, &l.to] {
                parse_device(end).map_err(|error| ProfileError::LinkEnd {
                    from: l.from.clone(),
                    to: l.to.clone(),
                    error,
                })?;
            }
            positive(&format!("`bytes_per_second` of `{}` -> `{}`", l.from, l.to), l.bytes_per_second)?;
        }
        if let Some(disk) = &profile.disk {
            positive("`read_bytes_per_second` of `disk`", disk.read_bytes_per_second)?;
        }
        Ok(profile)
    }

    /// The measured throughput curve of a device, sizes ascending.
    pub fn flops_by_size(&self, device: Device) -> Vec<(f64, f64)> {
        let mut curve = self
            .device
            .iter()
            .find(|d| parse_device(&d.name).ok() == Some(device))
            .map(|d| d.flops_by_size.clone())
            .unwrap_or_default();
        curve.sort_by(|a, b| a.0.total_cmp(&b.0));
        curve
    }

    pub fn threads(&self, device: Device) -> Option<u32> {
        self.device.iter().find(|d| parse_device(&d.name).ok() == Some(device)).and_then(|d| d.threads)
    }

    pub fn elements_per_second(&self, device: Device) -> Option<f64> {
        self.device.iter().find(|d| parse_device(&d.name).ok() == Some(device)).and_then(|d| d.elements_per_second)
    }

    pub fn seconds_per_tensor(&self, device: Device) -> Option<f64> {
        self.device.iter().find(|d| parse_device(&d.name).ok() == Some(device)).and_then(|d| d.seconds_per_tensor)
    }

    pub fn flops(&self, device: Device) -> Option<f64> {
        self.device.iter().find(|d| parse_device(&d.name).ok() == Some(device)).map(|d| d.flops_per_second)
    }

    /// The measured rate from `from` to `to`, or the other way when only that was measured.
    pub fn rate(&self, from: Device, to: Device) -> Option<f64> {
        let find = |a: Device, b: Device| {
            self.link
                .iter()
                .find(|l| parse_device(&l.from).ok() == Some(a) && parse_device(&l.to).ok() == Some(b))
                .map(|l| l.bytes_per_second)
        };
        find(from, to).or_else(|| find(to, from))
    }

    pub fn disk_read(&self) -> Option<f64> {
        self.disk.as_ref().map(|d| d.read_bytes_per_second)
    }
}
