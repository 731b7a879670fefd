//! mgc's runtime. For now: what devices this machine has (CUDA GPUs through the driver, RAM from
//! the OS), the input the compiler needs when a workflow leaves devices to detection.

pub mod devices;
