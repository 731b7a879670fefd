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
        // Host tensors go through the staging buffer in chunks: each chunk is gathered on a few
        // threads, and its copy to the device runs while the next chunk is gathered.
        let staging = self.staging.as_ref();
        let mut pieces = Vec::new();
        for (w, offset) in placed().filter(|(w, _)| w.tensor.device() == Device::Cpu) {
            let bytes = tensor_bytes(&w.tensor);
            let staging = staging.ok_or_else(|| RunError::Cuda("no staging buffer for host layers".into()))?;
            if offset + bytes > tensor_bytes(staging) {
                return Err(RunError::Cuda("a transfer does not fit the staging buffer".into()));
            }
            pieces.push(Piece { src: w.tensor.data_ptr() as usize, at: offset, len: bytes });
        }
        if let Some(staging) = staging.filter(|_| !pieces.is_empty()) {
            // SAFETY: each piece's source is `len` bytes of a contiguous CPU tensor (memory or the
            // mapping), alive for this call; its range of the staging buffer lies within it
            // (checked above), and the layout's ranges do not overlap; the previous transfer out
            // of the buffer has ended (every transfer is waited for), and a range is sent only
            // once it is gathered.
            unsafe {
                gather_chunked(&pieces, staging.data_ptr().cast::<u8>(), CHUNK, gather_threads(), |from, to| {
                    self.send(dst, from, to, stream)
                })?;
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

/// Copies `src` into `dst` as a transfer fills the staging buffer: in chunks, on up to `threads`
/// threads. The probe's disk read goes through this, so that it measures the runtime's own
/// gathering: on one thread, as a CPU's ring is filled, and on [`gather_threads`], as a GPU's
/// staging buffer is.
pub fn gather_into(src: &[u8], dst: &mut [u8], threads: usize) {
    let len = src.len().min(dst.len()) as u64;
    let piece = Piece { src: src.as_ptr() as usize, at: 0, len };
    #[expect(unsafe_code, reason = "two distinct slices of at least `len` bytes")]
    // SAFETY: `src` holds `len` bytes, `dst` as many from its start, and a `&mut` slice overlaps
    // no other.
    let done = unsafe {
        gather_chunked(&[piece], dst.as_mut_ptr(), CHUNK, threads, |_, _| Ok::<(), std::convert::Infallible>(()))
    };
    let Ok(()) = done;
}

/// A host range to gather: `len` bytes at address `src`, into the staging buffer at `at`.
#[derive(Clone, Copy, Debug)]
pub struct Piece {
    pub src: usize,
    pub at: u64,
    pub len: u64,
}

/// Bytes gathered into the staging buffer before they are sent on.
pub const CHUNK: u64 = 16 << 20;

/// The least a gathering thread copies: below it, starting the thread costs more than it saves.
const PER_THREAD: u64 = 2 << 20;

/// Threads that gather a chunk: half the cores (the compute thread and libtorch keep the rest),
/// at most eight. One thread copies from a mapped file at well under what a link to a GPU takes.
pub fn gather_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).clamp(1, 8)
}

/// Gathers `pieces` (in the order of `at`, not overlapping) into `base`, a chunk of `chunk` bytes
/// at a time, each chunk's bytes split evenly over up to `threads` threads whatever the sizes of
/// its pieces; after each chunk, `sent(from, to)` with the range of `base` it now holds (from the
/// end of the last range sent to the end of the chunk's last piece). The probe times this very
/// routine, so a plan's rate is the rate its runs gather at.
///
/// # Safety
/// Each piece's `src` is valid for `len` bytes; `base` is valid for every piece's `at + len`;
/// no source overlaps `base`'s pieces, nor do those overlap each other.
#[expect(unsafe_code, reason = "raw copies whose bounds the caller guarantees")]
pub unsafe fn gather_chunked<E>(
    pieces: &[Piece],
    base: *mut u8,
    chunk: u64,
    threads: usize,
    mut sent: impl FnMut(u64, u64) -> Result<(), E>,
) -> Result<(), E> {
    let chunk = chunk.max(1);
    let mut group: Vec<Piece> = Vec::new();
    let mut in_group = 0u64;
    let mut sent_to = pieces.first().map_or(0, |p| p.at);
    let mut flush = |group: &mut Vec<Piece>, in_group: &mut u64, sent_to: &mut u64| -> Result<(), E> {
        let Some(end) = group.last().map(|p| p.at + p.len) else { return Ok(()) };
        // SAFETY: as the caller guarantees, for every part of its pieces.
        unsafe { gather_group(group, base as usize, *in_group, threads) };
        group.clear();
        *in_group = 0;
        sent(*sent_to, end)?;
        *sent_to = end;
        Ok(())
    };
    for piece in pieces {
        let mut done = 0;
        while done < piece.len {
            let n = (piece.len - done).min(chunk - in_group);
            group.push(Piece { src: piece.src + done as usize, at: piece.at + done, len: n });
            in_group += n;
            done += n;
            if in_group == chunk {
                flush(&mut group, &mut in_group, &mut sent_to)?;
            }
        }
    }
    flush(&mut group, &mut in_group, &mut sent_to)
}

/// Copies a group of pieces holding `bytes` in all, split into equal runs of bytes, one per thread.
///
/// # Safety
/// As for [`gather_chunked`].
#[expect(unsafe_code, reason = "raw copies whose bounds the caller guarantees")]
unsafe fn gather_group(group: &[Piece], base: usize, bytes: u64, threads: usize) {
    let threads = usize::try_from(bytes / PER_THREAD).unwrap_or(usize::MAX).clamp(1, threads.max(1));
    let copy = |from: u64, to: u64| {
        // The parts of the group's pieces that fall within bytes `from..to` of the group.
        let mut at = 0u64;
        for p in group {
            let (start, end) = (from.max(at), to.min(at + p.len));
            if start < end {
                let skip = (start - at) as usize;
                // SAFETY: `skip..skip + (end - start)` lies within the piece, whose source and
                // destination the caller guarantees; threads copy disjoint byte runs.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        (p.src + skip) as *const u8,
                        (base + p.at as usize + skip) as *mut u8,
                        (end - start) as usize,
                    );
                }
            }
            at += p.len;
        }
    };
    if threads == 1 {
        copy(0, bytes);
        return;
    }
    let step = bytes.div_ceil(threads as u64);
    std::thread::scope(|scope| {
        for start in (0..bytes).step_by(step as usize) {
            let end = (start + step).min(bytes);
            scope.spawn(move || copy(start, end));
        }
    });
}

#[cfg(test)]
#[expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    /// Pieces of many sizes with gaps between them, gathered a chunk at a time on several
    /// threads: every byte lands where it belongs, nothing else is written, and every range is
    /// sent once, in order, only after all of its pieces' bytes are in place.
    #[test]
    fn gathering_in_chunks_sends_each_range_once_it_holds_its_pieces() {
        let sizes = [4096u64, 5 << 20, 17, 3 << 20, 0, (9 << 20) + 5, 1];
        let mut pieces = Vec::new();
        let mut sources = Vec::new();
        let mut at = 100u64;
        for (i, &len) in sizes.iter().enumerate() {
            sources.push((0..len).map(|j| ((j as usize * 7 + i * 13) % 251) as u8).collect::<Vec<u8>>());
            pieces.push(Piece { src: sources[i].as_ptr() as usize, at, len });
            at += len + 300;
        }
        let mut dst = vec![0xAAu8; at as usize];
        let base = dst.as_mut_ptr();
        let mut ranges = Vec::new();
        let holds = |dst: *const u8, from: u64, to: u64| {
            pieces.iter().zip(&sources).all(|(p, src)| {
                (p.at.max(from)..(p.at + p.len).min(to)).all(|b| {
                    // SAFETY: `b` lies within `dst`, which outlives the test.
                    #[expect(unsafe_code, reason = "reads the buffer being gathered into")]
                    let byte = unsafe { *dst.add(b as usize) };
                    byte == src[(b - p.at) as usize]
                })
            })
        };
        #[expect(unsafe_code, reason = "the routine under test")]
        // SAFETY: every source holds its `len` bytes and `dst` every `at + len`; none overlap.
        unsafe {
            gather_chunked(&pieces, base, 4 << 20, 3, |from, to| {
                assert!(holds(base, from, to), "{from}..{to} sent before it was gathered");
                ranges.push((from, to));
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        assert_eq!(ranges.first().map(|r| r.0), Some(100), "from the first piece");
        assert_eq!(ranges.last().map(|r| r.1), pieces.last().map(|p| p.at + p.len), "to the last");
        assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0 && w[0].0 < w[0].1), "{ranges:?}");
        assert!(ranges.len() >= 5, "chunks of 4 MiB: {ranges:?}");
        assert!(holds(dst.as_ptr(), 0, at), "every piece in place");
        let mut gaps = 0..100u64;
        for (p, next) in pieces.iter().zip(pieces.iter().skip(1)) {
            assert!(dst[(p.at + p.len) as usize..next.at as usize].iter().all(|&b| b == 0xAA), "a gap was written");
        }
        assert!(gaps.all(|b| dst[b as usize] == 0xAA));
    }

    #[test]
    fn gathering_on_several_threads_copies_every_byte() {
        for len in [0usize, 1, 4095, 40 << 20, (40 << 20) + 3] {
            let src: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut dst = vec![0u8; len];
            gather_into(&src, &mut dst, 4);
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
