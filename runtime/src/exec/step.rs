//! The step loop of one model: a copy thread moves streamed layers to the compute device, in the
//! plan's order and as far ahead as its prefetch allows, while this thread computes layer after
//! layer, waiting only for copies that are not there yet.

use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use mgc_plan::{Device as PlanDevice, ModelPlan, Transfer};
use tch::Device;

use super::compute::{self, Inputs};
use super::error::RunError;
use super::load::{LoadedModel, Weight};
use super::memory;
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
    /// The lowest free memory seen on a CUDA compute device, when there is one: the run's peak
    /// there is the free memory before the session opened less this.
    pub device_low: Option<(PlanDevice, u64)>,
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

/// Runs `steps` steps of one model: `transfers` are the plan's copies of this model, in order.
pub fn run_model(
    model: &ModelPlan,
    transfers: &[&Transfer],
    loaded: &LoadedModel,
    steps: usize,
    progress: bool,
    copies: Copies,
) -> Result<ModelRun, RunError> {
    let compute_device = loaded.compute;
    let cuda = match compute_device {
        Device::Cuda(n) => Some(n),
        _ => None,
    };
    let cuda_before = cuda.and_then(memory::cuda_memory).map(|(free, _)| free);
    let threads_before = leave_a_core_for_copies(compute_device, transfers);
    let clock = Instant::now();
    // Ring of `prefetch + 1` buffers: the one computing, the one being copied, and the rest queued.
    let queue = (model.prefetch as usize).saturating_sub(1);
    let (tx, rx) = sync_channel::<Result<Delivery, RunError>>(queue);
    let bar = progress_bar(model, steps, progress);
    let sources = copy_sources(loaded);
    // On CUDA, a copy stream with its ring of slots: one computing, `prefetch` in flight.
    let gpu = match (cuda, copies) {
        (Some(n), Copies::Streams) if !transfers.is_empty() => Some(Gpu::open(n)?),
        _ => None,
    };
    let copier = match &gpu {
        Some(gpu) => Some(open_copier(gpu, model, transfers, loaded, &sources)?),
        None => None,
    };
    // On the CPU, a ring of buffers in RAM the copy thread copies into, allocated once.
    let ring = match (compute_device, copies) {
        (Device::Cpu, Copies::Streams) if !transfers.is_empty() => Some(cpu_ring(model, transfers, &sources)?),
        _ => None,
    };
    let (free_tx, free_rx) = channel::<(usize, Option<CudaEvent>)>();
    let slots = copier.as_ref().map_or(0, Copier::slot_count) + ring.as_ref().map_or(0, Vec::len);
    for slot in 0..slots {
        let _ = free_tx.send((slot, None));
    }
    let packed: Vec<Option<tch::Tensor>> =
        loaded.packed.iter().map(|p| p.as_ref().map(tch::Tensor::shallow_clone)).collect();
    let feed = CopyFeed { transfers, sources, packed, copier, ring, compute: compute_device, clock, steps };
    std::thread::scope(|scope| -> Result<ModelRun, RunError> {
        let copy_thread = scope.spawn(move || feed.run(&tx, &free_rx));
        let mut computed = Computed::new(model.layers.len());
        // `rx` and `free_tx` move into the loop, so that an early return drops them and the copy
        // thread, blocked on either, ends before the scope joins it.
        let stepper = Stepper { model, transfers, loaded, gpu: gpu.as_ref(), clock, bar: progress.then_some(&bar) };
        let device_low = stepper.steps(steps, rx, free_tx, cuda, cuda_before, &mut computed)?;
        let copies = copy_thread.join().map_err(|_| RunError::Torch("the copy thread panicked".into()))?;
        bar.finish_and_clear();
        tch::set_num_threads(threads_before);
        let device_low = device_low.map(|low| (model.compute, low));
        Ok(ModelRun {
            steps: computed.step_times,
            checksums: computed.checksums,
            copies,
            compute: computed.intervals,
            waited: computed.waited,
            device_low,
        })
    })
}

/// On the CPU the copy thread needs a core of its own: libtorch's threads would otherwise contend
/// with it and every small op would wait on the thread pool. Returns the thread count before.
fn leave_a_core_for_copies(compute: Device, transfers: &[&Transfer]) -> i32 {
    let before = tch::get_num_threads();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if compute == Device::Cpu && !transfers.is_empty() && cores > 1 {
        tch::set_num_threads(i32::try_from(cores - 1).unwrap_or(1));
    }
    before
}

fn progress_bar(model: &ModelPlan, steps: usize, progress: bool) -> ProgressBar {
    let bar = if progress { ProgressBar::new((steps * model.layers.len()) as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("running {msg:<12} [{bar:30}] step {pos}/{len} layers, {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(model.name.clone());
    bar
}

/// The copy thread's own handles on the streamed layers' weights (tensors are not shared between
/// threads; handles on the same storage are); none for resident layers.
fn copy_sources(loaded: &LoadedModel) -> Vec<Vec<Weight>> {
    loaded
        .layers
        .iter()
        .map(|l| if l.streamed { l.tensors.iter().map(Weight::handle).collect() } else { Vec::new() })
        .collect()
}

/// The layers a transfer carries, `first..=last`.
fn carried<'a>(sources: &'a [Vec<Weight>], t: &Transfer) -> Result<&'a [Vec<Weight>], RunError> {
    sources
        .get(t.first_layer..t.last_layer.saturating_add(1))
        .ok_or_else(|| RunError::Torch(format!("transfer {} carries layers the model does not have", t.id)))
}

/// The copy stream's ring of device slots, each as large as the largest transfer, and a staging
/// buffer for transfers from RAM that were not packed into a pinned buffer at load.
fn open_copier(
    gpu: &Gpu,
    model: &ModelPlan,
    transfers: &[&Transfer],
    loaded: &LoadedModel,
    sources: &[Vec<Weight>],
) -> Result<Copier, RunError> {
    let mut slot_bytes = 0;
    let mut staging_bytes = 0;
    for (k, t) in transfers.iter().enumerate() {
        let group = carried(sources, t)?;
        let total = streams::layout(group.iter().map(Vec::as_slice)).total;
        slot_bytes = slot_bytes.max(total);
        let packed = loaded.packed.get(k).is_some_and(Option::is_some);
        if !packed && group.iter().flatten().any(|w| w.tensor.device() == Device::Cpu) {
            staging_bytes = staging_bytes.max(total);
        }
    }
    let slots = (model.prefetch as usize).max(1) + 1;
    Copier::new(gpu, loaded.compute, slots, slot_bytes, staging_bytes)
}

/// The ring of buffers a CPU run copies streamed layers into: `prefetch + 1` of the largest
/// transfer laid out, zeroed so that they are resident from the start (as the plan counts them).
fn cpu_ring(model: &ModelPlan, transfers: &[&Transfer], sources: &[Vec<Weight>]) -> Result<Vec<tch::Tensor>, RunError> {
    let mut slot_bytes = 0;
    for t in transfers {
        slot_bytes = slot_bytes.max(streams::layout(carried(sources, t)?.iter().map(Vec::as_slice)).total);
    }
    let slots = (model.prefetch as usize).max(1) + 1;
    let size = i64::try_from(slot_bytes.max(1)).unwrap_or(i64::MAX);
    (0..slots).map(|_| Ok(tch::Tensor::f_zeros([size], (tch::Kind::Uint8, Device::Cpu))?)).collect()
}

/// What the copy thread works from: the model's transfers, its own handles on their weights, and
/// on CUDA the copy stream, on the CPU the ring of buffers.
struct CopyFeed<'a> {
    transfers: &'a [&'a Transfer],
    sources: Vec<Vec<Weight>>,
    packed: Vec<Option<tch::Tensor>>,
    copier: Option<Copier>,
    ring: Option<Vec<tch::Tensor>>,
    compute: Device,
    clock: Instant,
    steps: usize,
}

impl CopyFeed<'_> {
    /// Every step's transfers in order, each handed over as soon as it is there; stops when the
    /// compute side hangs up or a copy fails. Returns the copies as they happened.
    fn run(
        &self,
        tx: &SyncSender<Result<Delivery, RunError>>,
        free: &Receiver<(usize, Option<CudaEvent>)>,
    ) -> Vec<CopyRecord> {
        let mut records = Vec::new();
        for _ in 0..self.steps {
            for (k, t) in self.transfers.iter().enumerate() {
                let message = match (&self.copier, &self.ring) {
                    (Some(copier), _) => {
                        let Ok((slot, release)) = free.recv() else { return records };
                        self.on_stream(copier, k, t, slot, release.as_ref(), &mut records)
                    }
                    (None, Some(ring)) => {
                        let Ok((slot, _)) = free.recv() else { return records };
                        self.on_ring(ring, k, t, slot, &mut records)
                    }
                    (None, None) => self.with_torch(k, t, &mut records),
                };
                let failed = message.is_err();
                if tx.send(message).is_err() || failed {
                    return records;
                }
            }
        }
        records
    }

    /// A copy on the driver's copy stream into a device slot, once the slot's last readers are done.
    fn on_stream(
        &self,
        copier: &Copier,
        k: usize,
        t: &Transfer,
        slot: usize,
        release: Option<&CudaEvent>,
        records: &mut Vec<CopyRecord>,
    ) -> Result<Delivery, RunError> {
        let group = carried(&self.sources, t)?;
        let c = copier.copy(slot, release, group, self.packed.get(k).and_then(Option::as_ref))?;
        let end = self.clock.elapsed().as_secs_f64();
        records.push(CopyRecord { from: t.from, to: t.to, bytes: t.bytes, start: end - c.seconds, end });
        memory::sample();
        Ok(Delivery { transfer: k, layers: c.layers, ready: Some(c.ready), slot: Some(c.slot) })
    }

    /// A copy into a buffer of the CPU ring, once the compute side has handed it back.
    fn on_ring(
        &self,
        ring: &[tch::Tensor],
        k: usize,
        t: &Transfer,
        slot: usize,
        records: &mut Vec<CopyRecord>,
    ) -> Result<Delivery, RunError> {
        let start = self.clock.elapsed().as_secs_f64();
        let buffer = ring.get(slot).ok_or_else(|| RunError::Torch(format!("no buffer {slot} in the ring")))?;
        let group = carried(&self.sources, t)?;
        let layout = streams::layout(group.iter().map(Vec::as_slice));
        let mut layers = Vec::with_capacity(group.len());
        for (layer, offsets) in group.iter().zip(&layout.offsets) {
            let mut moved = Vec::with_capacity(layer.len());
            for (w, &offset) in layer.iter().zip(offsets) {
                let mut view = streams::view_like(buffer, offset, &w.tensor)?;
                if !copy_bytes(&w.tensor, &view) {
                    view.f_copy_(&w.tensor)?;
                }
                moved.push(w.with(view));
            }
            layers.push(moved);
        }
        let end = self.clock.elapsed().as_secs_f64();
        records.push(CopyRecord { from: t.from, to: t.to, bytes: t.bytes, start, end });
        memory::sample();
        Ok(Delivery { transfer: k, layers, ready: None, slot: Some(slot) })
    }

    /// libtorch's own copies, waited for before they are handed over.
    fn with_torch(&self, k: usize, t: &Transfer, records: &mut Vec<CopyRecord>) -> Result<Delivery, RunError> {
        let start = self.clock.elapsed().as_secs_f64();
        let mut buffer = Vec::new();
        let mut failed = None;
        for layer in self.sources.iter().take(t.last_layer + 1).skip(t.first_layer) {
            let mut moved = Vec::new();
            for w in layer {
                let copy = if self.compute == Device::Cpu {
                    w.tensor.f_detach_copy()
                } else {
                    w.tensor.f_to_device(self.compute)
                };
                match copy {
                    Ok(c) => moved.push(w.with(c)),
                    Err(e) => failed = Some(RunError::from(e)),
                }
            }
            buffer.push(moved);
        }
        if let Device::Cuda(n) = self.compute {
            tch::Cuda::synchronize(n as i64);
        }
        let end = self.clock.elapsed().as_secs_f64();
        records.push(CopyRecord { from: t.from, to: t.to, bytes: t.bytes, start, end });
        memory::sample();
        match failed {
            Some(e) => Err(e),
            None => Ok(Delivery { transfer: k, layers: buffer, ready: None, slot: None }),
        }
    }
}

/// Copies a contiguous CPU tensor's bytes into a contiguous CPU tensor of the same size, on this
/// thread alone: libtorch's copy may split a large copy over a thread pool, onto the cores the
/// compute thread has. Whether it could (else the caller copies with libtorch).
fn copy_bytes(from: &tch::Tensor, to: &tch::Tensor) -> bool {
    let bytes = streams::tensor_bytes(from);
    let cpu = from.device() == Device::Cpu && to.device() == Device::Cpu;
    if !cpu || !from.is_contiguous() || !to.is_contiguous() || streams::tensor_bytes(to) != bytes {
        return false;
    }
    let Ok(len) = usize::try_from(bytes) else { return false };
    #[allow(unsafe_code, reason = "a byte copy between two live tensors' storages")]
    // SAFETY: both tensors are alive for the whole call, contiguous and `len` bytes long (checked
    // above); `to` is a view of a ring buffer only this thread writes until it hands the view over,
    // and `from` is a weight in RAM or in the file's mapping, which no one writes: they do not
    // overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(from.data_ptr().cast::<u8>(), to.data_ptr().cast::<u8>(), len);
    }
    true
}

/// What the compute side measured.
struct Computed {
    step_times: Vec<f64>,
    checksums: Vec<u64>,
    intervals: Vec<(f64, f64)>,
    waited: f64,
}

impl Computed {
    fn new(layers: usize) -> Self {
        Self { step_times: Vec::new(), checksums: vec![0; layers], intervals: Vec::new(), waited: 0.0 }
    }
}

/// The compute side of a model's run.
struct Stepper<'a> {
    model: &'a ModelPlan,
    transfers: &'a [&'a Transfer],
    loaded: &'a LoadedModel,
    gpu: Option<&'a Gpu>,
    clock: Instant,
    bar: Option<&'a ProgressBar>,
}

impl Stepper<'_> {
    /// Computes every step, layer after layer, taking streamed layers from the copy thread.
    /// Returns the lowest free memory seen on a CUDA compute device.
    fn steps(
        &self,
        steps: usize,
        rx: Receiver<Result<Delivery, RunError>>,
        free_tx: Sender<(usize, Option<CudaEvent>)>,
        cuda: Option<usize>,
        cuda_before: Option<u64>,
        computed: &mut Computed,
    ) -> Result<Option<u64>, RunError> {
        let mut inputs = Inputs::new(self.model.tokens, self.loaded.compute, self.model.activation_bytes)?;
        let mut device_low = cuda_before;
        for _ in 0..steps {
            let step_start = self.clock.elapsed().as_secs_f64();
            let mut current: Option<Delivery> = None;
            for (l, layer) in self.loaded.layers.iter().enumerate() {
                let value = if layer.streamed {
                    self.streamed_layer(l, &mut current, &rx, &free_tx, &mut inputs, computed)?
                } else {
                    self.timed(&layer.tensors, &layer.work, &mut inputs, computed)?
                };
                if let Some(c) = computed.checksums.get_mut(l) {
                    *c = value.to_bits();
                }
                if let Some(bar) = self.bar {
                    bar.inc(1);
                }
            }
            if let Some(n) = cuda {
                tch::Cuda::synchronize(n as i64);
                if let Some((free, _)) = memory::cuda_memory(n) {
                    device_low = Some(device_low.map_or(free, |low| low.min(free)));
                }
            }
            computed.step_times.push(self.clock.elapsed().as_secs_f64() - step_start);
            memory::sample();
        }
        Ok(device_low)
    }

    /// Layer `l`, streamed: from the current delivery, or the next one when it has none of it;
    /// after a delivery's last layer, its buffer goes back to the copy thread.
    fn streamed_layer(
        &self,
        l: usize,
        current: &mut Option<Delivery>,
        rx: &Receiver<Result<Delivery, RunError>>,
        free_tx: &Sender<(usize, Option<CudaEvent>)>,
        inputs: &mut Inputs,
        computed: &mut Computed,
    ) -> Result<f64, RunError> {
        let last_of = |d: &Delivery| self.transfers.get(d.transfer).map(|t| t.last_layer);
        if current.as_ref().is_none_or(|d| last_of(d).is_none_or(|last| last < l)) {
            let wait = self.clock.elapsed().as_secs_f64();
            let delivery = rx.recv().map_err(|_| RunError::Torch("the copy thread stopped".into()))??;
            if let (Some(gpu), Some(ready)) = (self.gpu, &delivery.ready) {
                gpu.torch_wait(ready)?;
            }
            *current = Some(delivery);
            computed.waited += self.clock.elapsed().as_secs_f64() - wait;
        }
        let delivery = current.as_ref().ok_or_else(|| RunError::Torch("no copy for a streamed layer".into()))?;
        let first = self.transfers.get(delivery.transfer).map_or(l, |t| t.first_layer);
        let tensors =
            delivery.layers.get(l - first).ok_or_else(|| RunError::Torch("copy and layer disagree".into()))?;
        let work = self.loaded.layers.get(l).map(|layer| &layer.work);
        let value = self.timed(tensors, work.unwrap_or(&compute::Work::default()), inputs, computed)?;
        if last_of(delivery) == Some(l) {
            // Release the buffer: on CUDA, hand its slot back once the kernels launched so far
            // (the last readers) are done.
            match (self.gpu, delivery.slot) {
                (Some(gpu), Some(slot)) => {
                    let _ = free_tx.send((slot, Some(gpu.torch_event()?)));
                }
                // The CPU ring: its computations are done when the layer returns.
                (None, Some(slot)) => {
                    let _ = free_tx.send((slot, None));
                }
                _ => {}
            }
            *current = None;
        }
        Ok(value)
    }

    /// One layer's compute, its interval recorded.
    fn timed(
        &self,
        tensors: &[Weight],
        work: &compute::Work,
        inputs: &mut Inputs,
        computed: &mut Computed,
    ) -> Result<f64, RunError> {
        let start = self.clock.elapsed().as_secs_f64();
        let value = compute::layer(tensors, work, inputs)?;
        computed.intervals.push((start, self.clock.elapsed().as_secs_f64()));
        Ok(value)
    }
}
