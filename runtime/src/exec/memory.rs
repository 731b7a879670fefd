//! Memory as the operating system and the CUDA driver see it.

/// The process's resident memory when the run started, to measure what the run adds.
#[derive(Clone, Copy, Debug)]
pub struct Baseline {
    pub rss: u64,
}

impl Baseline {
    pub fn now() -> Self {
        Self { rss: status_kib("VmRSS:").unwrap_or(0) * 1024 }
    }

    /// The process's peak resident memory above the baseline.
    pub fn peak_above(&self) -> u64 {
        (status_kib("VmHWM:").unwrap_or(0) * 1024).saturating_sub(self.rss)
    }
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
#[allow(unsafe_code, reason = "the driver's presence is checked before any driver call")]
pub fn cuda_memory(ordinal: usize) -> Option<(u64, u64)> {
    // SAFETY: only looks for the driver library.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return None;
    }
    let context = cudarc::driver::CudaContext::new(ordinal).ok()?;
    let (free, total) = context.mem_get_info().ok()?;
    Some((free as u64, total as u64))
}
