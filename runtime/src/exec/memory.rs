use std::sync::atomic::{AtomicU64, Ordering};

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
#[derive(Clone, Copy, Debug)]
pub struct Baseline {
    pub anon: u64,
}

impl Baseline {
    pub fn now() -> Self {
        let anon = anon_now();
        ANON_PEAK.store(anon, Ordering::Relaxed);
        HELD.store(0, Ordering::Relaxed);
        Self { anon }
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

/// Notes the process's anonymous resident memory now (after loading, after each copy and step).
pub fn sample() {
    ANON_PEAK.fetch_max(anon_now(), Ordering::Relaxed);
}

fn anon_now() -> u64 {
    status_kib("RssAnon:").unwrap_or(0) * 1024
}

fn status_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// Memory the system can still give, from `/proc/meminfo`.
pub fn available_ram() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// Free and total memory of a CUDA device, through the driver.
#[expect(unsafe_code, reason = "the driver's presence is checked before any driver call")]
pub fn cuda_memory(ordinal: usize) -> Option<(u64, u64)> {
    // SAFETY: only looks for the driver library.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return None;
    }
    let context = cudarc::driver::CudaContext::new(ordinal).ok()?;
    let (free, total) = context.mem_get_info().ok()?;
    Some((free as u64, total as u64))
}
