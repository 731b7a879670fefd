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
    /// The median of the timed runs (one reading for figures that are not times).
    pub value: f64,
    pub unit: &'static str,
    /// How far the timed runs spread: (slowest − fastest) / median; 0 for a single reading.
    pub spread: f64,
}

impl Figure {
    fn new(what: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self { what: what.into(), value, unit, spread: 0.0 }
    }

    fn timed(what: impl Into<String>, value: f64, unit: &'static str, timing: Timing) -> Self {
        Self { what: what.into(), value, unit, spread: timing.spread }
    }
}

/// Everything measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Probe {
    pub figures: Vec<Figure>,
    /// Figures whose runs spread too wide to trust, in words.
    pub warnings: Vec<String>,
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

/// Timed runs after the warm-up: the median is the figure, one noisy run does not become it.
const RUNS: usize = 5;

/// Timed runs of the figures only reported, not read by the compiler (matmul at F32 and F16).
const REPORTED_RUNS: usize = 3;

/// A spread wider than this, (slowest − fastest) / median, earns a warning.
const WIDE_SPREAD: f64 = 0.25;

/// What timed runs of one thing gave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// The median run, seconds.
    pub seconds: f64,
    /// (slowest − fastest) / median.
    pub spread: f64,
}

impl Timing {
    /// The median and spread of `runs`, seconds each.
    pub fn of(runs: &[f64]) -> Self {
        let mut sorted = runs.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let at = |i: usize| sorted.get(i).copied().unwrap_or(0.0);
        let median = if n % 2 == 1 { at(n / 2) } else { (at((n / 2).saturating_sub(1)) + at(n / 2)) / 2.0 };
        let spread = match (sorted.first(), sorted.last()) {
            (Some(lo), Some(hi)) if median > 0.0 => (hi - lo) / median,
            _ => 0.0,
        };
        Self { seconds: median, spread }
    }
}

/// One warm-up run, then [`RUNS`] timed ones.
fn median(f: impl FnMut() -> Result<(), RunError>) -> Result<Timing, RunError> {
    median_of(RUNS, f)
}

/// One warm-up run, then `count` timed ones.
fn median_of(count: usize, mut f: impl FnMut() -> Result<(), RunError>) -> Result<Timing, RunError> {
    f()?;
    let mut runs = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        f()?;
        runs.push(start.elapsed().as_secs_f64());
    }
    Ok(Timing::of(&runs))
}

fn sync(device: Device) {
    if let Device::Cuda(n) = device {
        tch::Cuda::synchronize(n as i64);
    }
}

/// Elements a second through a norm, as the runtime applies 1-D weights: back to back, as a
/// layer's norms and biases run, with one wait for the device at the end.
fn elements_per_second(device: Device) -> Result<(f64, Timing), RunError> {
    let (rows, width, reps) = if device == Device::Cpu { (1024i64, 1024i64, 4) } else { (4096, 4096, 20) };
    let x = Tensor::f_ones([rows, width], (Kind::BFloat16, device))?;
    let w = Tensor::f_ones([width], (Kind::BFloat16, device))?;
    let timing = median(|| {
        for _ in 0..reps {
            drop(x.f_layer_norm([width], Some(&w), None::<&Tensor>, 1e-6, false)?);
        }
        sync(device);
        Ok(())
    })?;
    Ok(((rows * width * reps) as f64 / timing.seconds, timing))
}

/// The fixed cost of applying one small weight as the runtime does (matmul, sum, one read back
/// per layer), in a layer of as many weights as a transformer block has.
fn seconds_per_tensor(device: Device) -> Result<(f64, Timing), RunError> {
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
    let timing = median(|| {
        for _ in 0..rounds {
            super::compute::layer(&weights, &mut inputs)?;
        }
        Ok(())
    })?;
    Ok((timing.seconds / f64::from(rounds) / weights.len() as f64, timing))
}

/// BF16 matmul throughput of n×n×n problems, small to large, each with its runs' timing: the curve
/// the cost model interpolates for layers of every size (made monotone where it is written).
fn flops_by_size(device: Device) -> Result<Vec<(f64, f64, Timing)>, RunError> {
    let sizes: &[i64] =
        if device == Device::Cpu { &[32, 64, 128, 256, 512, 1024] } else { &[256, 512, 1024, 2048, 4096, 8192] };
    let mut curve = Vec::new();
    for &n in sizes {
        // Shaped as a transformer applies its weights: n tokens of width n/2 through a weight
        // of n/2 → 2n, transposed as stored (m·k·n = n³, so `n` is its size).
        let x = Tensor::f_ones([n, n / 2], (Kind::BFloat16, device))?;
        let w = Tensor::f_ones([2 * n, n / 2], (Kind::BFloat16, device))?;
        let reps = ((1024 / n).pow(3)).clamp(1, 4096) as i32;
        let timing = median(|| {
            for _ in 0..reps {
                drop(x.f_matmul(&w.f_transpose(0, 1)?)?);
            }
            sync(device);
            Ok(())
        })?;
        curve.push((n as f64, 2.0 * (n as f64).powi(3) * f64::from(reps) / timing.seconds, timing));
    }
    Ok(curve)
}

fn matmul_flops(device: Device, kind: Kind) -> Result<(f64, Timing), RunError> {
    let n: i64 = if device == Device::Cpu { 1024 } else { 4096 };
    let a = Tensor::f_ones([n, n], (kind, device))?;
    let b = Tensor::f_ones([n, n], (kind, device))?;
    let count = if kind == Kind::BFloat16 { RUNS } else { REPORTED_RUNS };
    let timing = median_of(count, || {
        let c = a.f_matmul(&b)?;
        sync(device);
        drop(c);
        Ok(())
    })?;
    Ok((2.0 * (n as f64).powi(3) / timing.seconds, timing))
}

/// A small layer of `width`: a transformer block's weights (attention and MLP projections, norms)
/// at a size whose own bytes are far below the runtime's.
fn small_layer(width: i64, device: Device) -> Result<Vec<super::load::Weight>, RunError> {
    let mut weights = Vec::new();
    for (name, shape) in [
        ("attn.qkv.weight", vec![3 * width, width]),
        ("attn.proj.weight", vec![width, width]),
        ("mlp.0.weight", vec![4 * width, width]),
        ("mlp.2.weight", vec![width, 4 * width]),
        ("norm.weight", vec![width]),
        ("mlp.0.bias", vec![4 * width]),
    ] {
        let tensor = Tensor::f_ones(shape.as_slice(), (Kind::BFloat16, device))?;
        weights.push(super::load::Weight { name: name.to_owned(), tensor, quantized: None });
    }
    Ok(weights)
}

/// The runtime's own memory on the CPU while it runs a plan: what running layers as a run does
/// (its compute on every core, a copy thread beside it) adds to this process beyond the layers'
/// weights, inputs and outputs: libtorch's thread pool, each thread's stack and allocator arena,
/// the copy thread's. Measured as the run measures its peak, and first, before any other figure
/// starts libtorch's threads.
fn cpu_runtime_bytes() -> Result<u64, RunError> {
    let baseline = super::memory::Baseline::now();
    let width = 64i64;
    let tokens = 64u64;
    let weights = small_layer(width, Device::Cpu)?;
    let own: u64 = weights.iter().map(|w| w.tensor.numel() as u64 * 2).sum::<u64>()
        // the inputs of each width, kept, and the widest output
        + tokens * (width as u64 + 4 * width as u64) * 2 * 2;
    std::thread::scope(|scope| -> Result<(), RunError> {
        // The copy thread copies a layer's weights as a run's does (into tensors of its own, two
        // in flight), so that its allocator arena and stack are measured too.
        let handles: Vec<Tensor> = weights.iter().map(|w| w.tensor.shallow_clone()).collect();
        let copies = scope.spawn(move || -> Result<(), RunError> {
            let mut in_flight: Vec<Vec<Tensor>> = Vec::new();
            for _ in 0..4 {
                in_flight.push(handles.iter().map(Tensor::f_detach_copy).collect::<Result<_, _>>()?);
                if in_flight.len() > 2 {
                    in_flight.remove(0);
                }
                super::memory::sample();
            }
            Ok(())
        });
        let mut inputs = super::compute::Inputs::new(tokens, Device::Cpu);
        for _ in 0..4 {
            super::compute::layer(&weights, &mut inputs)?;
            super::memory::sample();
        }
        copies.join().map_err(|_| RunError::Torch("the probe's copy thread panicked".into()))??;
        Ok(())
    })?;
    // Rounded up to a whole MiB, and one more: glibc keeps freed chunks resident in each thread's
    // arena, and a run's pattern of allocations (layers of many widths, copies handed between
    // threads) leaves more of them than this one layer does.
    let measured = baseline.peak_above().saturating_sub(own);
    Ok(measured.div_ceil(MIB) * MIB + ALLOCATOR_SLACK)
}

const MIB: u64 = 1 << 20;

/// What a run's allocator keeps beyond the probe's measurement: see [`cpu_runtime_bytes`].
const ALLOCATOR_SLACK: u64 = MIB;

/// The runtime's own memory on a GPU: what libtorch holds on the device beyond the tensors it
/// was asked for once it has run layers (cuBLAS handles and workspaces, the caching allocator's
/// blocks), measured through the driver as the run measures its peak. None when the driver
/// cannot say.
fn gpu_runtime_bytes(device: Device) -> Result<Option<u64>, RunError> {
    let Device::Cuda(n) = device else { return Ok(None) };
    let Some((before, _)) = super::memory::cuda_memory(n) else { return Ok(None) };
    let width = 1024i64;
    let weights = small_layer(width, device)?;
    let mut inputs = super::compute::Inputs::new(1024, device);
    super::compute::layer(&weights, &mut inputs)?;
    sync(device);
    let Some((after, _)) = super::memory::cuda_memory(n) else { return Ok(None) };
    let own: u64 = weights.iter().map(|w| w.tensor.numel() as u64 * 2).sum();
    Ok(Some(before.saturating_sub(after).saturating_sub(own)))
}

/// Measures what this machine has.
pub fn probe(scratch: &Path) -> Result<Probe, RunError> {
    let mut p = Probe::default();
    let gb = |bytes: i64, s: f64| bytes as f64 / s / 1e9;
    // The runtime's own memory first, before other figures start threads or fill allocators.
    let cpu_runtime = cpu_runtime_bytes()?;
    let mut devices = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        devices.extend((0..tch::Cuda::device_count() as usize).map(Device::Cuda));
    }
    let mut runtime = vec![(Device::Cpu, Some(cpu_runtime))];
    for &device in devices.iter().filter(|d| **d != Device::Cpu) {
        runtime.push((device, gpu_runtime_bytes(device)?));
    }
    for (device, bytes) in &runtime {
        if let Some(bytes) = bytes {
            let what = format!("{} runtime memory", profile_device(*device));
            p.figures.push(Figure::new(what, *bytes as f64 / f64::from(1 << 20), "MiB"));
        }
    }

    // Host memory.
    let host = Tensor::f_ones([COPY_BYTES], (Kind::Uint8, Device::Cpu))?;
    let t = median(|| host.f_detach_copy().map(drop).map_err(RunError::from))?;
    p.figures.push(Figure::timed("host memcpy", gb(COPY_BYTES, t.seconds), "GB/s", t));

    let (warm, cold) = disk_read(scratch)?;
    p.figures.push(Figure::timed("disk read (page cache, mapped)", gb(COPY_BYTES, warm.seconds), "GB/s", warm));
    if let Some(cold) = cold {
        p.figures.push(Figure::timed("disk read (cold, mapped)", gb(COPY_BYTES, cold.seconds), "GB/s", cold));
    }
    p.profile.disk = Some(ProfileDisk {
        read_bytes_per_second: bandwidth(COPY_BYTES, warm.seconds),
        cold_read_bytes_per_second: cold.map(|c| bandwidth(COPY_BYTES, c.seconds)),
        spread: Some(spread_of([Some(warm), cold].into_iter().flatten())),
    });

    // Compute, per dtype.
    for &device in &devices {
        let name = profile_device(device).to_string();
        for (kind, label) in [(Kind::Float, "F32"), (Kind::BFloat16, "BF16"), (Kind::Half, "F16")] {
            let (flops, t) = matmul_flops(device, kind)?;
            p.figures.push(Figure::timed(format!("{name} matmul {label}"), flops / 1e12, "TFLOP/s", t));
            if kind != Kind::BFloat16 {
                continue;
            }
            let mut timings = vec![t];
            let (overhead, t) = seconds_per_tensor(device)?;
            p.figures.push(Figure::timed(format!("{name} cost of one small weight"), overhead * 1e6, "µs", t));
            timings.push(t);
            let (rate, t) = elements_per_second(device)?;
            p.figures.push(Figure::timed(format!("{name} norm"), rate / 1e9, "G elements/s", t));
            timings.push(t);
            let measured = flops_by_size(device)?;
            for &(n, f, t) in &measured {
                p.figures.push(Figure::timed(format!("{name} matmul BF16 {n}x{n}x{n}"), f / 1e12, "TFLOP/s", t));
                timings.push(t);
            }
            let curve = mgc_core::profile::monotone(&measured.iter().map(|&(n, f, _)| (n, f)).collect::<Vec<_>>());
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
                runtime_bytes: runtime.iter().find(|(d, _)| *d == device).and_then(|(_, b)| *b),
                spread: Some(spread_of(timings)),
            });
        }
    }

    // Copies between host and each GPU, and between GPUs.
    for &device in devices.iter().filter(|d| **d != Device::Cpu) {
        let name = profile_device(device).to_string();
        let pinned = super::streams::pinned(&host, Device::Cuda(0))?;
        let t = median(|| {
            let t = pinned.f_to_device(device)?;
            sync(device);
            drop(t);
            Ok(())
        })?;
        p.figures.push(Figure::timed(format!("cpu -> {name} (pinned)"), gb(COPY_BYTES, t.seconds), "GB/s", t));
        p.profile.link.push(ProfileLink {
            from: mgc_core::Device::Cpu,
            to: profile_device(device),
            bytes_per_second: bandwidth(COPY_BYTES, t.seconds),
            spread: Some(t.spread),
        });
        let t = median(|| {
            let t = host.f_to_device(device)?;
            sync(device);
            drop(t);
            Ok(())
        })?;
        p.figures.push(Figure::timed(format!("cpu -> {name} (pageable)"), gb(COPY_BYTES, t.seconds), "GB/s", t));
        let on_device = host.f_to_device(device)?;
        let t = median(|| {
            let t = on_device.f_to_device(Device::Cpu)?;
            drop(t);
            Ok(())
        })?;
        p.figures.push(Figure::timed(format!("{name} -> cpu"), gb(COPY_BYTES, t.seconds), "GB/s", t));
        for &other in devices.iter().filter(|d| **d != Device::Cpu && **d != device) {
            let other_name = profile_device(other).to_string();
            let t = median(|| {
                let t = on_device.f_to_device(other)?;
                sync(other);
                drop(t);
                Ok(())
            })?;
            p.figures.push(Figure::timed(format!("{name} -> {other_name}"), gb(COPY_BYTES, t.seconds), "GB/s", t));
            p.profile.link.push(ProfileLink {
                from: profile_device(device),
                to: profile_device(other),
                bytes_per_second: bandwidth(COPY_BYTES, t.seconds),
                spread: Some(t.spread),
            });
        }
    }
    if !tch::Cuda::is_available() {
        p.figures.push(Figure::new("CUDA", 0.0, "devices (none found: measured the CPU only)"));
    }
    p.warnings = wide_spreads(&p.figures);
    Ok(p)
}

/// The widest spread of some timings.
fn spread_of(timings: impl IntoIterator<Item = Timing>) -> f64 {
    timings.into_iter().map(|t| t.spread).fold(0.0, f64::max)
}

/// A warning for every figure whose runs spread wider than [`WIDE_SPREAD`].
fn wide_spreads(figures: &[Figure]) -> Vec<String> {
    figures
        .iter()
        .filter(|f| f.spread > WIDE_SPREAD)
        .map(|f| {
            format!(
                "{}: its runs spread over {:.0}% of their median (something else was running?); \
                 `mgc probe` on an idle machine gives steadier figures",
                f.what,
                f.spread * 100.0
            )
        })
        .collect()
}

/// The model file's read speed as the runtime reads the `disk` tier, through a mapping into a
/// buffer of its own: warm (the page cache holds the file, as it does after a first step when the
/// file fits in RAM) and cold (the file dropped from the page cache before each run, as a file
/// larger than the cache is read every step). Cold is `None` where the page cache cannot be
/// dropped for one file.
fn disk_read(scratch: &Path) -> Result<(Timing, Option<Timing>), RunError> {
    let file = scratch.join(format!(".mgc-probe-{}", std::process::id()));
    let read = |e: std::io::Error| RunError::Read { path: file.display().to_string(), message: e.to_string() };
    let written = fs_err::File::create(&file).and_then(|mut f| {
        std::io::Write::write_all(&mut f, &vec![7u8; COPY_BYTES as usize])?;
        f.sync_all()
    });
    let measured = written.and_then(|()| {
        let mut buffer = vec![0u8; COPY_BYTES as usize];
        let mut read_once = |cold: bool| -> std::io::Result<f64> {
            let f = fs_err::File::open(&file)?;
            if cold && !drop_cached(f.file()) {
                return Err(std::io::Error::other("cannot drop the page cache"));
            }
            let start = Instant::now();
            #[allow(unsafe_code, reason = "a file this process just wrote, mapped read-only")]
            // SAFETY: the file is private to this probe and not changed while mapped.
            let mapped = unsafe { memmap2::Mmap::map(f.file())? };
            super::streams::gather_into(&mapped, &mut buffer);
            Ok(start.elapsed().as_secs_f64())
        };
        read_once(false)?;
        let warm: Vec<f64> = (0..RUNS).map(|_| read_once(false)).collect::<std::io::Result<_>>()?;
        let cold: Option<Vec<f64>> = (0..RUNS).map(|_| read_once(true).ok()).collect();
        Ok((Timing::of(&warm), cold.map(|c| Timing::of(&c))))
    });
    let _ = fs_err::remove_file(&file);
    measured.map_err(read)
}

/// Asks the kernel to drop `file`'s pages from the page cache; whether it could.
fn drop_cached(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd as _;
    #[allow(unsafe_code, reason = "an advice call on an open file descriptor")]
    // SAFETY: `file` is open for the whole call; the advice reads no memory of this process.
    let status = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    status == 0
}

impl Probe {
    /// The hardware profile, as TOML: a header of comments with every figure measured, then the
    /// profile itself.
    pub fn profile_toml(&self) -> Result<String, ProfileError> {
        let mut t = String::from(
            "# Hardware profile written by `mgc probe`; name it in a workflow with `profile = \"FILE\"`.\n",
        );
        let _ = writeln!(
            t,
            "# Each timed figure is the median of {RUNS} runs after a warm-up ({REPORTED_RUNS} for matmul at F32 \
             and F16); ± is half their spread."
        );
        for f in &self.figures {
            let _ = writeln!(t, "# {}: {:.2} {}{}", f.what, f.value, f.unit, spread_words(f));
        }
        for w in &self.warnings {
            let _ = writeln!(t, "# warning: {w}");
        }
        t.push('\n');
        t.push_str(&self.profile.to_toml()?);
        Ok(t)
    }

    pub fn human(&self) -> String {
        let mut t = String::new();
        for f in &self.figures {
            let _ = writeln!(t, "{:<40} {:>10.2} {}{}", f.what, f.value, f.unit, spread_words(f));
        }
        for w in &self.warnings {
            let _ = writeln!(t, "warning: {w}");
        }
        t
    }
}

/// A timed figure's spread, as ` (±N%)`; nothing for a single reading.
fn spread_words(f: &Figure) -> String {
    if f.spread > 0.0 { format!(" (±{:.0}%)", f.spread * 50.0) } else { String::new() }
}
