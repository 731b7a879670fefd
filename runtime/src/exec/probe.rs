//! `mgc probe`: measures this machine — host memory copies, the disk, each device's matmul
//! throughput per dtype, host↔device and device↔device copies — and writes the hardware profile
//! the compiler reads (`profile = "FILE"` in a workflow).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mgc_core::Bandwidth;
use mgc_core::profile::{
    MatmulTable, Profile, ProfileDevice, ProfileDisk, ProfileError, ProfileLink, StreamingFigures,
};
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
    /// How well the figure is known, as a fraction of it either way: [`Timing::within`].
    pub within: f64,
}

impl Figure {
    fn new(what: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self { what: what.into(), value, unit, spread: 0.0, within: 0.0 }
    }

    fn timed(what: impl Into<String>, value: f64, unit: &'static str, timing: Timing) -> Self {
        Self { what: what.into(), value, unit, spread: timing.spread, within: timing.within }
    }
}

/// Everything measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Probe {
    pub figures: Vec<Figure>,
    /// Figures known too loosely to trust, in words.
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

/// A figure known less well than this either way ([`Timing::within`]) earns a warning.
const LOOSE: f64 = 0.125;

/// What timed runs of one thing gave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// The typical run, seconds: the median of a few runs, or the trimmed mean of many taken in
    /// rounds ([`Timing::of_rounds`]).
    pub seconds: f64,
    /// (slowest − fastest) / typical; of ten runs or more, without the fastest and the slowest
    /// tenth, so that one run interrupted does not make the spread of twenty.
    pub spread: f64,
    /// How well `seconds` is known, as a fraction of it either way: half the spread for a median
    /// of a few runs; for a mean of rounds, twice its standard error (the mean of 17 runs that
    /// spread over 50% is known within some ±6%, where each run alone is not within ±25%).
    pub within: f64,
}

impl Timing {
    /// The median and spread of `runs`, seconds each.
    pub fn of(runs: &[f64]) -> Self {
        let sorted = sorted(runs);
        let n = sorted.len();
        let at = |i: usize| sorted.get(i).copied().unwrap_or(0.0);
        let median = if n % 2 == 1 { at(n / 2) } else { (at((n / 2).saturating_sub(1)) + at(n / 2)) / 2.0 };
        let spread = spread(trimmed(&sorted), median);
        Self { seconds: median, spread, within: spread / 2.0 }
    }

    /// The mean of `runs` without their fastest and slowest tenth, and their spread: for runs
    /// taken in rounds over many seconds. A run of a plan takes the machine's fast and slow
    /// spells as they come, and its step is their mean; on a 2-core machine one thread's matmuls
    /// ran in two modes, a third apart, and the median of the rounds followed whichever mode had
    /// the most of them.
    pub fn of_rounds(runs: &[f64]) -> Self {
        let sorted = sorted(runs);
        let kept = trimmed(&sorted);
        let n = kept.len() as f64;
        let mean = if kept.is_empty() { 0.0 } else { kept.iter().sum::<f64>() / n };
        let within = if kept.len() > 1 && mean > 0.0 {
            let variance = kept.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
            2.0 * (variance / n).sqrt() / mean
        } else {
            0.0
        };
        Self { seconds: mean, spread: spread(kept, mean), within }
    }
}

fn sorted(runs: &[f64]) -> Vec<f64> {
    let mut sorted = runs.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// Sorted runs without their fastest and slowest tenth (none of fewer than ten).
fn trimmed(sorted: &[f64]) -> &[f64] {
    let trim = sorted.len() / 10;
    sorted.get(trim..sorted.len() - trim).unwrap_or(sorted)
}

/// (slowest − fastest) / `typical` of sorted runs; 0 when `typical` is not positive.
fn spread(sorted: &[f64], typical: f64) -> f64 {
    match (sorted.first(), sorted.last()) {
        (Some(lo), Some(hi)) if typical > 0.0 => (hi - lo) / typical,
        _ => 0.0,
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

/// Weights as a model's are, for the products and norms the probe times, whose inputs are the
/// runtime's own ([`super::compute::pattern`]): a GPU runs the same kernels slower on values that
/// flip more bits, as its power limit lowers its clocks (an A100's 8192³ BF16 product ran at 295
/// TFLOP/s on zeros and 257 on normal values: Horace He, "Strangely, Matrix Multiplications on
/// GPUs Run Faster When Given 'Predictable' Data", 2024), so products of ones time faster than a
/// run computes. Normal values at a trained weight's scale (the probe seeds libtorch's generator,
/// so every probe draws the same ones).
fn run_weights(shape: &[i64], kind: Kind, device: Device) -> Result<Tensor, RunError> {
    Ok(Tensor::f_randn(shape, (Kind::Float, device))?.g_mul_scalar(0.02).f_to_kind(kind)?)
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
        let x = super::compute::pattern(&[n, n / 2], Kind::BFloat16, device)?;
        let w = run_weights(&[2 * n, n / 2], Kind::BFloat16, device)?;
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

/// Inner widths and output sizes (rows, outputs) of the matmul table. Every power of two of the
/// inner width: throughput does not follow a straight line between them (on a CPU without native
/// BF16, inner 256 ran at 7.1 GFLOP/s where 128 and 512 ran at 4.1 and 8.0, 23% above the line).
/// On a CPU, outputs beyond 256 × 512 ran within 2% of each other: the table stops there and the
/// cost model reads its last column beyond it.
fn matmul_grid(device: Device) -> (&'static [i64], &'static [(i64, i64)]) {
    if device == Device::Cpu {
        (&[32, 64, 128, 256, 512, 1024, 2048], &[(1, 512), (64, 256), (256, 512)])
    } else {
        (&[128, 256, 512, 1024, 2048, 4096, 8192], &[(1, 4096), (256, 4096), (4096, 4096), (8192, 8192)])
    }
}

/// Seconds a timed run of the matmul table aims at: repetitions of small problems add up to it.
const TABLE_RUN_SECONDS: f64 = 0.02;

/// Rounds of the figures the cost model reads (the cost of one small weight, the norm, the matmul
/// table, at each thread count): the trimmed mean ([`Timing::of_rounds`]) of this many runs of
/// each, taken a round at a time so that they spread over some 20 seconds. A machine shared with
/// others runs fast and slow for seconds at a time (a matmul timed every quarter second for a minute on a 2-core machine: spells
/// of 4 s at 3.9–4.1 ms and of 4 s at 5.2–5.9 ms); a figure measured within one spell would move
/// every prediction made with it by as much.
const ROUNDS: usize = 21;

/// Applications of the small layer in one timed run of the cost of one small weight.
const SMALL_LAYER_ROUNDS: usize = 200;

/// The arena of the small layer the probe times for a tensor's fixed cost: the least that makes
/// one (three regions, each a multiple of 256 bytes), so that its weights go through the views of
/// an arena as a run's do. (Sized at its rows' bytes, 48, it had none: the probe timed the path
/// without an arena, four fewer libtorch calls a weight than a run makes.)
const SMALL_LAYER_ARENA: u64 = 3 * 256;

/// One timed run of something measured in rounds (waits for the device before it returns).
type TimedRun = Box<dyn FnMut() -> Result<(), RunError>>;

/// A timed run of `reps` calls of `f`, back to back, with one wait for the device at the end.
fn repeated(reps: usize, device: Device, mut f: impl FnMut() -> Result<(), RunError> + 'static) -> TimedRun {
    Box::new(move || {
        for _ in 0..reps {
            f()?;
        }
        sync(device);
        Ok(())
    })
}

/// The figures of one thread count, and what they are measured from.
struct Group {
    threads: i32,
    /// The cost of one small weight, the norm, each shape of the matmul table, the bias add, then
    /// (on a CPU) the reference block.
    runs: Vec<TimedRun>,
    /// What one run of each does: small weights applied, norm elements, matmul FLOPs, bias
    /// elements, blocks.
    work: Vec<f64>,
    /// Each run's seconds, a list per thing timed.
    seconds: Vec<Vec<f64>>,
}

impl Group {
    /// Prepares the timed runs with `threads` set, and warms each up.
    fn new(device: Device, threads: i32) -> Result<Self, RunError> {
        tch::set_num_threads(threads);
        let mut runs: Vec<TimedRun> = Vec::new();
        let mut work = Vec::new();

        // The fixed cost of applying one small weight as the runtime does (matmul, sum, one read
        // back per layer), in a layer of as many weights as a transformer block has, through the
        // runtime's own path: tiny weights, one token, so that all that is left is the fixed cost
        // of each tensor. With an arena, as a run computes: one row of the widest weight.
        let mut weights = Vec::new();
        for i in 0..8 {
            for (name, shape) in [(format!("w{i}.weight"), vec![8i64, 8]), (format!("w{i}.bias"), vec![8])] {
                let tensor = run_weights(&shape, Kind::BFloat16, device)?;
                weights.push(super::load::Weight { name, tensor, quantized: None });
            }
        }
        work.push((SMALL_LAYER_ROUNDS * weights.len()) as f64);
        let mut inputs = super::compute::Inputs::new(1, device, SMALL_LAYER_ARENA)?;
        runs.push(repeated(SMALL_LAYER_ROUNDS, device, move || {
            super::compute::layer(&weights, &super::compute::Work::default(), &mut inputs).map(drop)
        }));

        // Elements a second through a norm, as the runtime applies 1-D weights: back to back, as
        // a layer's norms and biases run, into an output held throughout as a run's arena is,
        // with one wait for the device at the end.
        let (rows, width, reps) = if device == Device::Cpu { (1024i64, 1024i64, 32) } else { (4096, 4096, 20) };
        let x = super::compute::pattern(&[rows, width], Kind::BFloat16, device)?;
        let w = run_weights(&[width], Kind::BFloat16, device)?;
        let out = Tensor::f_zeros([rows, width], (Kind::BFloat16, device))?;
        work.push((rows * width * reps) as f64);
        // The bias add below reads and writes the same buffers.
        let (bias_x, bias_out) = (x.shallow_clone(), out.shallow_clone());
        runs.push(repeated(reps as usize, device, move || {
            drop(super::compute::norm(&x, Some(&out), &w, width)?);
            Ok(())
        }));

        // BF16 matmul throughput on the grid of [`matmul_grid`], each problem shaped as a layer
        // applies its weight (`rows × inner` through a stored `outputs × inner`), into an output
        // held throughout, as the runtime's products write into its arena. (A new output each
        // time timed the allocator too: the largest outputs read up to 10% slower, and every
        // all-resident plan was predicted slow by as much.)
        let (inners, outputs) = matmul_grid(device);
        for &inner in inners {
            for &(m, n) in outputs {
                let x = super::compute::pattern(&[m, inner], Kind::BFloat16, device)?;
                let w = run_weights(&[n, inner], Kind::BFloat16, device)?.f_transpose(0, 1)?;
                let out = Tensor::f_zeros([m, n], (Kind::BFloat16, device))?;
                // The first product sizes the repetitions of a timed run.
                let start = Instant::now();
                drop(super::compute::product(&x, &w, Some(&out))?);
                sync(device);
                let first = start.elapsed().as_secs_f64().max(1e-7);
                let reps = (TABLE_RUN_SECONDS / first).ceil().clamp(1.0, 10_000.0) as u32;
                work.push(2.0 * (m * inner * n) as f64 * f64::from(reps));
                runs.push(repeated(reps as usize, device, move || {
                    drop(super::compute::product(&x, &w, Some(&out))?);
                    Ok(())
                }));
            }
        }
        // Elements a second through a bias, as the runtime adds one to a layer's outputs, into
        // an output held throughout (a CPU with native BF16 added at five times its norm's rate:
        // costed at the norm's, the tiny Flux's blocks were predicted 15-20% slow).
        let b = run_weights(&[width], Kind::BFloat16, device)?;
        work.push((rows * width * reps) as f64);
        runs.push(repeated(reps as usize, device, move || {
            drop(bias_x.f_add_out(&bias_out, &b)?);
            Ok(())
        }));

        // On a CPU, a block as a run computes one ([`reference_block`]).
        if device == Device::Cpu {
            let (weights, block, arena) = reference_block(device)?;
            let mut inputs = super::compute::Inputs::new(BLOCK_ROWS as u64, device, arena)?;
            work.push(BLOCK_REPS as f64);
            runs.push(repeated(BLOCK_REPS, device, move || {
                super::compute::layer(&weights, &block, &mut inputs).map(drop)
            }));
        }
        for run in &mut runs {
            run()?;
        }
        let seconds = runs.iter().map(|_| Vec::with_capacity(ROUNDS)).collect();
        Ok(Self { threads, runs, work, seconds })
    }

    /// Times every run once, with this group's thread count set.
    fn round(&mut self) -> Result<(), RunError> {
        tch::set_num_threads(self.threads);
        for (run, seconds) in self.runs.iter_mut().zip(&mut self.seconds) {
            let start = Instant::now();
            run()?;
            seconds.push(start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// The figures, with the timing of each (the small weight, the norm, the table's shapes, the
    /// bias add, then the block).
    fn figures(&self, device: Device) -> (Compute, Vec<Timing>) {
        let timings: Vec<Timing> = self.seconds.iter().map(|s| Timing::of_rounds(s)).collect();
        // The rates of one round's runs (`None`), or of their trimmed means.
        let rate = |i: usize, round: Option<usize>| {
            let seconds = match round {
                Some(k) => self.seconds.get(i).and_then(|s| s.get(k)).copied(),
                None => timings.get(i).map(|t| t.seconds),
            };
            match (self.work.get(i), seconds) {
                (Some(work), Some(s)) if s > 0.0 => work / s,
                _ => 0.0,
            }
        };
        let (inners, outputs) = matmul_grid(device);
        let shapes = inners.len() * outputs.len();
        let table = |round: Option<usize>| {
            let flops: Vec<f64> = (2..2 + shapes).map(|i| rate(i, round)).collect();
            MatmulTable {
                inner: inners.iter().map(|&k| k as f64).collect(),
                outputs: outputs.iter().map(|&(m, n)| (m * n) as f64).collect(),
                flops_per_second: flops.chunks(outputs.len()).map(<[f64]>::to_vec).collect(),
            }
        };
        let small_weight = 1.0 / rate(0, None).max(f64::MIN_POSITIVE);
        let (norms, adds) = (rate(1, None), rate(2 + shapes, None));
        let block_run = 3 + shapes;
        let block = (device == Device::Cpu).then(|| 1.0 / rate(block_run, None).max(f64::MIN_POSITIVE));
        // What the block took beyond its arithmetic, round by round: a slow spell of the machine
        // slows a round's block and its products alike, and falls out of their difference. (From
        // the means of the rounds, the figure moved from 9 to 35 µs between probes a minute
        // apart on a 2-core machine, and the predictions with it by a quarter.)
        let (per_tensor, per_tensor_timing) = match block {
            Some(_) => {
                let rounds = self.seconds.get(block_run).map_or(0, Vec::len);
                let beyond: Vec<f64> = (0..rounds)
                    .map(|k| {
                        let seconds = 1.0 / rate(block_run, Some(k)).max(f64::MIN_POSITIVE);
                        seconds - block_arithmetic(&table(Some(k)), rate(1, Some(k)), rate(2 + shapes, Some(k)))
                    })
                    .collect();
                let timing = Timing::of_rounds(&beyond);
                ((timing.seconds / BLOCK_TENSORS as f64).max(small_weight), Some(timing))
            }
            None => (small_weight, None),
        };
        let compute = Compute { small_weight, per_tensor, per_tensor_timing, norms, adds, table: table(None), block };
        (compute, timings)
    }
}

/// One thread count's figures of a device.
struct Compute {
    /// Seconds of one small weight: the probe's layer of 8×8 weights.
    small_weight: f64,
    /// Seconds of one weight, as the cost model reads it: on a CPU, what a block takes beyond its
    /// arithmetic, per tensor (the small weight's at least); elsewhere the small weight's.
    per_tensor: f64,
    /// How well the block's time beyond its arithmetic is known, round by round.
    per_tensor_timing: Option<Timing>,
    /// Elements a second through a norm, and through a bias add.
    norms: f64,
    adds: f64,
    table: MatmulTable,
    /// Seconds of the reference block, on a CPU.
    block: Option<f64>,
}

/// Rows and width of the block the probe times on a CPU: a small transformer's (the tiny test
/// models' width, 256 tokens), as a run computes it. A weight in a run costs more than the
/// probe's 8×8 ones beyond its arithmetic (on a CPU with native BF16, ten weights of 384×128
/// through 256 rows: 17-23 µs each beyond their products, against 9.8 µs for 8×8 at one row),
/// and a model's blocks were predicted fast by as much; the block's time beyond its arithmetic
/// at the other figures is the cost of its tensors at a model's shapes.
const BLOCK_ROWS: i64 = 256;
const BLOCK_WIDTH: i64 = 128;

/// Blocks in one timed run, and the block's tensors.
const BLOCK_REPS: usize = 10;
const BLOCK_TENSORS: usize = 10;

/// The reference block: two norms, attention (`qkv`, `proj`) and an MLP with their biases, its
/// work (every weight at [`BLOCK_ROWS`], one attention over them) and an arena that holds it
/// whole.
fn reference_block(device: Device) -> Result<(Vec<super::load::Weight>, super::compute::Work, u64), RunError> {
    let (r, w) = (BLOCK_ROWS, BLOCK_WIDTH);
    let shapes: [(&str, &[i64]); BLOCK_TENSORS] = [
        ("norm1.weight", &[w]),
        ("attn.qkv.weight", &[3 * w, w]),
        ("attn.qkv.bias", &[3 * w]),
        ("attn.proj.weight", &[w, w]),
        ("attn.proj.bias", &[w]),
        ("norm2.weight", &[w]),
        ("mlp.0.weight", &[4 * w, w]),
        ("mlp.0.bias", &[4 * w]),
        ("mlp.2.weight", &[w, 4 * w]),
        ("mlp.2.bias", &[w]),
    ];
    let mut weights = Vec::new();
    for (name, shape) in shapes {
        weights.push(super::load::Weight {
            name: name.to_owned(),
            tensor: run_weights(shape, Kind::BFloat16, device)?,
            quantized: None,
        });
    }
    let work = super::compute::Work { rows: vec![Some(r); BLOCK_TENSORS], attention: vec![(r, r, w)] };
    // Three regions, each of the widest rows (the MLP's 4w) or the scores, whichever is larger.
    let region = (r * 4 * w).max(r * r) as u64 * 2;
    Ok((weights, work, 3 * region))
}

/// The block's arithmetic as the cost model counts it: its products at the table's rates (an
/// attention as `QKᵀ` and `AV`), its norms and bias adds at theirs.
fn block_arithmetic(table: &MatmulTable, norms: f64, adds: f64) -> f64 {
    let (r, w) = (BLOCK_ROWS as f64, BLOCK_WIDTH as f64);
    let product = |rows: f64, inner: f64, outputs: f64| {
        2.0 * rows * inner * outputs / table.at(inner, rows * outputs).unwrap_or(f64::MAX)
    };
    let products = product(r, w, 3.0 * w) + product(r, w, w) + product(r, w, 4.0 * w) + product(r, 4.0 * w, w);
    let attention = product(r, w, r) + product(r, r, w);
    let elements = |count: f64, rate: f64| if rate > 0.0 { count / rate } else { 0.0 };
    products + attention + elements(2.0 * r * w, norms) + elements(9.0 * r * w, adds)
}

/// What a device computes at, as the cost model reads it: with every thread, and on a CPU of more
/// than one core also with one fewer, as a run computes while its copy thread streams. Both are
/// measured in the same rounds, so a slow spell of the machine falls on both alike.
struct ComputeFigures {
    all: Compute,
    timings: Vec<Timing>,
    streaming: Option<(u32, Compute, Vec<Timing>)>,
}

fn compute_figures(device: Device, cores: u32) -> Result<ComputeFigures, RunError> {
    let all = tch::get_num_threads();
    let measured = (|| {
        let mut groups = vec![Group::new(device, all)?];
        if device == Device::Cpu && cores >= 2 {
            groups.push(Group::new(device, i32::try_from(cores - 1).unwrap_or(1))?);
        }
        for _ in 0..ROUNDS {
            for group in &mut groups {
                group.round()?;
            }
        }
        Ok::<_, RunError>(groups)
    })();
    tch::set_num_threads(all);
    let groups = measured?;
    let mut figures = groups.iter().map(|g| (g.threads, g.figures(device)));
    let Some((_, (all, timings))) = figures.next() else {
        return Err(RunError::Torch("no compute figures measured".into()));
    };
    let streaming =
        figures.next().map(|(threads, (compute, timings))| (u32::try_from(threads).unwrap_or(1), compute, timings));
    Ok(ComputeFigures { all, timings, streaming })
}

/// A device's one matmul figure at `kind` (at BF16, the figure a plan gives the device, and what
/// [`reference_flops`] times again after a run): an n×n×n product as a layer computes one, its
/// weight read transposed as stored, into an output held throughout. (Through a weight not
/// transposed, a CPU without native BF16 took another path, 20× slower than any product a run
/// makes: 0.95 GFLOP/s against 20.8 in the table at the same size.)
fn matmul_flops(device: Device, kind: Kind) -> Result<(f64, Timing), RunError> {
    matmul_flops_of(device, kind, if kind == Kind::BFloat16 { RUNS } else { REPORTED_RUNS })
}

/// The size of [`matmul_flops`]'s product on a device.
const fn reference_size(device: Device) -> i64 {
    if matches!(device, Device::Cpu) { 1024 } else { 4096 }
}

/// [`reference_flops`]'s product on a device, in words.
pub(super) fn reference_product(device: Device) -> String {
    let n = reference_size(device);
    format!("a {n}×{n}×{n} BF16 product")
}

fn matmul_flops_of(device: Device, kind: Kind, runs: usize) -> Result<(f64, Timing), RunError> {
    let n = reference_size(device);
    let x = super::compute::pattern(&[n, n], kind, device)?;
    let w = run_weights(&[n, n], kind, device)?.f_transpose(0, 1)?;
    let out = Tensor::f_zeros([n, n], (kind, device))?;
    // Some 0.1 s a timed run on a CPU of 20 GFLOP/s; a GPU repeats the product to some 10 ms.
    let reps = if device == Device::Cpu { 1 } else { 50 };
    let timing = median_of(runs, || {
        for _ in 0..reps {
            drop(super::compute::product(&x, &w, Some(&out))?);
        }
        sync(device);
        Ok(())
    })?;
    Ok((2.0 * (n as f64).powi(3) * f64::from(reps) / timing.seconds, timing))
}

/// The unit a device's matmul figures read in: a CPU's in GFLOP/s (in TFLOP/s its small sizes
/// read 0.00), a GPU's in TFLOP/s.
const fn flops_unit(device: Device) -> (f64, &'static str) {
    if matches!(device, Device::Cpu) { (1e9, "GFLOP/s") } else { (1e12, "TFLOP/s") }
}

/// Runs of the product timed again after a run: more than the probe's five, a median known
/// within some ±3% on a machine that runs fast and slow for seconds at a time.
const REFERENCE_RUNS: usize = 9;

/// The device's BF16 matmul figure measured now, as the probe measured the figure a plan gives
/// the device: `mgc run` times it after the steps, to tell a machine slower than its plan's
/// figures (something else running, or figures not measured here) from a wrong prediction.
pub(super) fn reference_flops(device: Device) -> Result<(f64, Timing), RunError> {
    matmul_flops_of(device, Kind::BFloat16, REFERENCE_RUNS)
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

/// Rounds of the kernels timed alone and beside a copy.
const SLOWDOWN_ROUNDS: usize = 9;

/// How much slower a GPU's kernels run while a copy to it runs beside them, as a figure of the
/// probe; `None` on the CPU (its sharing is measured with one core fewer), and where it could not
/// be measured (a warning says why; the cost model then leaves kernels as fast).
fn beside_copies(p: &mut Probe, name: &str, device: Device) -> Option<f64> {
    if device == Device::Cpu {
        return None;
    }
    match copy_slowdown(device) {
        Ok((slowdown, beside)) => {
            let what = format!("{name} kernels beside a copy to it, slower by");
            p.figures.push(Figure::timed(what, slowdown, "×", beside));
            Some(slowdown)
        }
        Err(error) => {
            p.warnings.push(format!("{name}: the slowdown of kernels beside a copy was not measured: {error}"));
            None
        }
    }
}

/// A large product timed alone and while the copy stream copies pinned memory to the device back
/// to back, in rounds (a round each way): the ratio of the two means, 1 at the least, and the
/// timing of the runs beside the copies.
fn copy_slowdown(device: Device) -> Result<(f64, Timing), RunError> {
    let Device::Cuda(ordinal) = device else {
        return Err(RunError::Unsupported { what: "the slowdown beside copies of a CPU".into() });
    };
    let gpu = super::streams::Gpu::open(ordinal)?;
    let host = super::streams::pinned(&Tensor::f_ones([COPY_BYTES], (Kind::Uint8, Device::Cpu))?, device)?;
    let mut copier = Some(super::streams::Copier::new(&gpu, device, 1, COPY_BYTES as u64, 0)?);
    let n = 4096i64;
    let a = super::compute::pattern(&[n, n], Kind::BFloat16, device)?;
    let b = run_weights(&[n, n], Kind::BFloat16, device)?;
    let out = Tensor::f_zeros([n, n], (Kind::BFloat16, device))?;
    let time = || -> Result<f64, RunError> {
        let start = Instant::now();
        // Some 20 ms of products on a large GPU: longer than one copy, so several fall in it.
        for _ in 0..100 {
            drop(super::compute::product(&a, &b, Some(&out))?);
        }
        sync(device);
        Ok(start.elapsed().as_secs_f64())
    };
    time()?;
    let (mut alone, mut beside) = (Vec::new(), Vec::new());
    for _ in 0..SLOWDOWN_ROUNDS {
        alone.push(time()?);
        let stop = AtomicBool::new(false);
        let started = AtomicBool::new(false);
        let lent = copier.take().ok_or_else(|| RunError::Cuda("the probe's copy stream was lost".into()))?;
        let source =
            vec![vec![super::load::Weight { name: "copy".into(), tensor: host.shallow_clone(), quantized: None }]];
        let packed = host.shallow_clone();
        let (stop, started) = (&stop, &started);
        let (timed, back) = std::thread::scope(|scope| {
            let copies = scope.spawn(move || -> Result<super::streams::Copier, RunError> {
                while !stop.load(Ordering::Relaxed) {
                    lent.copy(0, None, &source, Some(&packed))?;
                    started.store(true, Ordering::Relaxed);
                }
                Ok(lent)
            });
            // Timed once the copies run: after the first has ended, the next is under way.
            while !started.load(Ordering::Relaxed) && !copies.is_finished() {
                std::thread::yield_now();
            }
            let timed = time();
            stop.store(true, Ordering::Relaxed);
            (timed, copies.join())
        });
        copier = Some(back.map_err(|_| RunError::Cuda("the probe's copy thread panicked".into()))??);
        beside.push(timed?);
    }
    let (alone, beside) = (Timing::of_rounds(&alone), Timing::of_rounds(&beside));
    Ok(((beside.seconds / alone.seconds).max(1.0), beside))
}

/// The runtime's own memory on the CPU while it runs a plan: what running layers as a run does
/// (its compute on every core, a copy thread beside it) adds to this process beyond the layers'
/// weights, inputs and outputs: libtorch's thread pool, each thread's stack and allocator arena,
/// the copy thread's. Measured as the run measures its peak, and first, before any other figure
/// starts libtorch's threads. With it, what each distinct product adds ([`cpu_product_bytes`]);
/// the runtime's figure is net of the products its layer computed.
fn cpu_runtime_bytes() -> Result<(u64, u64), RunError> {
    let baseline = super::memory::Baseline::now();
    let width = 256i64;
    let tokens = 64u64;
    let weights = small_layer(width, Device::Cpu)?;
    let weight_bytes: u64 = weights.iter().map(|w| super::streams::tensor_bytes(&w.tensor)).sum();
    // The arena a run holds for its activations (three regions of the widest rows), and the ring
    // its copy thread copies into (two buffers of a layer).
    let arena = 3 * tokens * 4 * width as u64 * 2;
    let layout = super::streams::layout([weights.as_slice()]);
    let ring: Vec<Tensor> =
        (0..2).map(|_| Tensor::f_zeros([layout.total as i64], (Kind::Uint8, Device::Cpu))).collect::<Result<_, _>>()?;
    let own = weight_bytes + arena + 2 * layout.total;
    std::thread::scope(|scope| -> Result<(), RunError> {
        // The copy thread copies the layer into a ring as a run's does, so that its stack and its
        // allocator arena are measured too (with libtorch's copy, which may start threads of its
        // own where the run's copies its bytes itself: the figure errs high).
        let handles: Vec<Tensor> = weights.iter().map(|w| w.tensor.shallow_clone()).collect();
        let slots: Vec<Tensor> = ring.iter().map(Tensor::shallow_clone).collect();
        let offsets = layout.offsets.first().cloned().unwrap_or_default();
        let copies = scope.spawn(move || -> Result<(), RunError> {
            for round in 0..8 {
                let slot = slots.get(round % 2).ok_or_else(|| RunError::Torch("no slot".into()))?;
                for (w, &offset) in handles.iter().zip(&offsets) {
                    super::streams::view_like(slot, offset, w)?.f_copy_(w)?;
                }
                super::memory::sample();
            }
            Ok(())
        });
        let mut inputs = super::compute::Inputs::new(tokens, Device::Cpu, arena)?;
        for _ in 0..8 {
            super::compute::layer(&weights, &super::compute::Work::default(), &mut inputs)?;
            super::memory::sample();
        }
        copies.join().map_err(|_| RunError::Torch("the probe's copy thread panicked".into()))??;
        Ok(())
    })?;
    let measured = baseline.peak_above().saturating_sub(own);
    let ProductBytes { mean, counted } = cpu_product_bytes()?;
    drop(ring);
    // The layer computed four products (`qkv`, `proj` and the two of the MLP, 64 rows each):
    // their kernels are counted apart, as a plan's products are.
    let measured = measured.saturating_sub(SMALL_LAYER_PRODUCTS * mean);
    // Rounded up to a quarter MiB, and [`ALLOCATOR_SLACK`] more: glibc keeps freed chunks
    // resident in each thread's heap, and a run's pattern of allocations (the plan read and
    // parsed, layers of many widths, the scratch of products of a few hundred rows) leaves more
    // of them than this one layer does. With the allocator held where glibc's thresholds rise to
    // (`steady_allocator`), the tiny Flux at 256 tokens held 1.5 MiB more than this figure
    // rounded beside its products' kernels at their mean (the slack and the products counted
    // above their mean cover that); the mapping threshold held at 128 KiB, the plan-truth
    // benchmark's runs held at most 0.14 MiB more.
    Ok((measured.div_ceil(QUARTER_MIB) * QUARTER_MIB + ALLOCATOR_SLACK, counted))
}

/// Distinct products of the probe's small layer: see [`cpu_runtime_bytes`].
const SMALL_LAYER_PRODUCTS: u64 = 4;

/// What each distinct matrix product adds to the process for good: libtorch's math library
/// generates kernels for each shape it meets (a CPU with native BF16: oneDNN's, taken a quarter
/// MiB at a time, one to four quarters a product as the heap has room) and caches them for the
/// rest of the run, so that a plan's memory grows with the distinct products its models
/// compute, not with their number.
struct ProductBytes {
    /// The mean of what each of [`PRODUCT_SHAPES`] products, none met before, left behind.
    mean: u64,
    /// What a plan counts a product at: the mean and half the products' standard deviation
    /// (quarter MiBs fall unevenly, and a model's shapes may hold more than the probe's: at their
    /// mean, 0.6 MiB, the tiny Flux at 64 tokens held 1.9 MiB more than its plan counted),
    /// rounded up to 4 KiB; 0 where nothing stays.
    counted: u64,
}

/// Measures [`ProductBytes`]: the resident memory each product leaves behind, its inputs and
/// outputs made first.
fn cpu_product_bytes() -> Result<ProductBytes, RunError> {
    let kind = Kind::BFloat16;
    let widest = PRODUCT_SHAPES.iter().map(|s| s.1.max(s.2)).max().unwrap_or(1);
    let rows = PRODUCT_SHAPES.iter().map(|s| s.0).max().unwrap_or(1);
    // Inputs, weights and outputs as a run's: views of buffers made first, a weight transposed.
    let x = Tensor::f_ones([rows * widest], (kind, Device::Cpu))?;
    let w = Tensor::f_ones([widest * widest], (kind, Device::Cpu))?;
    let out = Tensor::f_zeros([rows * widest], (kind, Device::Cpu))?;
    super::memory::sample();
    let mut held = Vec::new();
    for &(rows, inner, outputs) in &PRODUCT_SHAPES {
        let a = x.f_narrow(0, 0, rows * inner)?.f_view([rows, inner])?;
        let b = w.f_narrow(0, 0, outputs * inner)?.f_view([outputs, inner])?.f_transpose(0, 1)?;
        let room = out.f_narrow(0, 0, rows * outputs)?.f_view([rows, outputs])?;
        let before = super::memory::anon_now();
        drop(super::compute::product(&a, &b, Some(&room))?);
        super::memory::sample();
        held.push(super::memory::anon_now().saturating_sub(before) as f64);
    }
    let n = held.len().max(1) as f64;
    let mean = held.iter().sum::<f64>() / n;
    let deviation = (held.iter().map(|h| (h - mean).powi(2)).sum::<f64>() / n).sqrt();
    let page = |bytes: f64| (bytes.ceil() as u64).div_ceil(4096) * 4096;
    Ok(ProductBytes { mean: page(mean), counted: page(mean + deviation / 2.0) })
}

/// What a layer norm holds beyond its input and output while it runs, per byte of its input, at
/// the most of the thread counts a run computes with (every core, and one fewer beside a copy
/// thread): what a norm of [`NORM_ROWS`] rows of [`NORM_WIDTH`] leaves resident
/// ([`fresh_bytes_held`]), over its input's bytes (a CPU with native BF16: 1 byte a byte, at one thread and at two); the allocator
/// keeps them once freed.
fn cpu_norm_workspace() -> Result<f64, RunError> {
    let kind = Kind::BFloat16;
    let x = super::compute::pattern(&[NORM_ROWS, NORM_WIDTH], kind, Device::Cpu)?;
    let out = Tensor::f_zeros([NORM_ROWS, NORM_WIDTH], (kind, Device::Cpu))?;
    let w = Tensor::f_ones([NORM_WIDTH], (kind, Device::Cpu))?;
    let input = (NORM_ROWS * NORM_WIDTH * 2) as f64;
    let all = tch::get_num_threads();
    let mut most: f64 = 0.0;
    for threads in [all, (all - 1).max(1)] {
        tch::set_num_threads(threads);
        let held = fresh_bytes_held(|| super::compute::norm(&x, Some(&out), &w, NORM_WIDTH));
        most = most.max(held? as f64 / input);
    }
    tch::set_num_threads(all);
    Ok(most)
}

/// The resident memory `op` leaves behind once the heaps' free memory is handed back first, so
/// that its temporaries take fresh pages (which the allocator then keeps); what it returns is
/// dropped inside.
fn fresh_bytes_held(op: impl FnOnce() -> Result<Tensor, RunError>) -> Result<u64, RunError> {
    super::memory::release_free_memory();
    let before = super::memory::anon_now();
    drop(op()?);
    Ok(super::memory::anon_now().saturating_sub(before))
}

/// What making a weight computable holds while it runs, per element of the weight, at the most
/// of the kinds a run makes computable: GGUF blocks dequantized (through 32-bit values) and
/// 8-bit floats converted to BF16. Measured as [`cpu_norm_workspace`] is, on a weight of
/// [`DEQUANTIZED`] elements; the BF16 weight made is part of it (a layer holds it while it runs).
fn cpu_dequantize_workspace() -> Result<f64, RunError> {
    let mut most = 0;
    for dtype in super::gguf::QUANTIZED {
        let Some((bytes, weights)) = super::gguf::block(dtype) else { continue };
        let raw = Tensor::f_zeros([DEQUANTIZED / weights * bytes], (Kind::Uint8, Device::Cpu))?;
        most = most.max(fresh_bytes_held(|| super::gguf::dequantize(&raw, dtype, &[1024, DEQUANTIZED / 1024]))?);
    }
    let f8 = Tensor::f_zeros([DEQUANTIZED], (Kind::Float8e4m3fn, Device::Cpu))?;
    most = most.max(fresh_bytes_held(|| Ok(f8.f_to_kind(Kind::BFloat16)?))?);
    Ok(most as f64 / DEQUANTIZED as f64)
}

/// Elements of the weight [`cpu_dequantize_workspace`] makes computable: 4 MiB as 32-bit values,
/// under the allocator's mapping threshold.
const DEQUANTIZED: i64 = 1 << 20;

/// The norm [`cpu_norm_workspace`] measures: 4 MiB of BF16 input, larger than any temporary
/// the probe made before, smaller than the allocator's mapping threshold (32 MiB).
const NORM_ROWS: i64 = 8192;
const NORM_WIDTH: i64 = 256;

/// `(rows, inner, outputs)` of the products [`cpu_product_bytes`] measures, as a model's: one row
/// (modulation) to a few hundred (tokens), square and wide, none of them the small layer's. (Of
/// rows up to 64 alone, they held 600 KiB each where a model's products at 64 to 320 rows held
/// 700 on average.)
const PRODUCT_SHAPES: [(i64, i64, i64); 16] = [
    (1, 256, 768),
    (1, 128, 512),
    (1, 512, 256),
    (16, 384, 640),
    (16, 256, 128),
    (16, 1024, 384),
    (48, 128, 896),
    (48, 640, 256),
    (48, 256, 512),
    (64, 512, 512),
    (64, 384, 128),
    (64, 768, 1024),
    (256, 2048, 256),
    (256, 128, 768),
    (512, 256, 256),
    (512, 768, 512),
];

const QUARTER_MIB: u64 = 1 << 18;

/// What a run's allocator keeps beyond the probe's measurement: see [`cpu_runtime_bytes`].
const ALLOCATOR_SLACK: u64 = 4 * QUARTER_MIB;

/// The runtime's own memory on a GPU: what libtorch holds on the device beyond the tensors it
/// was asked for once it has run layers (cuBLAS handles and workspaces, the caching allocator's
/// blocks), measured through the driver as the run measures its peak. None when the driver
/// cannot say.
fn gpu_runtime_bytes(device: Device) -> Result<Option<u64>, RunError> {
    let Device::Cuda(n) = device else { return Ok(None) };
    let Some((before, _)) = super::memory::cuda_memory(n) else { return Ok(None) };
    let width = 1024i64;
    let weights = small_layer(width, device)?;
    let arena = 3 * 1024 * 4 * width as u64 * 2;
    let mut inputs = super::compute::Inputs::new(1024, device, arena)?;
    super::compute::layer(&weights, &super::compute::Work::default(), &mut inputs)?;
    sync(device);
    let Some((after, _)) = super::memory::cuda_memory(n) else { return Ok(None) };
    let own: u64 = weights.iter().map(|w| w.tensor.numel() as u64 * 2).sum::<u64>() + arena;
    Ok(Some(before.saturating_sub(after).saturating_sub(own)))
}

/// Measures what this machine has.
pub fn probe(scratch: &Path) -> Result<Probe, RunError> {
    let mut p = Probe::default();
    let gb = |bytes: i64, s: f64| bytes as f64 / s / 1e9;
    // The runtime's own memory first, before other figures start threads or fill allocators.
    let (cpu_runtime, cpu_product) = cpu_runtime_bytes()?;
    let norm_workspace = cpu_norm_workspace()?;
    let dequantize_workspace = cpu_dequantize_workspace()?;
    // Then what the CUDA side adds on the host (the driver's context, libtorch's CUDA side),
    // from before the driver starts to after each GPU has run a layer.
    let host = super::memory::Baseline::now();
    let mut devices = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        devices.extend((0..tch::Cuda::device_count() as usize).map(Device::Cuda));
    }
    let mut runtime = vec![(Device::Cpu, Some(cpu_runtime))];
    for &device in devices.iter().filter(|d| **d != Device::Cpu) {
        runtime.push((device, gpu_runtime_bytes(device)?));
    }
    let gpu_host = (devices.len() > 1).then(|| host.peak_above().div_ceil(QUARTER_MIB) * QUARTER_MIB);
    if let Some(bytes) = gpu_host {
        p.figures.push(Figure::new("cpu host memory of the CUDA side", bytes as f64 / f64::from(1 << 20), "MiB"));
    }
    for (device, bytes) in &runtime {
        if let Some(bytes) = bytes {
            let what = format!("{} runtime memory", profile_device(*device));
            p.figures.push(Figure::new(what, *bytes as f64 / f64::from(1 << 20), "MiB"));
        }
    }
    p.figures.push(Figure::new("cpu runtime memory per distinct product", cpu_product as f64 / 1024.0, "KiB"));
    p.figures.push(Figure::new("cpu norm workspace per byte of its input", norm_workspace, "bytes"));
    p.figures.push(Figure::new("cpu dequantize workspace per weight", dequantize_workspace, "bytes"));

    // Host memory.
    let host = Tensor::f_ones([COPY_BYTES], (Kind::Uint8, Device::Cpu))?;
    let t = median(|| host.f_detach_copy().map(drop).map_err(RunError::from))?;
    p.figures.push(Figure::timed("host memcpy", gb(COPY_BYTES, t.seconds), "GB/s", t));

    let staged_threads = (devices.len() > 1).then(super::streams::gather_threads);
    let DiskRead { warm, cold, staged } = disk_read(scratch, staged_threads)?;
    p.figures.push(Figure::timed("disk read (page cache, mapped)", gb(COPY_BYTES, warm.seconds), "GB/s", warm));
    if let Some(cold) = cold {
        p.figures.push(Figure::timed("disk read (cold, mapped)", gb(COPY_BYTES, cold.seconds), "GB/s", cold));
    }
    if let (Some(staged), Some(threads)) = (staged, staged_threads) {
        let what = format!("disk read (page cache, mapped) into a GPU's staging buffer, {threads} threads");
        p.figures.push(Figure::timed(what, gb(COPY_BYTES, staged.seconds), "GB/s", staged));
    }
    p.profile.disk = Some(ProfileDisk {
        read_bytes_per_second: bandwidth(COPY_BYTES, warm.seconds),
        cold_read_bytes_per_second: cold.map(|c| bandwidth(COPY_BYTES, c.seconds)),
        staged_read_bytes_per_second: staged.map(|s| bandwidth(COPY_BYTES, s.seconds)),
        spread: Some(spread_of([Some(warm), cold, staged].into_iter().flatten())),
    });

    // Compute, per dtype, on weights drawn the same way every time.
    tch::manual_seed(0);
    for &device in &devices {
        let name = profile_device(device).to_string();
        for (kind, label) in [(Kind::Float, "F32"), (Kind::BFloat16, "BF16"), (Kind::Half, "F16")] {
            let (flops, t) = matmul_flops(device, kind)?;
            let (scale, unit) = flops_unit(device);
            p.figures.push(Figure::timed(format!("{name} matmul {label}"), flops / scale, unit, t));
            if kind != Kind::BFloat16 {
                continue;
            }
            let mut timings = vec![t];
            let measured = flops_by_size(device)?;
            for &(n, f, t) in &measured {
                p.figures.push(Figure::timed(format!("{name} matmul BF16 {n}x{n}x{n}"), f / scale, unit, t));
                timings.push(t);
            }
            let curve = mgc_core::profile::monotone(&measured.iter().map(|&(n, f, _)| (n, f)).collect::<Vec<_>>());
            let threads = if device == Device::Cpu {
                std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            } else {
                1
            };
            let compute = compute_figures(device, threads)?;
            let slowdown = beside_copies(&mut p, &name, device);
            push_compute(&mut p.figures, &name, "", &compute.all, &compute.timings);
            timings.extend(compute.timings.iter().copied());
            let streaming = compute.streaming.map(|(threads, s, t)| {
                let what = format!(" with {threads} thread{}", if threads == 1 { "" } else { "s" });
                push_compute(&mut p.figures, &name, &what, &s, &t);
                timings.extend(t.iter().copied());
                StreamingFigures {
                    threads,
                    seconds_per_tensor: s.per_tensor,
                    elements_per_second: s.norms,
                    adds_per_second: Some(s.adds),
                    matmul: s.table,
                }
            });
            let all = compute.all;
            p.profile.device.push(ProfileDevice {
                name: profile_device(device),
                flops_per_second: flops,
                seconds_per_tensor: Some(all.per_tensor),
                elements_per_second: Some(all.norms),
                adds_per_second: Some(all.adds),
                threads: Some(threads),
                flops_by_size: curve,
                matmul: Some(all.table),
                streaming,
                runtime_bytes: runtime.iter().find(|(d, _)| *d == device).and_then(|(_, b)| *b),
                gpu_host_bytes: if device == Device::Cpu { gpu_host } else { None },
                product_bytes: (device == Device::Cpu).then_some(cpu_product),
                norm_workspace: (device == Device::Cpu).then_some(norm_workspace),
                dequantize_workspace: (device == Device::Cpu).then_some(dequantize_workspace),
                copy_slowdown: slowdown,
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
    p.warnings = loose_figures(&p.figures);
    Ok(p)
}

/// The figures of [`ComputeFigures`] at one thread count (`what` names it): the cost of one small
/// weight, the norm, then the matmul table, a line a shape; `timings` in that order.
fn push_compute(figures: &mut Vec<Figure>, name: &str, what: &str, compute: &Compute, timings: &[Timing]) {
    let mut timings = timings.iter().copied();
    let mut push = |what: String, value: f64, unit: &'static str| {
        let (spread, within) = timings.next().map_or((0.0, 0.0), |t| (t.spread, t.within));
        figures.push(Figure { what, value, unit, spread, within });
    };
    push(format!("{name} cost of one small weight{what}"), compute.small_weight * 1e6, "µs");
    push(format!("{name} norm{what}"), compute.norms / 1e9, "G elements/s");
    for (inner, row) in compute.table.inner.iter().zip(&compute.table.flops_per_second) {
        for (outputs, flops) in compute.table.outputs.iter().zip(row) {
            push(format!("{name} matmul BF16 inner {inner} outputs {outputs}{what}"), flops / 1e9, "GFLOP/s");
        }
    }
    push(format!("{name} bias add{what}"), compute.adds / 1e9, "G elements/s");
    if let Some(block) = compute.block {
        push(format!("{name} block of {BLOCK_ROWS} rows at width {BLOCK_WIDTH}{what}"), block * 1e3, "ms");
        // Known as well as the block's time beyond its arithmetic round by round.
        let (spread, within) = compute.per_tensor_timing.map_or((0.0, 0.0), |t| (t.spread, t.within));
        figures.push(Figure {
            what: format!("{name} cost of one weight in that block, beyond its arithmetic{what}"),
            value: compute.per_tensor * 1e6,
            unit: "µs",
            spread,
            within,
        });
    }
}

/// The widest spread of some timings.
fn spread_of(timings: impl IntoIterator<Item = Timing>) -> f64 {
    timings.into_iter().map(|t| t.spread).fold(0.0, f64::max)
}

/// A warning for every figure known less well than [`LOOSE`] either way.
fn loose_figures(figures: &[Figure]) -> Vec<String> {
    figures
        .iter()
        .filter(|f| f.within > LOOSE)
        .map(|f| {
            format!(
                "{}: known only within ±{:.0}%, its runs spread over {:.0}% of it (something else was \
                 running?); `mgc probe` on an idle machine gives steadier figures",
                f.what,
                f.within * 100.0,
                f.spread * 100.0
            )
        })
        .collect()
}

/// The model file's read speeds, as the runtime reads the `disk` tier.
struct DiskRead {
    /// On one thread, as a CPU's ring is filled: the page cache holding the file, as it does
    /// after a first step when the file fits in RAM.
    warm: Timing,
    /// On one thread, the file dropped from the page cache before each run, as a file larger
    /// than the cache is read every step; `None` where the page cache cannot be dropped for one
    /// file.
    cold: Option<Timing>,
    /// Warm, on the threads a GPU's staging buffer is gathered with, where that was asked for.
    staged: Option<Timing>,
}

/// Cold reads of the probe's file: their mean, less the fastest and slowest tenth, is the figure
/// ([`Timing::of_rounds`]). A disk read cold varies from read to read on an idle machine (a
/// virtual disk's five reads spread over 48–59% of their median, every probe): a plan whose models
/// exceed RAM reads it cold every step, and takes the mean of those reads: fifteen of them knew it
/// within ±6–11% in six probes on that disk, where the median of five was known within ±24–29%
/// and warned each time.
const COLD_READS: usize = 15;

/// The model file's read speeds as the runtime reads the `disk` tier, through a mapping into a
/// buffer of its own, by the runtime's gathering routine: warm and cold on one thread, and warm
/// on `staged_threads` where given.
fn disk_read(scratch: &Path, staged_threads: Option<usize>) -> Result<DiskRead, RunError> {
    let file = scratch.join(format!(".mgc-probe-{}", std::process::id()));
    let read = |e: std::io::Error| RunError::Read { path: file.display().to_string(), message: e.to_string() };
    let written = fs_err::File::create(&file).and_then(|mut f| {
        std::io::Write::write_all(&mut f, &vec![7u8; COPY_BYTES as usize])?;
        f.sync_all()
    });
    let measured = written.and_then(|()| {
        let mut buffer = vec![0u8; COPY_BYTES as usize];
        let mut read_once = |cold: bool, threads: usize| -> std::io::Result<f64> {
            let f = fs_err::File::open(&file)?;
            if cold && !drop_cached(f.file()) {
                return Err(std::io::Error::other("cannot drop the page cache"));
            }
            let start = Instant::now();
            #[allow(unsafe_code, reason = "a file this process just wrote, mapped read-only")]
            // SAFETY: the file is private to this probe and not changed while mapped.
            let mapped = unsafe { memmap2::Mmap::map(f.file())? };
            super::streams::gather_into(&mapped, &mut buffer, threads);
            Ok(start.elapsed().as_secs_f64())
        };
        read_once(false, 1)?;
        let warm: Vec<f64> = (0..RUNS).map(|_| read_once(false, 1)).collect::<std::io::Result<_>>()?;
        let cold: Option<Vec<f64>> = (0..COLD_READS).map(|_| read_once(true, 1).ok()).collect();
        let staged = match staged_threads {
            Some(threads) => Some((0..RUNS).map(|_| read_once(false, threads)).collect::<std::io::Result<Vec<f64>>>()?),
            None => None,
        };
        Ok(DiskRead {
            warm: Timing::of(&warm),
            cold: cold.map(|c| Timing::of_rounds(&c)),
            staged: staged.map(|s| Timing::of(&s)),
        })
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
             and F16; the mean of {ROUNDS} taken in rounds, less the fastest and slowest tenth, for the \
             cost of one small weight, the norm and the matmul table, and of {COLD_READS} reads for the disk read \
             cold); ± is how well a figure is known: half the spread of a median's runs, twice the standard \
             error of a mean."
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
        for w in self.warnings.iter().take(SHOWN_WARNINGS) {
            let _ = writeln!(t, "warning: {w}");
        }
        let more = self.warnings.len().saturating_sub(SHOWN_WARNINGS);
        if more > 0 {
            let _ = writeln!(
                t,
                "warning: and {more} more figure{} known looser than ±{:.1}% (every one is in the profile's comments)",
                if more == 1 { "" } else { "s" },
                LOOSE * 100.0
            );
        }
        t
    }
}

/// Warnings shown one by one in the human output; the rest are counted (a busy machine gives
/// dozens, all alike).
const SHOWN_WARNINGS: usize = 5;

/// How well a timed figure is known, as ` (±N%)`; nothing for a single reading.
fn spread_words(f: &Figure) -> String {
    if f.within > 0.0 { format!(" (±{:.0}%)", f.within * 100.0) } else { String::new() }
}

#[cfg(test)]
mod tests {
    use super::{
        BLOCK_ROWS, BLOCK_TENSORS, BLOCK_WIDTH, Figure, Probe, SMALL_LAYER_ARENA, Timing, block_arithmetic,
        loose_figures, reference_block,
    };
    use tch::Device;

    #[test]
    #[expect(clippy::unwrap_used, reason = "a test")]
    fn the_reference_blocks_arithmetic_is_counted_as_the_cost_model_counts_a_layers() {
        let (weights, work, arena) = reference_block(Device::Cpu).unwrap();
        assert_eq!(weights.len(), BLOCK_TENSORS);
        assert_eq!(work.rows.len(), BLOCK_TENSORS);
        // The arena holds the widest rows whole: no product goes through in chunks.
        assert!(arena / 3 >= (BLOCK_ROWS * 4 * BLOCK_WIDTH * 2) as u64);
        // At 1 GFLOP/s everywhere and 1 G elements/s: the products' 2·r·w·12w, the attention's
        // 4·r²·w, the norms' 2·r·w and the biases' 9·r·w, in nanoseconds.
        let flat = mgc_core::profile::MatmulTable {
            inner: vec![32.0, 4096.0],
            outputs: vec![512.0, 1e6],
            flops_per_second: vec![vec![1e9, 1e9], vec![1e9, 1e9]],
        };
        let (r, w) = (BLOCK_ROWS as f64, BLOCK_WIDTH as f64);
        let want = (24.0 * r * w * w + 4.0 * r * r * w + 2.0 * r * w + 9.0 * r * w) / 1e9;
        let got = block_arithmetic(&flat, 1e9, 1e9);
        assert!((got - want).abs() < want * 1e-12, "{got} against {want}");
        // Biases at twice the rate save half their time.
        let faster = block_arithmetic(&flat, 1e9, 2e9);
        assert!((got - faster - 4.5 * r * w / 1e9).abs() < want * 1e-12);
    }

    #[test]
    #[expect(clippy::unwrap_used, reason = "a test")]
    fn the_small_layer_goes_through_an_arena_as_a_run_does() {
        let with = super::super::compute::Inputs::new(1, Device::Cpu, SMALL_LAYER_ARENA).unwrap();
        assert!(with.has_arena());
        assert!(!super::super::compute::Inputs::new(1, Device::Cpu, 3 * 8 * 2).unwrap().has_arena());
    }

    #[test]
    fn figures_known_loosely_are_warned_of_and_a_busy_machine_gets_a_count() {
        let timed = |what: &str, runs: &[f64]| Figure::timed(what, 1.0, "s", Timing::of_rounds(runs));
        let steady = timed("steady", &[1.0; 21]);
        // Two modes a long way apart, near even in number: the mean is known within some ±17%.
        let mut two_modes = vec![1.0; 11];
        two_modes.extend([2.0; 10]);
        let loose = timed("loose", &two_modes);
        let one = Figure::new("one reading", 1.0, "MiB");
        let warnings = loose_figures(&[steady.clone(), loose.clone(), one]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings.first().is_some_and(|w| w.starts_with("loose: known only within ±")), "{warnings:?}");

        let busy = Probe { figures: vec![steady], warnings: vec!["w".to_owned(); 7], ..Probe::default() };
        let text = busy.human();
        assert_eq!(text.matches("warning: w\n").count(), 5, "{text}");
        assert!(text.contains("warning: and 2 more figures known looser than ±12.5%"), "{text}");
        assert!(text.starts_with("steady"), "{text}");
        assert!(!text.lines().next().unwrap_or("").contains('±'), "a steady figure has no ±: {text}");
    }

    #[test]
    fn a_few_runs_give_their_median_and_full_spread() {
        let t = Timing::of(&[3.0, 1.0, 2.0]);
        assert_eq!(t, Timing { seconds: 2.0, spread: 1.0, within: 0.5 });
        assert_eq!(Timing::of(&[4.0, 1.0, 2.0, 3.0]).seconds, 2.5);
    }

    #[test]
    fn runs_in_rounds_give_their_mean_without_the_outer_tenths() {
        // One run interrupted and one lucky: both dropped, the rest agree.
        let mut runs = vec![1.0; 18];
        runs.extend([10.0, 0.1]);
        assert_eq!(Timing::of_rounds(&runs), Timing { seconds: 1.0, spread: 0.0, within: 0.0 });
        // Two modes: the median is the commoner one, the mean what a long run takes.
        let mut runs = vec![1.0; 11];
        runs.extend([0.6; 9]);
        assert_eq!(Timing::of(&runs).seconds, 1.0);
        let t = Timing::of_rounds(&runs);
        assert!((t.seconds - (7.0 * 0.6 + 9.0) / 16.0).abs() < 1e-12, "{t:?}");
        assert!((t.spread - 0.4 / t.seconds).abs() < 1e-12, "{t:?}");
        // Seven runs at 0.6 and nine at 1 of the sixteen kept: their standard deviation, over
        // the root of sixteen, twice, as a fraction of the mean.
        let deviation = ((7.0 * (0.6 - t.seconds).powi(2) + 9.0 * (1.0 - t.seconds).powi(2)) / 15.0_f64).sqrt();
        assert!((t.within - 2.0 * deviation / 4.0 / t.seconds).abs() < 1e-12, "{t:?}");
        assert!(t.within < t.spread / 2.0, "a mean of many runs is known better than one run");
    }

    #[test]
    fn no_runs_give_nothing() {
        assert_eq!(Timing::of(&[]), Timing { seconds: 0.0, spread: 0.0, within: 0.0 });
        assert_eq!(Timing::of_rounds(&[]), Timing { seconds: 0.0, spread: 0.0, within: 0.0 });
    }
}
