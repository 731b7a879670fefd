use std::sync::atomic::{AtomicU64, Ordering};

use mgc_core::Bytes;

/// The largest anonymous resident memory seen by [`sample`] in this process.
static ANON_PEAK: AtomicU64 = AtomicU64::new(0);

/// Memory this run holds outside its anonymous resident set, so counted here: pinned buffers
/// (the driver maps them) and weights used in place from a model file's mapping.
static HELD: AtomicU64 = AtomicU64::new(0);

/// Notes `bytes` held that way for the rest of the run.
pub fn note_held(bytes: u64) {
    HELD.fetch_add(bytes, Ordering::Relaxed);
}

/// The process's memory when the run started, to measure what the run adds.
#[derive(Clone, Debug)]
pub struct Baseline {
    pub anon: u64,
    /// Each CUDA device's free memory (its ordinal, bytes) before libtorch used it.
    pub cuda_free: Vec<(usize, u64)>,
}

impl Baseline {
    /// The process's memory now. No device is touched: a run that computes on the CPU alone
    /// never starts the CUDA driver, whose host memory would count in its peak and not in the
    /// probe's figure of the CPU runtime.
    pub fn now() -> Self {
        let anon = anon_now();
        ANON_PEAK.store(anon, Ordering::Relaxed);
        HELD.store(0, Ordering::Relaxed);
        Self { anon, cuda_free: Vec::new() }
    }

    /// Notes the free memory of each of these CUDA devices, before libtorch uses them. The
    /// driver's context that reading it creates counts in the host's peak, as it does in a run's.
    pub fn note_cuda(&mut self, ordinals: impl IntoIterator<Item = usize>) {
        if mgc_devices::cuda_driver().is_err() {
            return;
        }
        let count = cuda_count();
        self.cuda_free.extend(
            ordinals.into_iter().filter(|n| *n < count).filter_map(|n| cuda_memory(n).map(|(free, _)| (n, free))),
        );
    }

    /// Memory in use on CUDA device `ordinal` when its free memory is `low`, above the baseline:
    /// the run's weights, copies and activations there and libtorch's own.
    pub fn cuda_above(&self, ordinal: usize, low: u64) -> Option<u64> {
        self.cuda_free.iter().find(|(n, _)| *n == ordinal).map(|(_, free)| free.saturating_sub(low))
    }

    /// The largest anonymous memory sampled since, above the baseline, with the pinned buffers
    /// and the weights used in place from the mapping: what the run holds (weights in RAM,
    /// pinned buffers, libtorch's own), not the pages of the `disk` tier the kernel maps in for a
    /// copy and may drop again.
    pub fn peak_above(&self) -> u64 {
        sample();
        ANON_PEAK.load(Ordering::Relaxed).saturating_sub(self.anon) + HELD.load(Ordering::Relaxed)
    }
}

/// glibc serves an allocation of 128 KiB or more from a mapping of its own, returned on free, but
/// raises that threshold (up to 32 MiB) each time such a block is freed, and its heaps' trim
/// threshold to twice it; later blocks of that size then come from its heaps and stay resident
/// when freed. A long-running process (ComfyUI's) gets there within its first steps. How far it
/// had risen depended on the order of a run's allocations (the same plan held up to 2 MiB more
/// with its report written as JSON than as a table), and held at its start instead, every
/// temporary of 128 KiB or more came from a fresh mapping and faulted its pages in each time (a
/// layer norm of 1024 rows at width 256 took 380 µs instead of 150 on one thread, and a run's
/// norms read as a slow machine). Called first thing by the runtime's command line (`mgc run` and
/// `mgc probe`), this holds both at the values glibc rises to, so that a run holds the same memory
/// every time and computes as a warm process does, and what the probe measures is what a run
/// holds: its heaps keep the largest temporaries a run makes, which a plan counts (a norm's and
/// a dequantized weight's: `norm_workspace` and `dequantize_workspace` in a profile). Not called
/// for the node pack, whose process is not ours to tune.
pub fn steady_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// The most glibc raises its mapping threshold to on a 64-bit machine.
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        /// Twice that, as glibc sets its trim threshold when it raises the other.
        const TRIM_THRESHOLD: libc::c_int = 64 << 20;
        #[expect(unsafe_code, reason = "sets two of glibc's allocator parameters; no memory is touched")]
        // SAFETY: mallopt only records the parameters; any value is valid for them.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}

/// Hands the allocator's free memory back to the system (glibc's `malloc_trim`), so that what
/// is allocated next takes fresh pages and shows in the resident memory.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[expect(unsafe_code, reason = "asks glibc to return free pages; no live memory is touched")]
        // SAFETY: malloc_trim only releases memory the allocator holds free.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Notes the process's anonymous resident memory now (after loading, after each copy and step).
pub fn sample() {
    ANON_PEAK.fetch_max(anon_now(), Ordering::Relaxed);
}

/// The process's anonymous resident memory now.
pub fn anon_now() -> u64 {
    status_bytes("RssAnon").unwrap_or(0)
}

/// This process's figure of `key` in `/proc/self/status`, in bytes.
fn status_bytes(key: &str) -> Option<u64> {
    let text = fs_err::read_to_string("/proc/self/status").ok()?;
    mgc_core::meminfo::kib_field(&text, key).map(Bytes::get)
}

/// Memory the system can still give, from `/proc/meminfo`.
pub fn available_ram() -> Option<u64> {
    let text = fs_err::read_to_string("/proc/meminfo").ok()?;
    mgc_core::meminfo::kib_field(&text, "MemAvailable").map(Bytes::get)
}

/// CUDA devices the driver sees.
fn cuda_count() -> usize {
    cudarc::driver::CudaContext::device_count().ok().and_then(|n| usize::try_from(n).ok()).unwrap_or(0)
}

/// Free and total memory of a CUDA device, through the driver.
pub fn cuda_memory(ordinal: usize) -> Option<(u64, u64)> {
    mgc_devices::cuda_driver().ok()?;
    let context = cudarc::driver::CudaContext::new(ordinal).ok()?;
    let (free, total) = context.mem_get_info().ok()?;
    Some((free as u64, total as u64))
}
