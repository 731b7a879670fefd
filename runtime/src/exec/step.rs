//! The step loop of one model: a copy thread moves streamed layers to the compute device, in the
//! plan's order and as far ahead as its prefetch allows, while this thread computes layer after
//! layer, waiting only for copies that are not there yet.

use std::sync::mpsc::sync_channel;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use mgc_plan::{ModelPlan, Plan};
use tch::Device;

use super::compute::{self, Inputs};
use super::error::RunError;
use super::load::{LoadedModel, Weight};
use super::memory::{self, Baseline};

/// One copy as it happened.
#[derive(Clone, Debug)]
pub struct CopyRecord {
    pub from: String,
    pub to: String,
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
    pub device_peak: Option<(String, u64)>,
}

type Buffer = (usize, Vec<Vec<Weight>>);

pub fn run_model(
    plan: &Plan,
    model: &ModelPlan,
    loaded: &LoadedModel,
    steps: usize,
    progress: bool,
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
    let (tx, rx) = sync_channel::<Result<Buffer, RunError>>(queue);
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
    std::thread::scope(|scope| -> Result<ModelRun, RunError> {
        let transfers = &transfers;
        let copier = scope.spawn(move || {
            let mut records = Vec::new();
            'steps: for _ in 0..steps {
                for (k, t) in transfers.iter().enumerate() {
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
                    records.push(CopyRecord { from: t.from.clone(), to: t.to.clone(), bytes: t.bytes, start, end });
                    let message = match failed {
                        Some(e) => Err(e),
                        None => Ok((k, buffer)),
                    };
                    if tx.send(message).is_err() {
                        break 'steps;
                    }
                }
            }
            drop(tx);
            records
        });

        let mut inputs = Inputs::new(model.tokens, compute_device);
        let mut step_times = Vec::new();
        let mut checksums = vec![0u64; model.layers.len()];
        let mut intervals = Vec::new();
        let mut waited = 0.0;
        let last_of: Vec<usize> = transfers.iter().map(|t| t.last_layer).collect();
        for _ in 0..steps {
            let step_start = clock.elapsed().as_secs_f64();
            let mut current: Option<Buffer> = None;
            for (l, layer) in loaded.layers.iter().enumerate() {
                let value = if layer.streamed {
                    if current.as_ref().is_none_or(|(k, _)| last_of.get(*k).is_none_or(|last| *last < l)) {
                        let wait = clock.elapsed().as_secs_f64();
                        current = Some(rx.recv().map_err(|_| RunError::Torch("the copy thread stopped".into()))??);
                        waited += clock.elapsed().as_secs_f64() - wait;
                    }
                    let (k, buffer) =
                        current.as_ref().ok_or_else(|| RunError::Torch("no copy for a streamed layer".into()))?;
                    let first = transfers.get(*k).map_or(l, |t| t.first_layer);
                    let tensors =
                        buffer.get(l - first).ok_or_else(|| RunError::Torch("copy and layer disagree".into()))?;
                    let start = clock.elapsed().as_secs_f64();
                    let v = compute::layer(tensors, &mut inputs)?;
                    intervals.push((start, clock.elapsed().as_secs_f64()));
                    if last_of.get(*k) == Some(&l) {
                        current = None; // release the buffer
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
                bar.inc(1);
            }
            if let Some(n) = cuda {
                tch::Cuda::synchronize(n as i64);
                if let Some((free, _)) = memory::cuda_memory(n) {
                    device_low = Some(device_low.map_or(free, |low| low.min(free)));
                }
            }
            step_times.push(clock.elapsed().as_secs_f64() - step_start);
        }
        drop(rx);
        let copies = copier.join().map_err(|_| RunError::Torch("the copy thread panicked".into()))?;
        bar.finish_and_clear();
        tch::set_num_threads(threads_before);
        let device_peak = match (cuda, cuda_before, device_low) {
            (Some(n), Some(before), Some(low)) => Some((format!("cuda:{n}"), before.saturating_sub(low))),
            _ => None,
        };
        Ok(ModelRun { steps: step_times, checksums, copies, compute: intervals, waited, device_peak })
    })
}
