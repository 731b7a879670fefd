//! Detects this machine's devices, without libtorch: the light `mgc` binary uses it when a
//! workflow declares no devices, and the runtime asks it whether a CUDA driver is here.
//!
//! A machine without a CUDA driver is a normal case, reported as a note, never an error.

use mgc_core::{Bytes, DetectedDevice, Device, Hardware};

/// Why the CUDA driver cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoCuda {
    #[error("no CUDA driver")]
    NoDriver,
    #[error("the CUDA driver did not start: {0}")]
    DidNotStart(String),
}

/// Whether the CUDA driver library is here and starts; every other driver call comes after this
/// one, since with dynamic loading a driver call made without the library would panic.
#[expect(unsafe_code, reason = "cudarc's driver calls; the precondition is stated where it is met")]
pub fn cuda_driver() -> Result<(), NoCuda> {
    use cudarc::driver::{result, sys};
    // SAFETY: only looks for the driver library.
    if !unsafe { sys::is_culib_present() } {
        return Err(NoCuda::NoDriver);
    }
    result::init().map_err(|e| NoCuda::DidNotStart(e.to_string()))
}

/// Detects the CPU's RAM and every CUDA device.
pub fn detect() -> Hardware {
    let mut detected = Hardware::default();
    match cuda_devices() {
        Ok(gpus) => detected.devices.extend(gpus),
        Err(note) => detected.notes.push(note),
    }
    match ram() {
        Ok(memory) => {
            detected.devices.push(DetectedDevice { device: Device::Cpu, memory, description: "system RAM".into() });
        }
        Err(note) => detected.notes.push(note),
    }
    detected
}

/// Total RAM from `/proc/meminfo`.
fn ram() -> Result<Bytes, String> {
    let text = fs_err::read_to_string("/proc/meminfo").map_err(|e| format!("cannot read the RAM size: {e}"))?;
    mgc_core::meminfo::kib_field(&text, "MemTotal")
        .ok_or_else(|| "cannot read the RAM size from `/proc/meminfo`".to_owned())
}

/// CUDA devices through the driver API, loaded at run time.
#[expect(unsafe_code, reason = "cudarc's driver calls; each precondition is stated where it is met")]
fn cuda_devices() -> Result<Vec<DetectedDevice>, String> {
    use cudarc::driver::result;
    cuda_driver().map_err(|e| e.to_string())?;
    let count = result::device::get_count().map_err(|e| format!("cannot count CUDA devices: {e}"))?;
    let mut found = Vec::new();
    for ordinal in 0..count {
        let device = result::device::get(ordinal).map_err(|e| format!("cannot open cuda:{ordinal}: {e}"))?;
        // SAFETY: `device` was returned by `result::device::get`.
        let memory = unsafe { result::device::total_mem(device) }.map_err(|e| format!("cuda:{ordinal}: {e}"))?;
        let description = result::device::get_name(device).unwrap_or_else(|_| "CUDA device".into());
        found.push(DetectedDevice {
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
