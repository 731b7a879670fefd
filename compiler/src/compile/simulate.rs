//! The simulation of one model's steps, a pure function of its layers, their homes and the cost
//! model: placement's search calls it to compare candidates, the schedule stage to time the
//! copies it adds to the graph.
//!
//! Streamed layers are copied into a ring of `prefetch + 1` buffers on the compute device: a copy
//! starts as soon as its stream (one per source device) is free and the buffer it reuses has been
//! released (the layer that used it has finished computing). Consecutive streamed layers smaller
//! than `batch_below` travel together in one copy. [`STEPS`] steps are simulated; the steady-state
//! step is the average over the last half, and the last step is the one reported, relative to its
//! start, so that its first copies overlap the end of the step before.

use mgc_core::Device;
use serde::Serialize;

use super::cost::CostModel;
use super::graph::GraphLayer;

/// One copy of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulatedCopy {
    pub first: usize,
    pub last: usize,
    pub from: Device,
    pub bytes: u64,
    pub batched: bool,
    /// Issued once this layer has finished and released its buffer; `None`: at once.
    pub issue_after: Option<usize>,
    pub from_previous_step: bool,
    /// Relative to the start of the step (negative: during the previous step).
    pub start: f64,
    pub end: f64,
}

/// What one model's steady-state step looks like: its copies, and its timings.
#[derive(Clone, Debug, PartialEq)]
pub struct Simulation {
    pub copies: Vec<SimulatedCopy>,
    pub step: Step,
}

/// One model's steady-state step, timed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub prefetch: u32,
    /// Per layer: compute seconds, start and end within the step.
    pub layers: Vec<(f64, f64, f64)>,
    pub step_seconds: f64,
    pub lower_bound_seconds: f64,
    pub compute_seconds: f64,
    pub copy_seconds: f64,
    pub hidden_copy_fraction: f64,
    /// The ring of copy buffers on the compute device, as the runtime allocates it for the run:
    /// `prefetch + 1` slots, each as large as the largest copy laid out (every tensor at an
    /// aligned offset); 0 without copies.
    pub inflight_peak: u64,
    /// Pinned host memory for copies from `cpu` or `disk` (on `cpu`).
    pub staging: u64,
}

/// What a simulation needs to know of a model: its layers, each layer's compute time, where
/// each lives, and where it computes.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    pub layers: &'a [GraphLayer],
    pub times: &'a [f64],
    pub homes: &'a [Device],
    pub compute: Device,
    pub batch_below: u64,
}

/// Steps simulated: enough for the copy pipeline to settle; the last half is averaged.
const STEPS: usize = 8;

/// The largest prefetch distance `auto` tries.
pub const MAX_AUTO_PREFETCH: u32 = 4;

/// Groups streamed layers into copies: a layer of `batch_below` or more alone, smaller consecutive
/// ones from the same device together while they stay below it.
fn group_copies(model: &Model<'_>) -> Vec<SimulatedCopy> {
    let (layers, homes, batch_below) = (model.layers, model.homes, model.batch_below);
    let mut out = Vec::new();
    let mut i = 0;
    while let (Some(layer), Some(&from)) = (layers.get(i), homes.get(i)) {
        if from == model.compute {
            i += 1;
            continue;
        }
        let (mut last, mut bytes) = (i, layer.bytes);
        if layer.bytes < batch_below {
            while let (Some(next), Some(&home)) = (layers.get(last + 1), homes.get(last + 1)) {
                if home != from || next.bytes >= batch_below || bytes + next.bytes > batch_below {
                    break;
                }
                last += 1;
                bytes += next.bytes;
            }
        }
        out.push(SimulatedCopy {
            first: i,
            last,
            from,
            bytes,
            batched: last > i,
            issue_after: None,
            from_previous_step: false,
            start: 0.0,
            end: 0.0,
        });
        i = last + 1;
    }
    out
}

/// The state of the simulated streams over [`STEPS`] steps: copy `g` is the copy `g % k` of step
/// `g / k`, for `k` copies a step.
struct Streams<'a> {
    copies: &'a [SimulatedCopy],
    rates: Vec<f64>,
    /// The copy that carries each layer.
    copy_of: Vec<Option<usize>>,
    slots: usize,
    /// Start and end of every copy of every step.
    copy: Vec<(f64, f64)>,
    /// When the buffer of every copy of every step is released.
    release: Vec<Option<f64>>,
    stream_free: Vec<(Device, f64)>,
    next: usize,
}

impl<'a> Streams<'a> {
    fn new(model: &Model<'_>, copies: &'a [SimulatedCopy], cost: &CostModel, prefetch: u32) -> Self {
        let rates = copies.iter().map(|t| cost.rate(t.from, model.compute).bytes_per_second.max(1.0)).collect();
        let mut copy_of = vec![None; model.layers.len()];
        for (j, t) in copies.iter().enumerate() {
            for slot in copy_of.iter_mut().take(t.last + 1).skip(t.first) {
                *slot = Some(j);
            }
        }
        let total = copies.len() * STEPS;
        Self {
            copies,
            rates,
            copy_of,
            slots: prefetch as usize + 1,
            copy: vec![(0.0, 0.0); total],
            release: vec![None; total],
            stream_free: Vec::new(),
            next: 0,
        }
    }

    fn per_step(&self) -> usize {
        self.copies.len()
    }

    /// Issues every copy whose buffer is free, in order, each on its source device's stream.
    fn issue_ready(&mut self) {
        let k = self.per_step().max(1);
        while self.next < self.copy.len() {
            let ready = if self.next < self.slots {
                Some(0.0)
            } else {
                self.release.get(self.next - self.slots).copied().flatten()
            };
            let Some(ready) = ready else { break };
            let j = self.next % k;
            let (from, bytes, rate) = match (self.copies.get(j), self.rates.get(j)) {
                (Some(t), Some(r)) => (t.from, t.bytes as f64, *r),
                _ => break,
            };
            let free = self.stream_free.iter().find(|(d, _)| *d == from).map_or(0.0, |(_, f)| *f);
            let start = free.max(ready);
            let end = start + bytes / rate;
            match self.stream_free.iter_mut().find(|(d, _)| *d == from) {
                Some(entry) => entry.1 = end,
                None => self.stream_free.push((from, end)),
            }
            if let Some(c) = self.copy.get_mut(self.next) {
                *c = (start, end);
            }
            self.next += 1;
        }
    }

    /// The copy (over all steps) that carries layer `i` of step `s`, if it is streamed.
    fn carrying(&self, step: usize, i: usize) -> Option<(usize, usize)> {
        let j = self.copy_of.get(i).copied().flatten()?;
        Some((step * self.per_step() + j, j))
    }

    /// When layer `i` of step `s` has its weights.
    fn ready_for(&self, step: usize, i: usize) -> f64 {
        self.carrying(step, i).and_then(|(g, _)| self.copy.get(g)).map_or(0.0, |c| c.1)
    }

    /// Layer `i` of step `s` ended at `end`: the last layer of a copy releases its buffer.
    fn layer_done(&mut self, step: usize, i: usize, end: f64) {
        if let Some((g, j)) = self.carrying(step, i)
            && self.copies.get(j).is_some_and(|t| t.last == i)
            && let Some(r) = self.release.get_mut(g)
        {
            *r = Some(end);
        }
    }
}

/// Simulates a model's steps with a given prefetch distance.
pub fn simulate(model: &Model<'_>, cost: &CostModel, prefetch: u32) -> Simulation {
    let n = model.layers.len();
    let mut copies = group_copies(model);
    let mut streams = Streams::new(model, &copies, cost, prefetch);
    let mut compute_free = 0.0_f64;
    let mut layer_times = vec![(0.0, 0.0); n * STEPS];
    let mut step_ends = [0.0_f64; STEPS];
    for (s, step_end) in step_ends.iter_mut().enumerate() {
        for i in 0..n {
            streams.issue_ready();
            let start = compute_free.max(streams.ready_for(s, i));
            let end = start + model.times.get(i).copied().unwrap_or(0.0);
            compute_free = end;
            if let Some(t) = layer_times.get_mut(s * n + i) {
                *t = (start, end);
            }
            streams.layer_done(s, i, end);
        }
        *step_end = compute_free;
    }
    let Streams { rates, copy, slots, .. } = streams;
    let report = Report { n, k: copies.len(), step_ends, layer_times, copy };
    let layers = report.layer_timings(model.times);
    report.time_copies(&mut copies, slots);
    let compute_seconds: f64 = model.times.iter().sum();
    let copy_seconds: f64 = copies.iter().map(|t| t.end - t.start).sum();
    let lower_bound_seconds = compute_seconds.max(busiest_stream(&copies, &rates));
    // What is left of the pipeline's start-up can make the average a hair faster than any
    // schedule can sustain; the bound holds.
    let step_seconds = report.steady_step().max(lower_bound_seconds);
    let hidden_copy_fraction = report.hidden_fraction(copy_seconds);
    let inflight_peak = ring_bytes(model, &copies, slots);
    let staging = staging(model.compute, &copies);
    Simulation {
        copies,
        step: Step {
            prefetch,
            layers,
            step_seconds,
            lower_bound_seconds,
            compute_seconds,
            copy_seconds,
            hidden_copy_fraction,
            inflight_peak,
            staging,
        },
    }
}

/// What the simulated steps left behind, read for the reported (last) step.
struct Report {
    n: usize,
    k: usize,
    step_ends: [f64; STEPS],
    layer_times: Vec<(f64, f64)>,
    copy: Vec<(f64, f64)>,
}

impl Report {
    const LAST: usize = STEPS - 1;

    /// The start of the reported step.
    fn t0(&self) -> f64 {
        self.step_ends.get(Self::LAST - 1).copied().unwrap_or(0.0)
    }

    /// The steady state: the average over the last half of the simulated steps (the first ones
    /// fill the pipeline).
    fn steady_step(&self) -> f64 {
        let settled = STEPS / 2;
        let end = |s: usize| self.step_ends.get(s).copied().unwrap_or(0.0);
        (end(Self::LAST) - end(settled - 1)) / (Self::LAST + 1 - settled) as f64
    }

    /// Each layer's compute time, start and end within the reported step.
    fn layer_timings(&self, times: &[f64]) -> Vec<(f64, f64, f64)> {
        let t0 = self.t0();
        (0..self.n)
            .map(|i| {
                let (start, end) = self.layer_times.get(Self::LAST * self.n + i).copied().unwrap_or((0.0, 0.0));
                (times.get(i).copied().unwrap_or(0.0), start - t0, end - t0)
            })
            .collect()
    }

    /// The reported step's copy times, and the layer whose buffer each reuses.
    fn time_copies(&self, copies: &mut [SimulatedCopy], slots: usize) {
        let t0 = self.t0();
        let k = self.k.max(1);
        let lasts: Vec<usize> = copies.iter().map(|t| t.last).collect();
        for (j, t) in copies.iter_mut().enumerate() {
            let g = Self::LAST * self.k + j;
            let (start, end) = self.copy.get(g).copied().unwrap_or((0.0, 0.0));
            t.start = start - t0;
            t.end = end - t0;
            if g >= slots {
                let previous = g - slots;
                let (step, index) = (previous / k, previous % k);
                t.issue_after = lasts.get(index).copied();
                t.from_previous_step = step < Self::LAST;
            }
        }
    }

    /// The share of the reported step's copy time that overlaps compute.
    fn hidden_fraction(&self, copy_seconds: f64) -> f64 {
        let mut hidden = 0.0;
        for j in 0..self.k {
            let (start, end) = self.copy.get(Self::LAST * self.k + j).copied().unwrap_or((0.0, 0.0));
            hidden += overlap(&self.layer_times, start, end);
        }
        if copy_seconds > 0.0 { (hidden / copy_seconds).min(1.0) } else { 1.0 }
    }
}

/// Where the runtime puts each tensor of a copy in its buffer: at a multiple of this.
pub const SLOT_ALIGN: u64 = 256;

/// Bytes of the ring of copy buffers: `slots` of the largest copy laid out as the runtime lays it.
fn ring_bytes(model: &Model<'_>, copies: &[SimulatedCopy], slots: usize) -> u64 {
    let laid_out = |c: &SimulatedCopy| -> u64 {
        let layers = model.layers.get(c.first..=c.last).unwrap_or_default();
        layers.iter().flat_map(|l| &l.tensors).map(|t| t.bytes.div_ceil(SLOT_ALIGN) * SLOT_ALIGN).sum()
    };
    copies.iter().map(laid_out).max().unwrap_or(0).saturating_mul(slots as u64)
}

/// The time the busiest copy stream needs for one step's copies.
fn busiest_stream(copies: &[SimulatedCopy], rates: &[f64]) -> f64 {
    let mut per_stream: Vec<(Device, f64)> = Vec::new();
    for (t, rate) in copies.iter().zip(rates) {
        let secs = t.bytes as f64 / rate;
        match per_stream.iter_mut().find(|(d, _)| *d == t.from) {
            Some((_, total)) => *total += secs,
            None => per_stream.push((t.from, secs)),
        }
    }
    per_stream.iter().map(|(_, s)| *s).fold(0.0, f64::max)
}

/// Pinned host memory for copies to an accelerator: batched copies from the host and every copy
/// from the file go through one staging buffer, as large as the largest of them.
fn staging(compute: Device, copies: &[SimulatedCopy]) -> u64 {
    let host = |d: Device| matches!(d, Device::Cpu | Device::Disk);
    if !compute.is_accelerator() {
        return 0;
    }
    copies.iter().filter(|t| host(t.from) && (t.batched || t.from == Device::Disk)).map(|t| t.bytes).max().unwrap_or(0)
}

/// Seconds of `[start, end)` covered by the sorted, disjoint `busy` intervals.
fn overlap(busy: &[(f64, f64)], start: f64, end: f64) -> f64 {
    let first = busy.partition_point(|(_, e)| *e <= start);
    let mut covered = 0.0;
    for &(s, e) in busy.iter().skip(first) {
        if s >= end {
            break;
        }
        covered += e.min(end) - s.max(start);
    }
    covered.max(0.0)
}

/// The prefetch distance the cost model picks, at most `max`: the smallest within 1% of the best
/// step time.
pub fn simulate_auto(model: &Model<'_>, cost: &CostModel, max: u32) -> Simulation {
    let tries: Vec<Simulation> = (1..=max.max(1)).map(|p| simulate(model, cost, p)).collect();
    let best = tries.iter().map(|s| s.step.step_seconds).fold(f64::INFINITY, f64::min);
    tries.into_iter().find(|s| s.step.step_seconds <= best * 1.01 + 1e-12).unwrap_or_else(|| simulate(model, cost, 1))
}
