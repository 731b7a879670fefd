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
    pub fn open(ordinal: usize) -> Result<Self, RunError> {
        // Without the driver library a driver call would panic, so this check comes first.
        mgc_devices::cuda_driver().map_err(|e| RunError::Cuda(e.to_string()))?;
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
    #[expect(unsafe_code, reason = "driver copies between buffers whose sizes are checked here")]
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

    /// A transfer without a packed buffer: host tensors through the staging buffer, then device
    /// tensors one by one (after it, so that the staged copies do not overwrite them).
    #[expect(unsafe_code, reason = "driver copies between buffers whose sizes are checked here")]
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
        // Host tensors go through the staging buffer in chunks: each chunk's copy to the device
        // runs while the next chunk is gathered.
        let mut sent = 0u64;
        let mut gathered = 0u64;
        for (w, offset) in placed().filter(|(w, _)| w.tensor.device() == Device::Cpu) {
            let bytes = tensor_bytes(&w.tensor);
            let staging =
                self.staging.as_ref().ok_or_else(|| RunError::Cuda("no staging buffer for host layers".into()))?;
            if offset + bytes > tensor_bytes(staging) {
                return Err(RunError::Cuda("a transfer does not fit the staging buffer".into()));
            }
            // SAFETY: the source is `bytes` bytes of a contiguous CPU tensor (memory or the
            // mapping); the staging buffer has room (checked) and this range of it is not being
            // sent (only ranges below `gathered` are); the previous transfer out of it has ended
            // (every transfer is waited for).
            unsafe {
                gather(
                    w.tensor.data_ptr().cast::<u8>(),
                    staging.data_ptr().cast::<u8>().add(offset as usize),
                    bytes as usize,
                );
            }
            gathered = offset + bytes;
            if gathered - sent >= CHUNK {
                self.send(dst, sent, gathered, stream)?;
                sent = gathered;
            }
        }
        if gathered > sent {
            self.send(dst, sent, gathered, stream)?;
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

    /// Copies `from..to` of the staging buffer to the same range of the slot at `dst`.
    #[expect(unsafe_code, reason = "a driver copy between buffers whose sizes are checked here")]
    fn send(&self, dst: u64, from: u64, to: u64, stream: sys::CUstream) -> Result<(), RunError> {
        let staging = self.staging.as_ref().ok_or_else(|| RunError::Cuda("no staging buffer".into()))?;
        if to > tensor_bytes(staging) || from > to {
            return Err(RunError::Cuda("a copy beyond the staging buffer".into()));
        }
        // SAFETY: `from..to` lies in the staging buffer (checked) and in the slot (the layout was
        // checked against it); both outlive the copy, which is waited for.
        unsafe {
            sys::cuMemcpyHtoDAsync_v2(
                dst + from,
                staging.data_ptr().cast::<u8>().add(from as usize).cast(),
                (to - from) as usize,
                stream,
            )
            .result()
            .map_err(|e| driver_error("copying to the device", e))
        }
    }
}

/// Copies `src` into `dst` as the staging buffer is filled (on a few threads when it is large).
pub fn gather_into(src: &[u8], dst: &mut [u8]) {
    let len = src.len().min(dst.len());
    #[expect(unsafe_code, reason = "two distinct slices of at least `len` bytes")]
    // SAFETY: both slices hold at least `len` bytes, and a `&mut` slice overlaps no other.
    unsafe {
        gather(src.as_ptr(), dst.as_mut_ptr(), len);
    }
}

/// Bytes gathered into the staging buffer before they are sent on.
const CHUNK: u64 = 16 << 20;

/// Copies `len` bytes, on a few threads when there are many: one thread copies from a mapped file
/// at well under what the link to a GPU takes.
///
/// # Safety
/// `src` and `dst` are valid for `len` bytes and do not overlap.
#[expect(unsafe_code, reason = "raw copies whose bounds the caller guarantees")]
unsafe fn gather(src: *const u8, dst: *mut u8, len: usize) {
    const PIECE: usize = 8 << 20;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (len / PIECE).clamp(1, (cores / 2).clamp(1, 4));
    if threads == 1 {
        // SAFETY: as the caller guarantees.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        return;
    }
    let step = len.div_ceil(threads);
    let (src, dst) = (src as usize, dst as usize);
    std::thread::scope(|scope| {
        for start in (0..len).step_by(step) {
            let n = step.min(len - start);
            scope.spawn(move || {
                // SAFETY: `start..start + n` lies within both ranges the caller guarantees, and
                // the threads' pieces do not overlap.
                unsafe { std::ptr::copy_nonoverlapping((src + start) as *const u8, (dst + start) as *mut u8, n) };
            });
        }
    });
}

#[cfg(test)]
#[expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn gathering_on_several_threads_copies_every_byte() {
        for len in [0usize, 1, 4095, 40 << 20, (40 << 20) + 3] {
            let src: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut dst = vec![0u8; len];
            gather_into(&src, &mut dst);
            assert!(src == dst, "{len} bytes");
        }
    }

    #[test]
    fn layouts_align_every_tensor_and_views_read_back_what_was_packed() {
        let weights: Vec<Weight> =
            [(vec![3i64, 5], Kind::Float), (vec![7], Kind::BFloat16), (vec![2, 2, 2], Kind::Half)]
                .into_iter()
                .enumerate()
                .map(|(i, (shape, kind))| Weight {
                    name: format!("w{i}"),
                    tensor: Tensor::f_arange(shape.iter().product::<i64>(), (Kind::Float, Device::Cpu))
                        .unwrap()
                        .f_to_kind(kind)
                        .unwrap()
                        .f_reshape(shape.as_slice())
                        .unwrap(),
                    quantized: None,
                })
                .collect();
        let layers = [weights];
        let layout = layout(layers.iter().map(|l| l.as_slice()));
        assert!(layout.offsets[0].iter().all(|o| o % ALIGN == 0));
        let buffer = Tensor::f_zeros([layout.total as i64], (Kind::Uint8, Device::Cpu)).unwrap();
        for (w, &offset) in layers[0].iter().zip(&layout.offsets[0]) {
            buffer
                .f_narrow(0, offset as i64, tensor_bytes(&w.tensor) as i64)
                .unwrap()
                .f_copy_(&as_bytes(&w.tensor).unwrap())
                .unwrap();
        }
        for (w, &offset) in layers[0].iter().zip(&layout.offsets[0]) {
            let view = view_like(&buffer, offset, &w.tensor).unwrap();
            assert_eq!(view.size(), w.tensor.size());
            assert!(view.equal(&w.tensor), "{}", w.name);
        }
    }
}
