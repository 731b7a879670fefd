//! `mgc probe`: measures this machine — host memory copies, the disk, each device's matmul
//! throughput per dtype, host↔device and device↔device copies — and writes the hardware profile
//! the compiler reads (`profile = "FILE"` in a workflow).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use mgc_core::Bandwidth;
use mgc_core::profile::{Profile, ProfileDevice, ProfileDisk, ProfileError, ProfileLink};
use tch::{Device, Kind, Tensor};

use super::error::RunError;

/// One measured figure.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Figure {
    pub what: String,
    pub value: f64,
    pub unit: &'static str,
}

/// Everything measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Probe {
    pub figures: Vec<Figure>,
    /// What the compiler reads: devices' FLOP/s (BF16), links' bytes/s, disk read bytes/s.
    #[serde(skip)]
    pub profile: Profile,
}

/// The profile's name of a torch device.
fn profile_device(device: Device) -> mgc_core::Device {
    match device {
        Device::Cuda(n) => mgc_core::Device::Cuda(u32::try_from(n).unwrap_or(u32::MAX)),
        _ => mgc_core::Device::Cpu,
    }
}

/// Bytes a second, whole.
#[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a measured rate; saturates")]
fn bandwidth(bytes: i64, seconds: f64) -> Bandwidth {
    Bandwidth((bytes as f64 / seconds).round() as u64)
}

const COPY_BYTES: i64 = 256 << 20;

/// The best of a few timed runs, in seconds.
fn best(mut f: impl FnMut() -> Result<(), RunError>) -> Result<f64, RunError> {
    f()?; // warm up
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn sync(device: Device) {
    if let Device::Cuda(n) = device {
        tch::Cuda::synchronize(n as i64);
    }
}

/// Elements a second through a norm, as the runtime applies 1-D weights: back to back, as a
/// layer's norms and biases run, with one wait for the device at the end.
fn elements_per_second(device: Device) -> Result<f64, RunError> {
    let (rows, width, reps) = if device == Device::Cpu { (1024i64, 1024i64, 4) } else { (4096, 4096, 20) };
    let x = Tensor::f_ones([rows, width], (Kind::BFloat16, device))?;
    let w = Tensor::f_ones([width], (Kind::BFloat16, device))?;
    let seconds = best(|| {
        for _ in 0..reps {
            drop(x.f_layer_norm([width], Some(&w), None::<&Tensor>, 1e-6, false)?);
        }
        sync(device);
        Ok(())
    })?;
    Ok((rows * width * reps) as f64 / seconds)
}

/// The fixed cost of applying one small weight as the runtime does (matmul, sum, one read back
/// per layer), in a layer of as many weights as a transformer block has.
fn seconds_per_tensor(device: Device) -> Result<f64, RunError> {
    // Through the runtime's own path for one layer: tiny weights, one token, so that all that is
    // left is the fixed cost of each tensor.
    let mut weights = Vec::new();
    for i in 0..8 {
        for (name, shape) in [(format!("w{i}.weight"), vec![8i64, 8]), (format!("w{i}.bias"), vec![8])] {
            weights.push(super::load::Weight {
                name,
                tensor: Tensor::f_ones(shape.as_slice(), (Kind::BFloat16, device))?,
                quantized: None,
            });
        }
    }
    let mut inputs = super::compute::Inputs::new(1, device);
    let rounds = 50;
    let seconds = best(|| {
        for _ in 0..rounds {
            super::compute::layer(&weights, &mut inputs)?;
        }
        Ok(())
    })?;
    Ok(seconds / f64::from(rounds) / weights.len() as f64)
}

/// BF16 matmul throughput of n×n×n problems, small to large: the curve the cost model
/// interpolates for layers of every size.
fn flops_by_size(device: Device) -> Result<Vec<(f64, f64)>, RunError> {
    let sizes: &[i64] =
        if device == Device::Cpu { &[32, 64, 128, 256, 512, 1024] } else { &[256, 512, 1024, 2048, 4096, 8192] };
    let mut curve = Vec::new();
    for &n in sizes {
        // Shaped as a transformer applies its weights: n tokens of width n/2 through a weight
        // of n/2 → 2n, transposed as stored (m·k·n = n³, so `n` is its size).
        let x = Tensor::f_ones([n, n / 2], (Kind::BFloat16, device))?;
        let w = Tensor::f_ones([2 * n, n / 2], (Kind::BFloat16, device))?;
        let reps = ((1024 / n).pow(3)).clamp(1, 4096) as i32;
        let seconds = best(|| {
            for _ in 0..reps {
                drop(x.f_matmul(&w.f_transpose(0, 1)?)?);
            }
            sync(device);
            Ok(())
        })?;
        curve.push((n as f64, 2.0 * (n as f64).powi(3) * f64::from(reps) / seconds));
    }
    Ok(curve)
}

fn matmul_flops(device: Device, kind: Kind) -> Result<f64, RunError> {
    let n: i64 = if device == Device::Cpu { 1024 } else { 4096 };
    let a = Tensor::f_ones([n, n], (kind, device))?;
    let b = Tensor::f_ones([n, n], (kind, device))?;
    let seconds = best(|| {
        let c = a.f_matmul(&b)?;
        sync(device);
        drop(c);
        Ok(())
    })?;
    Ok(2.0 * (n as f64).powi(3) / seconds)
}

/// Measures what this machine has.
pub fn probe(scratch: &Path) -> Result<Probe, RunError> {
    let mut p = Probe::default();
    let gb = |bytes: i64, s: f64| bytes as f64 / s / 1e9;

    // Host memory.
    let host = Tensor::f_ones([COPY_BYTES], (Kind::Uint8, Device::Cpu))?;
    let s = best(|| host.f_detach_copy().map(drop).map_err(RunError::from))?;
    p.figures.push(Figure { what: "host memcpy".into(), value: gb(COPY_BYTES, s), unit: "GB/s" });

    // The disk: a file written then read back as the runtime reads the `disk` tier, through a
    // mapping into a buffer of its own (the page cache may serve part of it, or all).
    let file = scratch.join(format!(".mgc-probe-{}", std::process::id()));
    let read = |e: std::io::Error| RunError::Read { path: file.display().to_string(), message: e.to_string() };
    fs_err::write(&file, vec![7u8; COPY_BYTES as usize]).map_err(read)?;
    let mapped = fs_err::File::open(&file).and_then(|f| {
        #[allow(unsafe_code, reason = "a file this process just wrote, mapped read-only")]
        // SAFETY: the file is private to this probe and not changed while mapped.
        unsafe {
            memmap2::Mmap::map(f.file())
        }
    });
    let _ = fs_err::remove_file(&file);
    let mapped = mapped.map_err(read)?;
    let mut buffer = vec![0u8; mapped.len()];
    let s = best(|| {
        super::streams::gather_into(&mapped, &mut buffer);
        Ok(())
    })?;
    p.figures.push(Figure { what: "disk read (page cache, mapped)".into(), value: gb(COPY_BYTES, s), unit: "GB/s" });
    p.profile.disk = Some(ProfileDisk { read_bytes_per_second: bandwidth(COPY_BYTES, s) });

    // Compute, per dtype.
    let mut devices = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        devices.extend((0..tch::Cuda::device_count() as usize).map(Device::Cuda));
    }
    for &device in &devices {
        let name = match device {
            Device::Cuda(n) => format!("cuda:{n}"),
            _ => "cpu".to_owned(),
        };
        for (kind, label) in [(Kind::Float, "F32"), (Kind::BFloat16, "BF16"), (Kind::Half, "F16")] {
            let flops = matmul_flops(device, kind)?;
            p.figures.push(Figure { what: format!("{name} matmul {label}"), value: flops / 1e12, unit: "TFLOP/s" });
            if kind == Kind::BFloat16 {
                let overhead = seconds_per_tensor(device)?;
                p.figures.push(Figure {
                    what: format!("{name} cost of one small weight"),
                    value: overhead * 1e6,
                    unit: "µs",
                });
                let rate = elements_per_second(device)?;
                p.figures.push(Figure { what: format!("{name} norm"), value: rate / 1e9, unit: "G elements/s" });

                let curve = flops_by_size(device)?;
                for (n, f) in &curve {
                    p.figures.push(Figure {
                        what: format!("{name} matmul BF16 {n}x{n}x{n}"),
                        value: f / 1e12,
                        unit: "TFLOP/s",
                    });
                }
                let threads = if device == Device::Cpu {
                    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
                } else {
                    1
                };
                p.profile.device.push(ProfileDevice {
                    name: profile_device(device),
                    flops_per_second: flops,
                    seconds_per_tensor: Some(overhead),
                    elements_per_second: Some(rate),
                    threads: Some(threads),
                    flops_by_size: curve,
                });
            }
        }
    }

    // Copies between host and each GPU, and between GPUs.
    for &device in devices.iter().filter(|d| **d != Device::Cpu) {
        let name = match device {
            Device::Cuda(n) => format!("cuda:{n}"),
            _ => continue,
        };
        let pinned = super::streams::pinned(&host, Device::Cuda(0))?;
        let s = best(|| {
            let t = pinned.f_to_device(device)?;
            sync(device);
            drop(t);
            Ok(())
        })?;
        p.figures.push(Figure { what: format!("cpu -> {name} (pinned)"), value: gb(COPY_BYTES, s), unit: "GB/s" });
        p.profile.link.push(ProfileLink {
            from: mgc_core::Device::Cpu,
            to: profile_device(device),
            bytes_per_second: bandwidth(COPY_BYTES, s),
        });
        let s = best(|| {
            let t = host.f_to_device(device)?;
            sync(device);
            drop(t);
            Ok(())
        })?;
        p.figures.push(Figure { what: format!("cpu -> {name} (pageable)"), value: gb(COPY_BYTES, s), unit: "GB/s" });
        let on_device = host.f_to_device(device)?;
        let s = best(|| {
            let t = on_device.f_to_device(Device::Cpu)?;
            drop(t);
            Ok(())
        })?;
        p.figures.push(Figure { what: format!("{name} -> cpu"), value: gb(COPY_BYTES, s), unit: "GB/s" });
        for &other in devices.iter().filter(|d| **d != Device::Cpu && **d != device) {
            let other_name = match other {
                Device::Cuda(n) => format!("cuda:{n}"),
                _ => continue,
            };
            let s = best(|| {
                let t = on_device.f_to_device(other)?;
                sync(other);
                drop(t);
                Ok(())
            })?;
            p.figures.push(Figure { what: format!("{name} -> {other_name}"), value: gb(COPY_BYTES, s), unit: "GB/s" });
            p.profile.link.push(ProfileLink {
                from: profile_device(device),
                to: profile_device(other),
                bytes_per_second: bandwidth(COPY_BYTES, s),
            });
        }
    }
    if !tch::Cuda::is_available() {
        p.figures.push(Figure { what: "CUDA".into(), value: 0.0, unit: "devices (none found: measured the CPU only)" });
    }
    Ok(p)
}

impl Probe {
    /// The hardware profile, as TOML: a header of comments with every figure measured, then the
    /// profile itself.
    pub fn profile_toml(&self) -> Result<String, ProfileError> {
        let mut t = String::from(
            "# Hardware profile written by `mgc probe`; name it in a workflow with `profile = \"FILE\"`.\n",
        );
        for f in &self.figures {
            let _ = writeln!(t, "# {}: {:.2} {}", f.what, f.value, f.unit);
        }
        t.push('\n');
        t.push_str(&self.profile.to_toml()?);
        Ok(t)
    }

    pub fn human(&self) -> String {
        let mut t = String::new();
        for f in &self.figures {
            let _ = writeln!(t, "{:<40} {:>10.2} {}", f.what, f.value, f.unit);
        }
        t
    }
}
