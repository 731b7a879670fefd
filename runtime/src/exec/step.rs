//! The step loop of one model: a copy thread moves streamed layers to the compute device, in the
//! plan's order and as far ahead as its prefetch allows, while this thread computes layer after
//! layer, waiting only for copies that are not there yet.

use std::sync::mpsc::{channel, sync_channel};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use mgc_plan::{Device as PlanDevice, ModelPlan, Plan};
use tch::Device;

use super::compute::{self, Inputs};
use super::error::RunError;
use super::load::{LoadedModel, Weight};
use super::memory::{self, Baseline};
use super::streams::{self, Copier, Gpu};
use cudarc::driver::CudaEvent;

/// One copy as it happened.
#[derive(Clone, Debug)]
pub struct CopyRecord {
    pub from: PlanDevice,
    pub to: PlanDevice,
    pub bytes: u64,
    pub start: f64,
    pub end: f64,
}

/// What one model's run measured.
#[derive(Clone, Debug)]
pub struct ModelRun {
    pub steps: Vec<f64>,
    /// Per layer of the last step, the checksum's bits: equal plans give equal bits.
    pub checksums: Vec<u64>,
    pub copies: Vec<CopyRecord>,
    pub compute: Vec<(f64, f64)>,
    /// Seconds the compute thread waited for copies.
    pub waited: f64,
    /// Peak memory in use on a CUDA compute device, when there is one.
    pub device_peak: Option<(PlanDevice, u64)>,
}

/// A transfer's layers on the compute device: which transfer, its weights there, and on CUDA the
/// event that says they have arrived and the slot to hand back after the last layer.
struct Delivery {
    transfer: usize,
    layers: Vec<Vec<Weight>>,
    ready: Option<CudaEvent>,
    slot: Option<usize>,
}

/// How streamed layers reach the compute device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Copies {
    /// On CUDA: a copy stream of the driver, a ring of device slots, events between the streams.
    /// On the CPU: the copy thread's own copies, as `Torch`.
    #[default]
    Streams,
    /// libtorch's own copies on the copy thread, waited for before they are handed over: no
    /// overlap on CUDA. For comparison.
    Torch,
}

pub fn run_model(
    plan: &Plan,
    model: &ModelPlan,
    loaded: &LoadedModel,
    steps: usize,
    progress: bool,
    copies: Copies,
    _baseline: &Baseline,
) -> Result<ModelRun, RunError> {
    let index = plan.models.iter().position(|m| std::ptr::eq(m, model)).unwrap_or(0);
    let transfers: Vec<&mgc_plan::Transfer> = plan.transfers.iter().filter(|t| t.model == index).collect();
    let compute_device = loaded.compute;
    let cuda = match compute_device {
        Device::Cuda(n) => Some(n),
        _ => None,
    };
    let cuda_before = cuda.and_then(memory::cuda_memory).map(|(free, _)| free);
    // On the CPU the copy thread needs a core of its own: libtorch's threads would otherwise
    // contend with it and every small op would wait on the thread pool.
    let threads_before = tch::get_num_threads();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if compute_device == Device::Cpu && !transfers.is_empty() && cores > 1 {
        tch::set_num_threads(i32::try_from(cores - 1).unwrap_or(1));
    }
    let mut device_low = cuda_before;
    let clock = Instant::now();
    // Ring of `prefetch + 1` buffers: the one computing, the one being copied, and the rest queued.
    let queue = (model.prefetch as usize).saturating_sub(1);
    let (tx, rx) = sync_channel::<Result<Delivery, RunError>>(queue);
    let bar = if progress { ProgressBar::new((steps * model.layers.len()) as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("running {msg:<12} [{bar:30}] step {pos}/{len} layers, {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(model.name.clone());

    // The copy thread gets its own handles on the streamed layers' weights (tensors are not
    // shared between threads; handles on the same storage are).
    let sources: Vec<Vec<Weight>> = loaded
        .layers
        .iter()
        .map(|l| if l.streamed { l.tensors.iter().map(Weight::handle).collect() } else { Vec::new() })
        .collect();
    // On CUDA, a copy stream with its ring of slots: one computing, `prefetch` in flight.
    let gpu = match (cuda, copies) {
        (Some(n), Copies::Streams) if !transfers.is_empty() => Some(Gpu::open(n)?),
        _ => None,
    };
    let copier = match &gpu {
        Some(gpu) => {
            let mut slot_bytes = 0;
            let mut staging_bytes = 0;
            for (k, t) in transfers.iter().enumerate() {
                let group = sources.get(t.first_layer..t.last_layer.saturating_add(1)).unwrap_or_default();
                let total = streams::layout(group.iter().map(Vec::as_slice)).total;
                slot_bytes = slot_bytes.max(total);
                let packed = loaded.packed.get(k).is_some_and(Option::is_some);
                if !packed && group.iter().flatten().any(|w| w.tensor.device() == Device::Cpu) {
                    staging_bytes = staging_bytes.max(total);
                }
            }
            let slots = (model.prefetch as usize).max(1) + 1;
            Some(Copier::new(gpu, compute_device, slots, slot_bytes, staging_bytes)?)
        }
        None => None,
    };
    let (free_tx, free_rx) = channel::<(usize, Option<CudaEvent>)>();
    if let Some(copier) = &copier {
        for slot in 0..copier.slot_count() {
            let _ = free_tx.send((slot, None));
        }
    }
    let packed: Vec<Option<tch::Tensor>> =
        loaded.packed.iter().map(|p| p.as_ref().map(tch::Tensor::shallow_clone)).collect();
    std::thread::scope(|scope| -> Result<ModelRun, RunError> {
        let transfers = &transfers;
        let copy_thread = scope.spawn(move || {
            let mut records = Vec::new();
            'steps: for _ in 0..steps {
                for (k, t) in transfers.iter().enumerate() {
                    if let Some(copier) = &copier {
                        let Ok((slot, release)) = free_rx.recv() else { break 'steps };
                        let group = sources.get(t.first_layer..t.last_layer.saturating_add(1)).unwrap_or_default();
                        let message = copier
                            .copy(slot, release.as_ref(), group, packed.get(k).and_then(Option::as_ref))
                            .map(|c| {
                                let end = clock.elapsed().as_secs_f64();
                                records.push(CopyRecord {
                                    from: t.from,
                                    to: t.to,
                                    bytes: t.bytes,
                                    start: end - c.seconds,
                                    end,
                                });
                                memory::sample();
                                Delivery { transfer: k, layers: c.layers, ready: Some(c.ready), slot: Some(c.slot) }
                            });
                        let failed = message.is_err();
                        if tx.send(message).is_err() || failed {
                            break 'steps;
                        }
                        continue;
                    }
                    let start = clock.elapsed().as_secs_f64();
                    let mut buffer = Vec::new();
                    let mut failed = None;
                    for layer in sources.iter().take(t.last_layer + 1).skip(t.first_layer) {
                        let mut moved = Vec::new();
                        for w in layer {
                            let copy = if compute_device == Device::Cpu {
                                w.tensor.f_detach_copy()
                            } else {
                                w.tensor.f_to_device(compute_device)
                            };
                            match copy {
                                Ok(c) => moved.push(w.with(c)),
                                Err(e) => failed = Some(RunError::from(e)),
                            }
                        }
                        buffer.push(moved);
                    }
                    if let Device::Cuda(n) = compute_device {
                        tch::Cuda::synchronize(n as i64);
                    }
                    let end = clock.elapsed().as_secs_f64();
                    records.push(CopyRecord { from: t.from, to: t.to, bytes: t.bytes, start, end });
                    memory::sample();
                    let message = match failed {
                        Some(e) => Err(e),
                        None => Ok(Delivery { transfer: k, layers: buffer, ready: None, slot: None }),
                    };
                    if tx.send(message).is_err() {
                        break 'steps;
                    }
                }
            }
            drop(tx);
            records
        });

        // Owned here, so that an early return drops them and the copy thread, blocked on either,
        // ends before the scope joins it.
        let rx = rx;
        let free_tx = free_tx;
        let mut inputs = Inputs::new(model.tokens, compute_device);
        let mut step_times = Vec::new();
        let mut checksums = vec![0u64; model.layers.len()];
        let mut intervals = Vec::new();
        let mut waited = 0.0;
        let last_of: Vec<usize> = transfers.iter().map(|t| t.last_layer).collect();
        for _ in 0..steps {
            let step_start = clock.elapsed().as_secs_f64();
            let mut current: Option<Delivery> = None;
            for (l, layer) in loaded.layers.iter().enumerate() {
                let value = if layer.streamed {
                    if current.as_ref().is_none_or(|d| last_of.get(d.transfer).is_none_or(|last| *last < l)) {
                        let wait = clock.elapsed().as_secs_f64();
                        let delivery = rx.recv().map_err(|_| RunError::Torch("the copy thread stopped".into()))??;
                        if let (Some(gpu), Some(ready)) = (&gpu, &delivery.ready) {
                            gpu.torch_wait(ready)?;
                        }
                        current = Some(delivery);
                        waited += clock.elapsed().as_secs_f64() - wait;
                    }
                    let delivery =
                        current.as_ref().ok_or_else(|| RunError::Torch("no copy for a streamed layer".into()))?;
                    let first = transfers.get(delivery.transfer).map_or(l, |t| t.first_layer);
                    let tensors = delivery
                        .layers
                        .get(l - first)
                        .ok_or_else(|| RunError::Torch("copy and layer disagree".into()))?;
                    let start = clock.elapsed().as_secs_f64();
                    let v = compute::layer(tensors, &mut inputs)?;
                    intervals.push((start, clock.elapsed().as_secs_f64()));
                    if last_of.get(delivery.transfer) == Some(&l) {
                        // Release the buffer: on CUDA, hand its slot back once the kernels
                        // launched so far (the last readers) are done.
                        if let (Some(gpu), Some(slot)) = (&gpu, delivery.slot) {
                            let _ = free_tx.send((slot, Some(gpu.torch_event()?)));
                        }
                        current = None;
                    }
                    v
                } else {
                    let start = clock.elapsed().as_secs_f64();
                    let v = compute::layer(&layer.tensors, &mut inputs)?;
                    intervals.push((start, clock.elapsed().as_secs_f64()));
                    v
                };
                if let Some(c) = checksums.get_mut(l) {
                    *c = value.to_bits();
                }
                if progress {
                    bar.inc(1);
                }
            }
            if let Some(n) = cuda {
                tch::Cuda::synchronize(n as i64);
                if let Some((free, _)) = memory::cuda_memory(n) {
                    device_low = Some(device_low.map_or(free, |low| low.min(free)));
                }
            }
            step_times.push(clock.elapsed().as_secs_f64() - step_start);
            memory::sample();
        }
        drop(rx);
        drop(free_tx);
        let copies = copy_thread.join().map_err(|_| RunError::Torch("the copy thread panicked".into()))?;
        bar.finish_and_clear();
        tch::set_num_threads(threads_before);
        let device_peak = match (cuda, cuda_before, device_low) {
            (Some(_), Some(before), Some(low)) => Some((model.compute, before.saturating_sub(low))),
            _ => None,
        };
        Ok(ModelRun { steps: step_times, checksums, copies, compute: intervals, waited, device_peak })
    })
}
