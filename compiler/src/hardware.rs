//! The devices of the machine a workflow is checked on, as detected by the runtime.

use mgc_core::{Bytes, Device};
use serde::Serialize;

/// A device found on this machine and its total memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DetectedDevice {
    pub device: Device,
    pub memory: Bytes,
    /// A human name, such as the GPU model.
    pub description: String,
}

/// What detection found; the compiler never probes hardware itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Hardware {
    pub devices: Vec<DetectedDevice>,
    /// Why something could not be detected (for example "no CUDA driver"), said to the user.
    pub notes: Vec<String>,
}

impl Hardware {
    pub fn find(&self, device: Device) -> Option<&DetectedDevice> {
        self.devices.iter().find(|d| d.device == device)
    }
}
