//! The devices detected on this machine: what `mgc-devices` finds and what the compiler places
//! on when a workflow declares no devices. The compiler never probes hardware itself.

use serde::Serialize;

use crate::{Bytes, Device};

/// A device found on this machine and its total memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DetectedDevice {
    pub device: Device,
    pub memory: Bytes,
    /// A human name, such as the GPU model.
    pub description: String,
}

/// What detection found.
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
