//! Copies to a CUDA compute device on a copy stream of the driver (cudarc), beside libtorch's
//! default stream, so that a layer's weights arrive while the layers before it compute.
//!
//! - Each transfer lands in one of a ring of device buffers ("slots"), allocated once: as many as
//!   the plan's prefetch keeps in flight plus the one computing. The compute thread hands a slot
//!   back with an event recorded on libtorch's stream after the last kernel that reads it; the copy
//!   stream waits on that event before writing the slot again.
//! - The copy thread records an event on the copy stream after the copy; libtorch's stream waits on
//!   it before the first kernel that reads the weights.
//! - Sources: a transfer of CPU-resident layers is one pinned allocation laid out like its slot
//!   (made at load), so it is one host-to-device copy; layers read from the `disk` tier go through
//!   one pinned staging buffer; layers on another GPU are copied device to device.
//!
//! libtorch launches its kernels on the legacy default stream; the copy stream is created
//! non-blocking, so the two do not serialise each other.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaEvent, CudaStream, sys};
use tch::{Device, Kind, Tensor};

use super::error::RunError;
use super::load::Weight;

/// Every tensor starts at a multiple of this in a transfer's buffer, so any dtype can view it.
const ALIGN: u64 = 256;

/// Bytes of a contiguous tensor.
pub fn tensor_bytes(t: &Tensor) -> u64 {
    (t.numel() as u64).saturating_mul(t.kind().elt_size_in_bytes() as u64)
}

/// Where each weight of a transfer sits in its buffer, layer by layer, and the buffer's size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub offsets: Vec<Vec<u64>>,
    pub total: u64,
}

/// The layout of a transfer whose layers hold weights of these byte sizes.
pub fn layout<'a>(layers: impl IntoIterator<Item = &'a [Weight]>) -> Layout {
    let mut total = 0u64;
    let mut offsets = Vec::new();
    for layer in layers {
        let mut here = Vec::new();
        for w in layer {
            here.push(total);
            total = (total + tensor_bytes(&w.tensor)).div_ceil(ALIGN) * ALIGN;
        }
        offsets.push(here);
    }
    Layout { offsets, total }
}

/// A view of `bytes` at `offset` of a byte buffer, as `like`'s dtype and shape.
pub fn view_like(buffer: &Tensor, offset: u64, like: &Tensor) -> Result<Tensor, RunError> {
    let len = tensor_bytes(like) as i64;
    Ok(buffer.f_narrow(0, offset as i64, len)?.f_view_dtype(like.kind())?.f_reshape(like.size())?)
}

/// The bytes of a contiguous tensor, as a flat byte tensor over the same storage.
pub fn as_bytes(t: &Tensor) -> Result<Tensor, RunError> {
    if t.kind() == Kind::Uint8 {
        return Ok(t.f_reshape([-1])?);
    }
    Ok(t.f_reshape([-1])?.f_view_dtype(Kind::Uint8)?)
}

/// A pinned copy of a CPU tensor, for copies to `device`. Through libtorch's pinned allocator
/// without naming a device to `pin_memory` (deprecated, and warned about on every call).
pub fn pinned(t: &Tensor, device: Device) -> Result<Tensor, RunError> {
    let pinned = match t.f_internal_pin_memory(device) {
        Ok(p) => p,
        Err(_) => t.f_pin_memory(device)?,
    };
    super::memory::note_held(tensor_bytes(&pinned));
    Ok(pinned)
}

pub fn driver_error(what: &str, e: impl std::fmt::Display) -> RunError {
    RunError::Cuda(format!("{what}: {e}"))
}

/// The CUDA driver's view of a compute device: its context (the primary one, shared with
/// libtorch) and libtorch's default stream.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub torch_stream: Arc<CudaStream>,
}

impl Gpu {
    /// The device `ordinal`, when the driver is here.
    #[allow(unsafe_code, reason = "the driver's presence is checked before any driver call")]
    pub fn open(ordinal: usize) -> Result<Self, RunError> {
        // SAFETY: only looks for the driver library; without it a driver call would panic.
        if !unsafe { sys::is_culib_present() } {
            return Err(RunError::Cuda("no CUDA driver library".into()));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| driver_error("opening the device", e))?;
        // libtorch launches on the legacy default stream: the null stream of the primary context.
        let torch_stream = ctx.default_stream();
        Ok(Self { ctx, torch_stream })
    }

    /// An event on libtorch's stream after everything launched so far.
    pub fn torch_event(&self) -> Result<CudaEvent, RunError> {
        self.torch_stream.record_event(None).map_err(|e| driver_error("recording an event", e))
    }

    /// libtorch's stream waits for `event` before anything launched after this.
    pub fn torch_wait(&self, event: &CudaEvent) -> Result<(), RunError> {
        self.torch_stream.wait(event).map_err(|e| driver_error("waiting for a copy", e))
    }
}

/// One copy as the copy stream did it.
pub struct Copied {
    pub slot: usize,
    pub layers: Vec<Vec<Weight>>,
    /// Recorded on the copy stream after the copy.
    pub ready: CudaEvent,
    /// How long the copy stream took, from its start event to its end event.
    pub seconds: f64,
}

/// The copy stream, its ring of device slots and its pinned staging buffer.
pub struct Copier {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    slots: Vec<Tensor>,
    staging: Option<Tensor>,
}

impl Copier {
    /// A copy stream on `gpu`, `slots` device buffers of `slot_bytes` each, and a pinned staging
    /// buffer of `staging_bytes` when some layers come from pageable memory.
    pub fn new(gpu: &Gpu, device: Device, slots: usize, slot_bytes: u64, staging_bytes: u64) -> Result<Self, RunError> {
        let stream = gpu.ctx.new_stream().map_err(|e| driver_error("creating a copy stream", e))?;
        let size = slot_bytes.max(1) as i64;
        let slots =
            (0..slots.max(1)).map(|_| Tensor::f_empty([size], (Kind::Uint8, device))).collect::<Result<Vec<_>, _>>()?;
        let staging = if staging_bytes > 0 {
            Some(pinned(&Tensor::f_empty([staging_bytes as i64], (Kind::Uint8, Device::Cpu))?, device)?)
        } else {
            None
        };
        Ok(Self { ctx: gpu.ctx.clone(), stream, slots, staging })
    }

    pub const fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Copies a transfer's layers into `slot`, once `release` (the slot's last reader) is done.
    /// `packed` is the transfer's pinned host buffer, when it has one. Waits for the copy to end,
    /// so that its time is known; the compute thread is not waiting on this thread meanwhile.
    #[allow(unsafe_code, reason = "driver copies between buffers whose sizes are checked here")]
    pub fn copy(
        &self,
        slot: usize,
        release: Option<&CudaEvent>,
        sources: &[Vec<Weight>],
        packed: Option<&Tensor>,
    ) -> Result<Copied, RunError> {
        let timed = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        self.ctx.bind_to_thread().map_err(|e| driver_error("binding the context", e))?;
        let target = self.slots.get(slot).ok_or_else(|| RunError::Cuda(format!("no slot {slot}")))?;
        let layout = layout(sources.iter().map(Vec::as_slice));
        if layout.total > tensor_bytes(target) {
            return Err(RunError::Cuda(format!("a copy of {} bytes does not fit its slot", layout.total)));
        }
        let stream = self.stream.cu_stream();
        if let Some(event) = release {
            self.stream.wait(event).map_err(|e| driver_error("waiting for a slot", e))?;
        }
        let start = self.stream.record_event(timed).map_err(|e| driver_error("recording an event", e))?;
        let dst = target.data_ptr() as u64;
        match packed {
            Some(host) => {
                if tensor_bytes(host) < layout.total {
                    return Err(RunError::Cuda("a packed transfer is smaller than its layout".into()));
                }
                // SAFETY: `host` is pinned and holds at least `layout.total` bytes; the slot holds
                // at least as many (checked above); both outlive the copy, which is waited for below.
                unsafe {
                    sys::cuMemcpyHtoDAsync_v2(dst, host.data_ptr(), layout.total as usize, stream)
                        .result()
                        .map_err(|e| driver_error("copying to the device", e))?;
                }
            }
            None => self.copy_each(dst, &layout, sources, stream)?,
        }
        let end = self.stream.record_event(timed).map_err(|e| driver_error("recording an event", e))?;
        let seconds = f64::from(start.elapsed_ms(&end).map_err(|e| driver_error("timing a copy", e))?) / 1e3;
        let mut layers = Vec::new();
        for (layer, offsets) in sources.iter().zip(&layout.offsets) {
            let mut here = Vec::new();
            for (w, &offset) in layer.iter().zip(offsets) {
                here.push(w.with(view_like(target, offset, &w.tensor)?));
            }
            layers.push(here);
        }
        Ok(Copied { slot, layers, ready: end, seconds })
    }

    /// A transfer without a packed buffer: host tensors through the staging buffer in one copy,
    /// then device tensors one by one (after it, so that the staged copy does not overwrite them).
    #[allow(unsafe_code, reason = "driver copies between buffers whose sizes are checked here")]
    fn copy_each(
        &self,
        dst: u64,
        layout: &Layout,
        sources: &[Vec<Weight>],
        stream: sys::CUstream,
    ) -> Result<(), RunError> {
        let placed = || {
            sources.iter().zip(&layout.offsets).flat_map(|(layer, offsets)| layer.iter().zip(offsets.iter().copied()))
        };
        for (w, _) in placed() {
            if !w.tensor.is_contiguous() {
                return Err(RunError::Cuda(format!("`{}` is not contiguous", w.name)));
            }
        }
        let mut staged = false;
        for (w, offset) in placed().filter(|(w, _)| w.tensor.device() == Device::Cpu) {
            let bytes = tensor_bytes(&w.tensor) as usize;
            let staging =
                self.staging.as_ref().ok_or_else(|| RunError::Cuda("no staging buffer for host layers".into()))?;
            if offset + bytes as u64 > tensor_bytes(staging) {
                return Err(RunError::Cuda("a transfer does not fit the staging buffer".into()));
            }
            // SAFETY: the source is `bytes` bytes of a contiguous CPU tensor (memory or the
            // mapping); the staging buffer has room (checked); the previous copy out of it has
            // ended (every copy is waited for).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    w.tensor.data_ptr().cast::<u8>(),
                    staging.data_ptr().cast::<u8>().add(offset as usize),
                    bytes,
                );
            }
            staged = true;
        }
        if staged && let Some(staging) = &self.staging {
            // SAFETY: the staging buffer holds the layout's bytes (checked per tensor), the slot
            // as many; both outlive the copy.
            unsafe {
                sys::cuMemcpyHtoDAsync_v2(dst, staging.data_ptr(), layout.total as usize, stream)
                    .result()
                    .map_err(|e| driver_error("copying to the device", e))?;
            }
        }
        for (w, offset) in placed().filter(|(w, _)| w.tensor.device() != Device::Cpu) {
            let bytes = tensor_bytes(&w.tensor) as usize;
            if !matches!(w.tensor.device(), Device::Cuda(_)) {
                return Err(RunError::Unsupported { what: format!("copying from {:?}", w.tensor.device()) });
            }
            // SAFETY: both are device buffers of at least `bytes` at these offsets (the slot was
            // checked against the layout); unified addressing lets the driver copy between devices.
            unsafe {
                sys::cuMemcpyAsync(dst + offset, w.tensor.data_ptr() as u64, bytes, stream)
                    .result()
                    .map_err(|e| driver_error("copying between devices", e))?;
            }
        }
        Ok(())
    }
}
