//! Detects this machine's devices, without libtorch: the light `mgc` binary uses it when a
//! workflow declares no devices.
//!
//! Detects this machine's devices. A machine without a CUDA driver is a normal case, reported as
//! a note, never an error.

use mgc_core::{Bytes, Device};

/// A device found on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub device: Device,
    pub memory: Bytes,
    pub description: String,
}

/// What detection found, and why anything is missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detected {
    pub devices: Vec<Found>,
    pub notes: Vec<String>,
}

/// Detects the CPU's RAM and every CUDA device.
pub fn detect() -> Detected {
    let mut detected = Detected::default();
    match cuda_devices() {
        Ok(gpus) => detected.devices.extend(gpus),
        Err(note) => detected.notes.push(note),
    }
    match ram() {
        Ok(memory) => detected.devices.push(Found { device: Device::Cpu, memory, description: "system RAM".into() }),
        Err(note) => detected.notes.push(note),
    }
    detected
}

/// Total RAM from `/proc/meminfo`.
fn ram() -> Result<Bytes, String> {
    let text = fs_err::read_to_string("/proc/meminfo").map_err(|e| format!("cannot read the RAM size: {e}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| Bytes(kb.saturating_mul(1024)))
        .ok_or_else(|| "cannot read the RAM size from `/proc/meminfo`".to_owned())
}

/// CUDA devices through the driver API, loaded at run time.
#[allow(unsafe_code, reason = "cudarc's driver calls; each precondition is stated where it is met")]
fn cuda_devices() -> Result<Vec<Found>, String> {
    use cudarc::driver::{result, sys};
    // SAFETY: only looks for the driver library; with dynamic loading, any driver call made
    // without it would panic, so this check comes first.
    if !unsafe { sys::is_culib_present() } {
        return Err("no CUDA driver".into());
    }
    result::init().map_err(|e| format!("the CUDA driver did not start: {e}"))?;
    let count = result::device::get_count().map_err(|e| format!("cannot count CUDA devices: {e}"))?;
    let mut found = Vec::new();
    for ordinal in 0..count {
        let device = result::device::get(ordinal).map_err(|e| format!("cannot open cuda:{ordinal}: {e}"))?;
        // SAFETY: `device` was returned by `result::device::get`.
        let memory = unsafe { result::device::total_mem(device) }.map_err(|e| format!("cuda:{ordinal}: {e}"))?;
        let description = result::device::get_name(device).unwrap_or_else(|_| "CUDA device".into());
        found.push(Found {
            device: Device::Cuda(u32::try_from(ordinal).unwrap_or(0)),
            memory: Bytes(u64::try_from(memory).unwrap_or(u64::MAX)),
            description,
        });
    }
    if found.is_empty() {
        return Err("the CUDA driver reports no devices".into());
    }
    Ok(found)
}
