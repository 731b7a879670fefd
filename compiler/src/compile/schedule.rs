//! `placement_to_schedule`: the copies of one step and when they run, from a simulation of the
//! compute stream and one copy stream per source device.
//!
//! Streamed layers are copied into a ring of `prefetch + 1` buffers on the compute device: a copy
//! starts as soon as its stream is free and the buffer it reuses has been released (the layer that
//! used it has finished computing). Consecutive streamed layers smaller than `batch_below` travel
//! together in one copy. Three steps are simulated and the third is reported: the steady state,
//! where the first copies of a step overlap the end of the one before.

use mgc_core::Device;

use super::cost::CostModel;
use super::graph::GraphLayer;

/// One copy of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledTransfer {
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

/// What one model's step looks like.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSchedule {
    pub prefetch: u32,
    pub transfers: Vec<ScheduledTransfer>,
    /// Per layer: compute seconds, start and end within the step.
    pub layers: Vec<(f64, f64, f64)>,
    pub step_seconds: f64,
    pub lower_bound_seconds: f64,
    pub compute_seconds: f64,
    pub copy_seconds: f64,
    pub hidden_copy_fraction: f64,
    /// Most bytes of copies in flight at once on the compute device.
    pub inflight_peak: u64,
    /// Pinned host memory for copies from `cpu` or `disk` (on `cpu`).
    pub staging: u64,
}

/// Steps simulated: enough for the copy pipeline to settle; the last half is averaged.
const STEPS: usize = 8;

/// Groups streamed layers into copies: a layer of `batch_below` or more alone, smaller consecutive
/// ones from the same device together while they stay below it.
fn transfers(layers: &[GraphLayer], homes: &[Device], compute: Device, batch_below: u64) -> Vec<ScheduledTransfer> {
    let mut out = Vec::new();
    let mut i = 0;
    while let (Some(layer), Some(&from)) = (layers.get(i), homes.get(i)) {
        if from == compute {
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
        out.push(ScheduledTransfer {
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

/// Simulates a model's steps with a given prefetch distance.
pub fn schedule(
    layers: &[GraphLayer],
    times: &[f64],
    homes: &[Device],
    compute: Device,
    cost: &CostModel,
    prefetch: u32,
    batch_below: u64,
) -> ModelSchedule {
    let n = layers.len();
    let times = times.to_vec();
    let mut plan = transfers(layers, homes, compute, batch_below);
    let k = plan.len();
    let rates: Vec<f64> = plan.iter().map(|t| cost.rate(t.from, compute).bytes_per_second.max(1.0)).collect();
    let transfer_of: Vec<Option<usize>> = {
        let mut of = vec![None; n];
        for (j, t) in plan.iter().enumerate() {
            for slot in of.iter_mut().take(t.last + 1).skip(t.first) {
                *slot = Some(j);
            }
        }
        of
    };
    let slots = prefetch as usize + 1;
    let total = k * STEPS;
    let mut copy: Vec<(f64, f64)> = vec![(0.0, 0.0); total];
    let mut release: Vec<Option<f64>> = vec![None; total];
    let mut stream_free: Vec<(Device, f64)> = Vec::new();
    let mut next = 0;
    let mut compute_free = 0.0_f64;
    let mut layer_times = vec![(0.0, 0.0); n * STEPS];
    let mut step_ends = [0.0_f64; STEPS];

    for (s, step_end) in step_ends.iter_mut().enumerate() {
        for i in 0..n {
            // Issue every copy whose buffer is free, in order.
            while next < total {
                let ready = if next < slots { Some(0.0) } else { release.get(next - slots).copied().flatten() };
                let Some(ready) = ready else { break };
                let j = next % k.max(1);
                let (from, bytes, rate) = match (plan.get(j), rates.get(j)) {
                    (Some(t), Some(r)) => (t.from, t.bytes as f64, *r),
                    _ => break,
                };
                let free = stream_free.iter().find(|(d, _)| *d == from).map_or(0.0, |(_, f)| *f);
                let start = free.max(ready);
                let end = start + bytes / rate;
                match stream_free.iter_mut().find(|(d, _)| *d == from) {
                    Some(entry) => entry.1 = end,
                    None => stream_free.push((from, end)),
                }
                if let Some(c) = copy.get_mut(next) {
                    *c = (start, end);
                }
                next += 1;
            }
            let g = transfer_of.get(i).copied().flatten().map(|j| s * k + j);
            let ready = g.and_then(|g| copy.get(g)).map_or(0.0, |c| c.1);
            let start = compute_free.max(ready);
            let end = start + times.get(i).copied().unwrap_or(0.0);
            compute_free = end;
            if let Some(t) = layer_times.get_mut(s * n + i) {
                *t = (start, end);
            }
            if let (Some(g), Some(j)) = (g, transfer_of.get(i).copied().flatten())
                && plan.get(j).is_some_and(|t| t.last == i)
                && let Some(r) = release.get_mut(g)
            {
                *r = Some(end);
            }
        }
        *step_end = compute_free;
    }

    // Report the last step, relative to its start.
    let report = STEPS - 1;
    let t0 = step_ends.get(report - 1).copied().unwrap_or(0.0);
    // The steady state: the average over the last half of the simulated steps (the first ones
    // fill the pipeline).
    let settled = STEPS / 2;
    let span = step_ends.get(report).copied().unwrap_or(0.0) - step_ends.get(settled - 1).copied().unwrap_or(0.0);
    let mut step_seconds = span / (report + 1 - settled) as f64;
    let layers_out: Vec<(f64, f64, f64)> = (0..n)
        .map(|i| {
            let (start, end) = layer_times.get(report * n + i).copied().unwrap_or((0.0, 0.0));
            (times.get(i).copied().unwrap_or(0.0), start - t0, end - t0)
        })
        .collect();
    let lasts: Vec<usize> = plan.iter().map(|t| t.last).collect();
    for (j, t) in plan.iter_mut().enumerate() {
        let g = report * k + j;
        let (start, end) = copy.get(g).copied().unwrap_or((0.0, 0.0));
        t.start = start - t0;
        t.end = end - t0;
        if g >= slots {
            let previous = g - slots;
            let (step, index) = (previous / k.max(1), previous % k.max(1));
            t.issue_after = lasts.get(index).copied();
            t.from_previous_step = step < report;
        }
    }

    let compute_seconds: f64 = times.iter().sum();
    let copy_seconds: f64 = plan.iter().map(|t| t.end - t.start).sum();
    let mut per_stream: Vec<(Device, f64)> = Vec::new();
    for (t, rate) in plan.iter().zip(&rates) {
        let secs = t.bytes as f64 / rate;
        match per_stream.iter_mut().find(|(d, _)| *d == t.from) {
            Some((_, total)) => *total += secs,
            None => per_stream.push((t.from, secs)),
        }
    }
    let busiest_stream = per_stream.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    let lower_bound_seconds = compute_seconds.max(busiest_stream);
    // What is left of the pipeline's start-up can make the average a hair faster than any
    // schedule can sustain; the bound holds.
    step_seconds = step_seconds.max(lower_bound_seconds);

    // Copy time that overlaps compute, over the reported step's copies.
    let busy: Vec<(f64, f64)> = layer_times.clone();
    let mut hidden = 0.0;
    for j in 0..k {
        let (start, end) = copy.get(report * k + j).copied().unwrap_or((0.0, 0.0));
        hidden += overlap(&busy, start, end);
    }
    let hidden_copy_fraction = if copy_seconds > 0.0 { (hidden / copy_seconds).min(1.0) } else { 1.0 };

    // Bytes in flight on the compute device: from copy start until the buffer is released.
    let mut events: Vec<(f64, i128)> = Vec::new();
    for g in k..total {
        let bytes = plan.get(g % k.max(1)).map_or(0, |t| t.bytes) as i128;
        let (start, _) = copy.get(g).copied().unwrap_or((0.0, 0.0));
        let end = release.get(g).copied().flatten().unwrap_or(f64::INFINITY);
        events.push((start, bytes));
        events.push((end, -bytes));
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut current, mut inflight_peak) = (0i128, 0i128);
    for (_, delta) in events {
        current += delta;
        inflight_peak = inflight_peak.max(current);
    }

    let host = |d: Device| matches!(d, Device::Cpu | Device::Disk);
    let staging = if compute.is_accelerator() {
        plan.iter()
            .filter(|t| host(t.from) && (t.batched || t.from == Device::Disk))
            .map(|t| t.bytes)
            .max()
            .unwrap_or(0)
    } else {
        0
    };

    ModelSchedule {
        prefetch,
        transfers: plan,
        layers: layers_out,
        step_seconds,
        lower_bound_seconds,
        compute_seconds,
        copy_seconds,
        hidden_copy_fraction,
        inflight_peak: u64::try_from(inflight_peak).unwrap_or(0),
        staging,
    }
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

/// The largest prefetch distance `auto` tries.
pub const MAX_AUTO_PREFETCH: u32 = 4;

/// The prefetch distance the cost model picks, at most `max`: the smallest within 1% of the best
/// step time.
pub fn schedule_auto(
    layers: &[GraphLayer],
    times: &[f64],
    homes: &[Device],
    compute: Device,
    cost: &CostModel,
    batch_below: u64,
    max: u32,
) -> ModelSchedule {
    let tries: Vec<ModelSchedule> =
        (1..=max.max(1)).map(|p| schedule(layers, times, homes, compute, cost, p, batch_below)).collect();
    let best = tries.iter().map(|s| s.step_seconds).fold(f64::INFINITY, f64::min);
    tries
        .into_iter()
        .find(|s| s.step_seconds <= best * 1.01 + 1e-12)
        .unwrap_or_else(|| schedule(layers, times, homes, compute, cost, 1, batch_below))
}
