//! Hardware profiles: measured link bandwidths, compute throughputs and disk read speed, in the
//! TOML format `mgc probe` writes (through [`Profile::to_toml`]) and the compiler reads (through
//! [`Profile::from_toml`]). A workflow names one with `profile = "FILE"`; its figures replace the
//! defaults, and a workflow's own `[[link]]` and `tflops` replace the profile's.
//!
//! ```toml
//! [[device]]
//! name = "cuda:0"
//! flops_per_second = 1.5e14
//! runtime_bytes = 402653184
//!
//! [[link]]
//! from = "cpu"
//! to = "cuda:0"
//! bytes_per_second = 2.5e10
//!
//! [disk]
//! read_bytes_per_second = 3.2e9
//! ```
//!
//! A profile is a file mgc writes, so its device names are read in their canonical form
//! (`cuda:0`), as plans' are.

use serde::{Deserialize, Serialize};

use crate::{Bandwidth, Device};

/// A hardware profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device: Vec<ProfileDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<ProfileLink>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<ProfileDisk>,
}

/// A device's measured throughput.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDevice {
    pub name: Device,
    /// Matmul throughput at 16-bit weights, FLOP/s.
    pub flops_per_second: f64,
    /// The fixed cost of applying one weight tensor (launch, bookkeeping), seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_per_tensor: Option<f64>,
    /// Elements a second through a norm or an elementwise op (the 1-D weights of a layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elements_per_second: Option<f64>,
    /// Threads the figures were measured with (a CPU's cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// Matmul throughput by problem size: `[[n, flops_per_second], ...]` for n×n×n, n ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flops_by_size: Vec<(f64, f64)>,
    /// The runtime's own memory on this device while it runs a plan, apart from weights, copies
    /// and activations: libtorch's thread pool and allocator on the CPU, the workspaces and the
    /// caching allocator's slack on a GPU. Bytes; every predicted peak of the device includes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_bytes: Option<u64>,
    /// How far the probe's runs of these figures spread, at the widest: (slowest − fastest) /
    /// median. Each figure is the median of its runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<f64>,
}

/// A link's measured bandwidth, in the direction the bytes go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileLink {
    pub from: Device,
    pub to: Device,
    #[serde(with = "rate")]
    pub bytes_per_second: Bandwidth,
    /// How far the probe's runs spread: (slowest − fastest) / median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<f64>,
}

/// The model file's read speed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDisk {
    /// Read through the page cache (warm): the file read again while RAM holds it.
    #[serde(with = "rate")]
    pub read_bytes_per_second: Bandwidth,
    /// Read from the device itself (cold): the file dropped from the page cache first, as a
    /// file larger than RAM can cache is read every time.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rate::optional")]
    pub cold_read_bytes_per_second: Option<Bandwidth>,
    /// How far the probe's runs spread, at the widest: (slowest − fastest) / median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<f64>,
}

/// Why a profile cannot be read or written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// Not TOML, or not a profile's fields.
    #[error("{message}")]
    Toml { message: String },
    #[error("{what} must be a positive number, not {value}")]
    NotPositive { what: String, value: String },
    #[error("{what} must be 0 or more, not {value}")]
    Negative { what: String, value: String },
}

impl Profile {
    /// Reads a profile, checking every figure.
    pub fn from_toml(text: &str) -> Result<Self, ProfileError> {
        let profile: Self =
            toml::from_str(text).map_err(|e| ProfileError::Toml { message: e.message().trim().to_owned() })?;
        profile.check()?;
        Ok(profile)
    }

    /// The profile as TOML, as [`Profile::from_toml`] reads it.
    pub fn to_toml(&self) -> Result<String, ProfileError> {
        toml::to_string(self).map_err(|e| ProfileError::Toml { message: e.to_string() })
    }

    /// Every figure is a positive number.
    fn check(&self) -> Result<(), ProfileError> {
        let positive = |what: &dyn Fn() -> String, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(ProfileError::NotPositive { what: what(), value: value.to_string() })
            }
        };
        #[expect(clippy::cast_precision_loss, reason = "only compared with zero")]
        let rate = |bandwidth: Bandwidth| bandwidth.bytes_per_second() as f64;
        for d in &self.device {
            let name = d.name;
            positive(&|| format!("`flops_per_second` of `{name}`"), d.flops_per_second)?;
            if let Some(rate) = d.elements_per_second {
                positive(&|| format!("`elements_per_second` of `{name}`"), rate)?;
            }
            if let Some(overhead) = d.seconds_per_tensor {
                positive(&|| format!("`seconds_per_tensor` of `{name}`"), overhead)?;
            }
            for (size, flops) in &d.flops_by_size {
                positive(&|| format!("a size in `flops_by_size` of `{name}`"), *size)?;
                positive(&|| format!("a throughput in `flops_by_size` of `{name}`"), *flops)?;
            }
        }
        for l in &self.link {
            positive(&|| format!("`bytes_per_second` of `{}` -> `{}`", l.from, l.to), rate(l.bytes_per_second))?;
        }
        if let Some(disk) = &self.disk {
            positive(&|| "`read_bytes_per_second` of `disk`".to_owned(), rate(disk.read_bytes_per_second))?;
            if let Some(cold) = disk.cold_read_bytes_per_second {
                positive(&|| "`cold_read_bytes_per_second` of `disk`".to_owned(), rate(cold))?;
            }
        }
        let spreads = self.device.iter().map(|d| d.spread).chain(self.link.iter().map(|l| l.spread));
        for spread in spreads.chain(self.disk.iter().map(|d| d.spread)).flatten() {
            if !(spread.is_finite() && spread >= 0.0) {
                return Err(ProfileError::Negative { what: "a `spread`".to_owned(), value: spread.to_string() });
            }
        }
        Ok(())
    }

    fn find(&self, device: Device) -> Option<&ProfileDevice> {
        self.device.iter().find(|d| d.name == device)
    }

    /// The measured throughput curve of a device, sizes ascending, made [`monotone`]: a larger
    /// problem never runs slower than a smaller one (a profile written by hand, or by an older
    /// probe, may have one noisy point).
    pub fn flops_by_size(&self, device: Device) -> Vec<(f64, f64)> {
        let mut curve = self.find(device).map(|d| d.flops_by_size.clone()).unwrap_or_default();
        curve.sort_by(|a, b| a.0.total_cmp(&b.0));
        monotone(&curve)
    }

    /// The runtime's own memory on `device`, measured.
    pub fn runtime_bytes(&self, device: Device) -> Option<u64> {
        self.find(device).and_then(|d| d.runtime_bytes)
    }

    pub fn threads(&self, device: Device) -> Option<u32> {
        self.find(device).and_then(|d| d.threads)
    }

    pub fn elements_per_second(&self, device: Device) -> Option<f64> {
        self.find(device).and_then(|d| d.elements_per_second)
    }

    pub fn seconds_per_tensor(&self, device: Device) -> Option<f64> {
        self.find(device).and_then(|d| d.seconds_per_tensor)
    }

    pub fn flops(&self, device: Device) -> Option<f64> {
        self.find(device).map(|d| d.flops_per_second)
    }

    /// The measured rate from `from` to `to`, or the other way when only that was measured, in
    /// bytes a second (the cost model's arithmetic is in floating point).
    #[expect(clippy::cast_precision_loss, reason = "a rate for the cost model's arithmetic")]
    pub fn rate(&self, from: Device, to: Device) -> Option<f64> {
        let find = |a: Device, b: Device| self.link.iter().find(|l| l.from == a && l.to == b);
        find(from, to).or_else(|| find(to, from)).map(|l| l.bytes_per_second.bytes_per_second() as f64)
    }

    /// The model file's read speed through the page cache (warm), in bytes a second.
    #[expect(clippy::cast_precision_loss, reason = "a rate for the cost model's arithmetic")]
    pub fn disk_read(&self) -> Option<f64> {
        self.disk.as_ref().map(|d| d.read_bytes_per_second.bytes_per_second() as f64)
    }

    /// The model file's read speed from the device itself (cold), in bytes a second.
    #[expect(clippy::cast_precision_loss, reason = "a rate for the cost model's arithmetic")]
    pub fn disk_read_cold(&self) -> Option<f64> {
        self.disk.as_ref().and_then(|d| d.cold_read_bytes_per_second).map(|r| r.bytes_per_second() as f64)
    }
}

/// A throughput curve made monotone: where a larger size measured slower than a smaller one
/// (one noisy run, a cache boundary), the two are pooled into their mean, until the curve never
/// falls as the size grows (pool-adjacent-violators). Sizes ascending.
pub fn monotone(curve: &[(f64, f64)]) -> Vec<(f64, f64)> {
    // Blocks of (sum of throughputs, count), each at least its left neighbour's mean.
    let mut blocks: Vec<(f64, usize)> = Vec::new();
    for &(_, f) in curve {
        blocks.push((f, 1));
        while let [.., (s0, n0), (s1, n1)] = blocks.as_slice() {
            if s1 / *n1 as f64 >= s0 / *n0 as f64 {
                break;
            }
            let merged = (s0 + s1, n0 + n1);
            blocks.truncate(blocks.len() - 2);
            blocks.push(merged);
        }
    }
    let means = blocks.iter().flat_map(|&(s, n)| std::iter::repeat_n(s / n as f64, n));
    curve.iter().zip(means).map(|(&(size, _), mean)| (size, mean)).collect()
}

/// A bandwidth in a profile: written as whole bytes a second, read from any non-negative number
/// (`2.5e10`, as people and older probes write them), rounded to a whole byte.
mod rate {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    use crate::Bandwidth;

    /// An optional bandwidth, in the same form.
    pub mod optional {
        use serde::{Deserializer, Serializer};

        use crate::Bandwidth;

        #[expect(clippy::ref_option, reason = "the signature serde's `with` asks for")]
        pub fn serialize<S: Serializer>(rate: &Option<Bandwidth>, serializer: S) -> Result<S::Ok, S::Error> {
            match rate {
                Some(rate) => super::serialize(rate, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Bandwidth>, D::Error> {
            super::deserialize(deserializer).map(Some)
        }
    }

    pub fn serialize<S: Serializer>(rate: &Bandwidth, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(rate.bytes_per_second())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bandwidth, D::Error> {
        deserializer.deserialize_any(Rate)
    }

    struct Rate;

    impl Visitor<'_> for Rate {
        type Value = Bandwidth;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number of bytes a second")
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<Bandwidth, E> {
            Ok(Bandwidth(value))
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<Bandwidth, E> {
            u64::try_from(value)
                .map(Bandwidth)
                .map_err(|_| E::custom(format!("a bandwidth must be a positive number, not {value}")))
        }

        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked finite and non-negative; larger than any link saturates"
        )]
        fn visit_f64<E: de::Error>(self, value: f64) -> Result<Bandwidth, E> {
            if value.is_finite() && value >= 0.0 {
                Ok(Bandwidth(value.round() as u64))
            } else {
                Err(E::custom(format!("a bandwidth must be a positive number, not {value}")))
            }
        }
    }
}

#[cfg(test)]
mod tests;
