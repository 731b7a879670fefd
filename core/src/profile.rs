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
    /// Elements a second through a norm (the 1-D weights of a layer that are not biases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elements_per_second: Option<f64>,
    /// Elements a second through a bias added to a layer's outputs; where not measured, the
    /// norm's rate (a CPU with native BF16 added biases five times as fast as it normed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adds_per_second: Option<f64>,
    /// Threads the figures were measured with (a CPU's cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// Matmul throughput by problem size: `[[n, flops_per_second], ...]` for n×n×n, n ascending.
    /// Read by the cost model where no [`Self::matmul`] table was measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flops_by_size: Vec<(f64, f64)>,
    /// Matmul throughput by shape, as layers apply their weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matmul: Option<MatmulTable>,
    /// A CPU's figures measured with one core fewer, as a run computes while its copy thread
    /// streams layers on the core left over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<StreamingFigures>,
    /// The runtime's own memory on this device while it runs a plan, apart from weights, copies
    /// and activations: libtorch's thread pool and allocator on the CPU, the workspaces and the
    /// caching allocator's slack on a GPU. Bytes; every predicted peak of the device includes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_bytes: Option<u64>,
    /// On the CPU: what each distinct matrix product a run computes (its rows, inner width,
    /// outputs and dtype) adds to the runtime's own memory, beyond `runtime_bytes`: the kernels
    /// libtorch's math library generates for that shape and keeps for the rest of the run (a CPU
    /// with native BF16 products held some 0.6 MiB a shape; one without, none). Bytes; the
    /// predicted peak counts it once for each distinct product of the models computing there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_bytes: Option<u64>,
    /// On the CPU: what a layer norm holds beyond its input and output while it runs, per byte
    /// of its input (a CPU with native BF16 held 1 byte a byte of a BF16 norm's input). The
    /// allocator keeps that memory once it is freed, for the next norm, so the
    /// predicted peak counts it once, for the largest norm of the models computing there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_workspace: Option<f64>,
    /// On the CPU: what making one weight computable holds while it runs, per weight (element):
    /// a GGUF block type dequantized through 32-bit values, an 8-bit float converted to BF16; the
    /// most of those. Kept by the allocator as a norm's temporaries are; the predicted peak counts
    /// it once, for the largest such weight of the models computing there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dequantize_workspace: Option<f64>,
    /// On the CPU: the host memory the runtime adds once it computes on a GPU (the CUDA driver's
    /// context and libtorch's CUDA side: cuBLAS, the caching allocator's bookkeeping), beyond
    /// `runtime_bytes`. Bytes; the CPU's predicted peak includes it when a model computes on a GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_host_bytes: Option<u64>,
    /// A GPU's kernels run this much slower while a copy to it runs beside them (1 or more): the
    /// copy engine and the kernels share the device's memory. The cost model slows a streaming
    /// model's layers by it, for the part of the step its copies take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_slowdown: Option<f64>,
    /// How far the probe's runs of these figures spread, at the widest: (slowest − fastest) /
    /// median. Each figure is the median of its runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<f64>,
}

/// Matmul throughput by shape: `rows × inner` inputs through an `inner → outputs` weight (stored
/// `outputs × inner`, as layers store theirs), measured on a grid of inner widths and output
/// sizes (rows × outputs). A small inner width runs slower than its FLOPs say on many CPUs and
/// a small output underfills a GPU, so one figure per problem size is not enough.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatmulTable {
    /// Inner widths measured, ascending.
    pub inner: Vec<f64>,
    /// Output sizes measured (rows × outputs), ascending.
    pub outputs: Vec<f64>,
    /// FLOP/s: one row per inner width, one column per output size.
    pub flops_per_second: Vec<Vec<f64>>,
}

impl MatmulTable {
    /// The throughput at `inner` and `outputs`, interpolated on both axes (log-log), held at the
    /// table's edges; `None` when the table is empty or not rectangular.
    pub fn at(&self, inner: f64, outputs: f64) -> Option<f64> {
        let (i0, i1, ti) = bracket(&self.inner, inner)?;
        let (o0, o1, to) = bracket(&self.outputs, outputs)?;
        let f = |i: usize, o: usize| self.flops_per_second.get(i).and_then(|row| row.get(o)).map(|f| f.ln());
        let low = f(i0, o0)? + to * (f(i0, o1)? - f(i0, o0)?);
        let high = f(i1, o0)? + to * (f(i1, o1)? - f(i1, o0)?);
        Some((low + ti * (high - low)).exp())
    }

    fn check(&self, name: Device) -> Result<(), ProfileError> {
        let shape = self.flops_per_second.len() == self.inner.len()
            && self.flops_per_second.iter().all(|row| row.len() == self.outputs.len());
        let ascending = |axis: &[f64]| !axis.is_empty() && axis.windows(2).all(|w| w.first() < w.get(1));
        if !shape || !ascending(&self.inner) || !ascending(&self.outputs) {
            return Err(ProfileError::Toml {
                message: format!(
                    "`matmul` of `{name}` must have ascending `inner` and `outputs` and one row of                      `flops_per_second` per inner width, one figure per output size"
                ),
            });
        }
        let figures = self.inner.iter().chain(&self.outputs).chain(self.flops_per_second.iter().flatten());
        match figures.copied().find(|v| !(v.is_finite() && *v > 0.0)) {
            Some(value) => Err(ProfileError::NotPositive {
                what: format!("every figure in `matmul` of `{name}`"),
                value: value.to_string(),
            }),
            None => Ok(()),
        }
    }
}

/// Where `x` falls on an ascending axis: the two points around it and how far along (0 to 1, in
/// logs); held at the ends.
fn bracket(axis: &[f64], x: f64) -> Option<(usize, usize, f64)> {
    let last = axis.len().checked_sub(1)?;
    let x = x.max(f64::MIN_POSITIVE);
    let above = axis.iter().position(|&a| a >= x).unwrap_or(last + 1);
    Some(match above {
        0 => (0, 0, 0.0),
        n if n > last => (last, last, 0.0),
        n => {
            let (a, b) = (axis.get(n - 1).copied()?, axis.get(n).copied()?);
            (n - 1, n, (x.ln() - a.ln()) / (b.ln() - a.ln()))
        }
    })
}

/// A CPU's compute figures with one core fewer: the cores the run computes on while its copy
/// thread streams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamingFigures {
    pub threads: u32,
    pub seconds_per_tensor: f64,
    pub elements_per_second: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adds_per_second: Option<f64>,
    pub matmul: MatmulTable,
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
    /// Read through the page cache into a GPU's staging buffer, on the threads a transfer to a
    /// GPU gathers with (one thread reads for a CPU, which computes on the other cores). Measured
    /// where a GPU is; without it, a GPU's transfers read at `read_bytes_per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rate::optional")]
    pub staged_read_bytes_per_second: Option<Bandwidth>,
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
    #[error("{what} must be 1 or more (a factor of slowing down), not {value}")]
    BelowOne { what: String, value: String },
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
            if let Some(rate) = d.adds_per_second {
                positive(&|| format!("`adds_per_second` of `{name}`"), rate)?;
            }
            if let Some(rate) = d.streaming.as_ref().and_then(|s| s.adds_per_second) {
                positive(&|| format!("`streaming.adds_per_second` of `{name}`"), rate)?;
            }
            for (what, workspace) in
                [("norm_workspace", d.norm_workspace), ("dequantize_workspace", d.dequantize_workspace)]
            {
                if let Some(workspace) = workspace
                    && !(workspace.is_finite() && workspace >= 0.0)
                {
                    return Err(ProfileError::Negative {
                        what: format!("`{what}` of `{name}`"),
                        value: workspace.to_string(),
                    });
                }
            }
            if let Some(overhead) = d.seconds_per_tensor {
                positive(&|| format!("`seconds_per_tensor` of `{name}`"), overhead)?;
            }
            if let Some(table) = &d.matmul {
                table.check(name)?;
            }
            if let Some(slowdown) = d.copy_slowdown
                && !(slowdown.is_finite() && slowdown >= 1.0)
            {
                return Err(ProfileError::BelowOne {
                    what: format!("`copy_slowdown` of `{name}`"),
                    value: slowdown.to_string(),
                });
            }
            if let Some(streaming) = &d.streaming {
                positive(&|| format!("`streaming.seconds_per_tensor` of `{name}`"), streaming.seconds_per_tensor)?;
                positive(&|| format!("`streaming.elements_per_second` of `{name}`"), streaming.elements_per_second)?;
                streaming.matmul.check(name)?;
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
            if let Some(staged) = disk.staged_read_bytes_per_second {
                positive(&|| "`staged_read_bytes_per_second` of `disk`".to_owned(), rate(staged))?;
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

    /// The measured matmul table of a device: measured with one core fewer when `streaming` and
    /// the profile has those figures.
    pub fn matmul(&self, device: Device, streaming: bool) -> Option<&MatmulTable> {
        let d = self.find(device)?;
        match (&d.streaming, streaming) {
            (Some(s), true) => Some(&s.matmul),
            _ => d.matmul.as_ref(),
        }
    }

    /// The figures measured with one core fewer, when the profile has them.
    pub fn streaming(&self, device: Device) -> Option<&StreamingFigures> {
        self.find(device).and_then(|d| d.streaming.as_ref())
    }

    /// How much slower `device`'s kernels run beside a copy to it, measured.
    pub fn copy_slowdown(&self, device: Device) -> Option<f64> {
        self.find(device).and_then(|d| d.copy_slowdown)
    }

    /// The runtime's own memory on `device`, measured.
    pub fn runtime_bytes(&self, device: Device) -> Option<u64> {
        self.find(device).and_then(|d| d.runtime_bytes)
    }

    /// What each distinct matrix product adds to the runtime's own memory on `device`, measured.
    pub fn product_bytes(&self, device: Device) -> Option<u64> {
        self.find(device).and_then(|d| d.product_bytes)
    }

    /// What a layer norm holds on `device` while it runs, per byte of its input, measured.
    pub fn norm_workspace(&self, device: Device) -> Option<f64> {
        self.find(device).and_then(|d| d.norm_workspace)
    }

    /// What making one weight computable holds on `device` while it runs, per weight, measured.
    pub fn dequantize_workspace(&self, device: Device) -> Option<f64> {
        self.find(device).and_then(|d| d.dequantize_workspace)
    }

    /// The host memory the runtime adds once it computes on a GPU, measured.
    pub fn gpu_host_bytes(&self) -> Option<u64> {
        self.find(Device::Cpu).and_then(|d| d.gpu_host_bytes)
    }

    pub fn threads(&self, device: Device) -> Option<u32> {
        self.find(device).and_then(|d| d.threads)
    }

    /// Elements a second through a norm: measured with one core fewer when `streaming` and the
    /// profile has that figure.
    pub fn elements_per_second(&self, device: Device, streaming: bool) -> Option<f64> {
        let d = self.find(device)?;
        match (&d.streaming, streaming) {
            (Some(s), true) => Some(s.elements_per_second),
            _ => d.elements_per_second,
        }
    }

    /// Elements a second through a bias add: measured with one core fewer when `streaming` and
    /// the profile has that figure.
    pub fn adds_per_second(&self, device: Device, streaming: bool) -> Option<f64> {
        let d = self.find(device)?;
        match (&d.streaming, streaming) {
            (Some(s), true) => s.adds_per_second,
            _ => d.adds_per_second,
        }
    }

    /// The fixed cost of one weight tensor: measured with one core fewer when `streaming` and the
    /// profile has that figure.
    pub fn seconds_per_tensor(&self, device: Device, streaming: bool) -> Option<f64> {
        let d = self.find(device)?;
        match (&d.streaming, streaming) {
            (Some(s), true) => Some(s.seconds_per_tensor),
            _ => d.seconds_per_tensor,
        }
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

    /// The model file's read speed through the page cache into a GPU's staging buffer (warm), in
    /// bytes a second, where the probe measured it.
    #[expect(clippy::cast_precision_loss, reason = "a rate for the cost model's arithmetic")]
    pub fn disk_read_staged(&self) -> Option<f64> {
        self.disk.as_ref().and_then(|d| d.staged_read_bytes_per_second).map(|r| r.bytes_per_second() as f64)
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
