//! Loading: the plan's model files checked against their fingerprints, memory-mapped, and every
//! tensor made where the plan puts it — weights resident in RAM for a CPU compute device used in
//! place over the mapping without copying (their pages read in at load), weights streamed from RAM
//! to a GPU packed into one pinned buffer per transfer, GPU-resident weights copied into device
//! memory, the `disk` tier left in the mapping to be read at step time.

use std::path::Path;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use memmap2::Mmap;
use mgc_plan::{Device as PlanDevice, ModelPlan, Plan, Transfer};
use tch::{Device, Kind, Tensor};

use super::error::RunError;
use super::memory;
use super::streams;

/// A model file, mapped.
pub struct MappedFile {
    pub map: Arc<Mmap>,
}

/// A device of the plan, as libtorch names it; `None` for `disk`.
pub fn torch_device(device: PlanDevice) -> Result<Option<Device>, RunError> {
    match device {
        PlanDevice::Cpu => Ok(Some(Device::Cpu)),
        PlanDevice::Disk => Ok(None),
        PlanDevice::Cuda(n) => Ok(Some(Device::Cuda(cuda_ordinal(n)?))),
        other => Err(RunError::Unsupported { what: format!("device `{other}`") }),
    }
}

/// A CUDA ordinal as libtorch and the driver take it.
pub fn cuda_ordinal(n: u32) -> Result<usize, RunError> {
    usize::try_from(n).map_err(|_| RunError::Unsupported { what: format!("device `cuda:{n}`") })
}

/// Every device the plan uses must be here.
pub fn check_devices(plan: &Plan) -> Result<(), RunError> {
    // A plan on the CPU alone never starts the CUDA driver: its host memory is not the plan's.
    let wants_gpu = plan.devices.iter().any(|d| matches!(d.name, PlanDevice::Cuda(_)));
    let gpus = if wants_gpu && tch::Cuda::is_available() { tch::Cuda::device_count() as usize } else { 0 };
    let have = if gpus == 0 { "cpu only; no CUDA device".to_owned() } else { format!("cpu and {gpus} CUDA device(s)") };
    for device in &plan.devices {
        match device.name {
            PlanDevice::Cpu | PlanDevice::Disk => {}
            PlanDevice::Cuda(n) if cuda_ordinal(n).is_ok_and(|n| n < gpus) => {}
            PlanDevice::Cuda(_) => return Err(RunError::DeviceAbsent { device: device.name.to_string(), have }),
            other => {
                return Err(RunError::DeviceAbsent {
                    device: other.to_string(),
                    have: format!("{have}; this runtime drives `cpu` and `cuda:N`"),
                });
            }
        }
    }
    Ok(())
}

/// Every device must have the memory the plan's peak needs, now.
pub fn check_memory(plan: &Plan) -> Result<(), RunError> {
    for device in &plan.devices {
        let available = match device.name {
            PlanDevice::Disk => continue,
            PlanDevice::Cpu => memory::available_ram(),
            PlanDevice::Cuda(n) => memory::cuda_memory(cuda_ordinal(n)?).map(|(free, _)| free),
            // `check_devices` refuses the others.
            _ => None,
        };
        if let Some(available) = available
            && device.peak_bytes > available
        {
            return Err(RunError::OutOfMemory {
                device: device.name.to_string(),
                needed: device.peak_bytes,
                available,
            });
        }
    }
    Ok(())
}

/// Opens and maps every model file, refusing any whose size or header changed.
pub fn open_inputs(plan: &Plan, dir: &Path) -> Result<Vec<MappedFile>, RunError> {
    let mut files = Vec::new();
    for input in &plan.inputs {
        let path = dir.join(&input.path);
        let shown = path.display().to_string();
        let read = |e: std::io::Error| RunError::Read { path: shown.clone(), message: e.to_string() };
        let file = std::fs::File::open(&path).map_err(read)?;
        let size = file.metadata().map_err(read)?.len();
        if size != input.size_bytes {
            return Err(RunError::Changed {
                path: shown,
                what: format!("it has {size} bytes, the plan says {}", input.size_bytes),
            });
        }
        let hash = mgc_plan::header_sha256(&file, input.header_bytes).map_err(read)?;
        if hash != input.header_sha256 {
            return Err(RunError::Changed {
                path: shown,
                what: "its header is not the one the plan was compiled from".into(),
            });
        }
        #[expect(unsafe_code, reason = "the mapping is read-only and kept alive as long as tensors over it")]
        // SAFETY: the file is mapped read-only; tensors made over it only read. Another process
        // truncating the file while mgc runs would fault, as with any mapped file.
        let map = unsafe { Mmap::map(&file) }.map_err(read)?;
        files.push(MappedFile { map: Arc::new(map) });
    }
    Ok(files)
}

/// The torch kind of a safetensors dtype.
fn kind(dtype: &str) -> Result<Kind, RunError> {
    Ok(match dtype {
        "F64" => Kind::Double,
        "F32" => Kind::Float,
        "F16" => Kind::Half,
        "BF16" => Kind::BFloat16,
        "I64" => Kind::Int64,
        "I32" => Kind::Int,
        "I16" => Kind::Int16,
        "I8" => Kind::Int8,
        "U8" => Kind::Uint8,
        "BOOL" => Kind::Bool,
        "F8_E4M3" => Kind::Float8e4m3fn,
        "F8_E5M2" => Kind::Float8e5m2,
        other => return Err(RunError::Unsupported { what: format!("dtype `{other}`") }),
    })
}

/// Reads one byte of every page of a tensor's bytes in the mapping, so that they are in memory.
fn prefault(file: &MappedFile, offset: u64, bytes: u64) {
    let (Ok(start), Ok(len)) = (usize::try_from(offset), usize::try_from(bytes)) else { return };
    if let Some(slice) = file.map.get(start..start.saturating_add(len)) {
        let touched = slice.iter().step_by(4096).fold(0u8, |acc, b| acc ^ b);
        std::hint::black_box(touched);
    }
}

/// A CPU tensor over the mapped bytes, without copying.
pub fn mapped_tensor(
    file: &MappedFile,
    offset: u64,
    bytes: u64,
    shape: &[u64],
    dtype: &str,
) -> Result<Tensor, RunError> {
    let kind = kind(dtype)?;
    let start = usize::try_from(offset).map_err(|_| RunError::Torch("offset too large".into()))?;
    let len = usize::try_from(bytes).map_err(|_| RunError::Torch("tensor too large".into()))?;
    let slice = file
        .map
        .get(start..start + len)
        .ok_or_else(|| RunError::Torch(format!("tensor at {offset} beyond the file")))?;
    let size: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let element = kind.elt_size_in_bytes();
    if len == 0 || slice.as_ptr().align_offset(element) != 0 {
        // Empty or misaligned: copy the bytes and view them as the dtype.
        return Ok(Tensor::from_slice(slice).view_dtype(kind).f_reshape(&size)?);
    }
    // Contiguous strides: each dimension steps over the product of the ones after it.
    let mut strides: Vec<i64> = size
        .iter()
        .rev()
        .scan(1i64, |acc, &d| {
            let stride = *acc;
            *acc *= d.max(1);
            Some(stride)
        })
        .collect();
    strides.reverse();
    #[expect(unsafe_code, reason = "a tensor over the read-only mapping, which outlives it")]
    // SAFETY: `slice` is `len` bytes of the mapping, aligned for `kind`, and `size`/`strides`
    // describe exactly those bytes; the tensor is only read, and `Loaded` keeps the mapping.
    let tensor = unsafe { Tensor::f_from_blob(slice.as_ptr(), &size, &strides, kind, Device::Cpu)? };
    Ok(tensor)
}

/// A weight: its tensor where it lives, and for GGUF block types the ggml type and the shape it
/// dequantizes to (the tensor then holds the raw blocks).
pub struct Weight {
    pub name: String,
    pub tensor: Tensor,
    pub quantized: Option<(String, Vec<i64>)>,
}

impl Weight {
    /// Another handle on the same storage (for the copy thread).
    pub fn handle(&self) -> Self {
        Self { name: self.name.clone(), tensor: self.tensor.shallow_clone(), quantized: self.quantized.clone() }
    }

    /// The same weight with its tensor replaced (a copy on another device).
    pub fn with(&self, tensor: Tensor) -> Self {
        Self { name: self.name.clone(), tensor, quantized: self.quantized.clone() }
    }
}

/// A layer's weights, where they live between steps.
pub struct LoadedLayer {
    pub tensors: Vec<Weight>,
    pub streamed: bool,
    /// What a step computes with them.
    pub work: super::compute::Work,
}

/// A model ready to run.
pub struct LoadedModel {
    pub compute: Device,
    pub layers: Vec<LoadedLayer>,
    /// Per transfer of the model, its pinned host buffer when its layers were packed into one.
    pub packed: Vec<Option<Tensor>>,
    /// Keeps the mappings alive while tensors point into them.
    pub _files: Vec<Arc<Mmap>>,
}

/// Loads a model's tensors to their homes.
pub fn load_model(
    model: &ModelPlan,
    transfers: &[&Transfer],
    files: &[MappedFile],
    progress: bool,
) -> Result<LoadedModel, RunError> {
    let compute =
        torch_device(model.compute)?.ok_or_else(|| RunError::Unsupported { what: "computing on `disk`".into() })?;
    let file = files
        .get(model.input)
        .ok_or_else(|| RunError::Plan { path: model.file.clone(), message: "no such input".into() })?;
    let bar = if progress { ProgressBar::new(model.bytes) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("loading {msg:<12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(model.name.clone());
    let pinned_ok = matches!(compute, Device::Cuda(_)) && tch::Cuda::is_available();
    // Layers streamed from RAM to a GPU are packed into one pinned buffer per transfer, below.
    let to_pack = |layer: &mgc_plan::LayerPlan| {
        layer.streamed && layer.home == PlanDevice::Cpu && matches!(compute, Device::Cuda(_)) && pinned_ok
    };
    let mut layers = Vec::new();
    let mut homes = Vec::new();
    for layer in &model.layers {
        let home = torch_device(layer.home)?;
        homes.push(home);
        let mut tensors = Vec::new();
        for t in &layer.tensors {
            let quantized = super::gguf::is_quantized(&t.dtype);
            let mapped = if quantized {
                // Raw blocks: they stay quantized until the compute device dequantizes them.
                mapped_tensor(file, t.offset, t.bytes, &[t.bytes], "U8")?
            } else {
                mapped_tensor(file, t.offset, t.bytes, &t.shape, &t.dtype)?
            };
            let placed = match home {
                // The disk tier: stays in the mapping, read at step time.
                None => mapped,
                // Still over the mapping: copied once, into its transfer's pinned buffer.
                Some(Device::Cpu) if to_pack(layer) => mapped,
                // Resident in RAM and computed on the CPU: used in place over the mapping, without
                // a copy; its pages are read in now, so that the first step does not pay for them.
                Some(Device::Cpu) if compute == Device::Cpu && !layer.streamed => {
                    prefault(file, t.offset, t.bytes);
                    memory::note_held(streams::tensor_bytes(&mapped));
                    mapped
                }
                Some(Device::Cpu) => {
                    let owned = mapped.f_detach_copy()?;
                    if layer.streamed && compute != Device::Cpu && pinned_ok {
                        streams::pinned(&owned, Device::Cuda(0))?
                    } else {
                        owned
                    }
                }
                // Resident on a GPU: still over the mapping; copied once, into the device's one
                // buffer for the model's weights there, below.
                Some(_) => mapped,
            };
            let quantized = quantized.then(|| (t.dtype.clone(), t.shape.iter().map(|&d| d as i64).collect()));
            tensors.push(Weight { name: t.name.clone(), tensor: placed, quantized });
            bar.inc(t.bytes);
        }
        layers.push(LoadedLayer { tensors, streamed: layer.streamed, work: super::compute::Work::of(layer) });
    }
    // Weights resident on a GPU: one buffer per GPU.
    let mut gpus: Vec<Device> = Vec::new();
    for &home in &homes {
        if let Some(device @ Device::Cuda(_)) = home
            && !gpus.contains(&device)
        {
            gpus.push(device);
        }
    }
    for device in gpus {
        let homed = layers.iter_mut().zip(&homes).filter(|(_, home)| **home == Some(device));
        pack_into_one(homed.map(|(layer, _)| layer), device)?;
    }
    let mut packed = Vec::new();
    let mut done = vec![false; layers.len()];
    for t in transfers {
        let range = t.first_layer..t.last_layer.saturating_add(1);
        let all = model.layers.get(range.clone()).is_some_and(|ls| !ls.is_empty() && ls.iter().all(to_pack));
        if !all || t.from != PlanDevice::Cpu {
            packed.push(None);
            continue;
        }
        let Device::Cuda(n) = compute else {
            packed.push(None);
            continue;
        };
        let group = layers.get_mut(range.clone()).unwrap_or_default();
        let layout = streams::layout(group.iter().map(|l| l.tensors.as_slice()));
        // One pinned allocation per transfer, laid out as its device slot: one copy per step.
        let buffer = streams::pinned(
            &Tensor::f_empty([layout.total.max(1) as i64], (Kind::Uint8, Device::Cpu))?,
            Device::Cuda(n),
        )?;
        for (layer, offsets) in group.iter_mut().zip(&layout.offsets) {
            for (w, &offset) in layer.tensors.iter_mut().zip(offsets) {
                let bytes = streams::tensor_bytes(&w.tensor) as i64;
                buffer.f_narrow(0, offset as i64, bytes)?.f_copy_(&streams::as_bytes(&w.tensor)?)?;
                w.tensor = streams::view_like(&buffer, offset, &w.tensor)?;
            }
        }
        for d in done.get_mut(range).unwrap_or_default() {
            *d = true;
        }
        packed.push(Some(buffer));
    }
    // Streamed from RAM but in no packed transfer: a pinned copy of each tensor.
    for ((layer, plan), done) in layers.iter_mut().zip(&model.layers).zip(done) {
        if to_pack(plan) && !done {
            for w in &mut layer.tensors {
                w.tensor = streams::pinned(&w.tensor.f_detach_copy()?, compute)?;
            }
        }
    }
    bar.finish_and_clear();
    Ok(LoadedModel { compute, layers, packed, _files: vec![file.map.clone()] })
}

/// Copies the weights of `group` into one buffer on `device`, laid out as a transfer is, and
/// makes each weight a view of it; returns the buffer (`None` for no weights). One allocation for
/// a model's weights resident on a GPU, where a tensor each had the caching allocator round every
/// one up: a 4.7 MB projection takes a quarter of a 20 MiB segment and leaves 2 MB that no other
/// weight fits, a 27.5 MB one is rounded to 28 MiB. By the allocator's rules, Wan 2.1 1.3B's
/// weights take 249 MB (8.8%) more that way; its plan counted none of it, and on an H200 the
/// run's peak was 265 MB over the plan's.
fn pack_into_one<'a>(
    group: impl IntoIterator<Item = &'a mut LoadedLayer>,
    device: Device,
) -> Result<Option<Tensor>, RunError> {
    let mut group: Vec<&mut LoadedLayer> = group.into_iter().collect();
    if group.is_empty() {
        return Ok(None);
    }
    let layout = streams::layout(group.iter().map(|l| l.tensors.as_slice()));
    let buffer = Tensor::f_empty([layout.total.max(1) as i64], (Kind::Uint8, device))?;
    for (layer, offsets) in group.iter_mut().zip(&layout.offsets) {
        for (w, &offset) in layer.tensors.iter_mut().zip(offsets) {
            let bytes = streams::tensor_bytes(&w.tensor) as i64;
            buffer.f_narrow(0, offset as i64, bytes)?.f_copy_(&streams::as_bytes(&w.tensor)?)?;
            w.tensor = streams::view_like(&buffer, offset, &w.tensor)?;
        }
    }
    Ok(Some(buffer))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use std::path::Path;

    use mgc_compiler::compile::toml_to_plan;
    use mgc_compiler::inventory::synth::{Fill, InventoryFixture, write_model};
    use mgc_core::Hardware;

    use super::*;

    /// The packing that gives a GPU's resident weights one buffer, run on the CPU: every weight
    /// reads back as it was, from a view that lies in the one buffer, aligned.
    #[test]
    fn weights_packed_into_one_buffer_read_back_from_views_of_it() {
        let weight = |name: &str, shape: &[i64], kind: Kind| Weight {
            name: name.to_owned(),
            tensor: Tensor::f_arange(shape.iter().product::<i64>(), (Kind::Float, Device::Cpu))
                .unwrap()
                .f_to_kind(kind)
                .unwrap()
                .f_reshape(shape)
                .unwrap(),
            quantized: None,
        };
        let layer = |weights: Vec<Weight>| LoadedLayer { tensors: weights, streamed: false, work: Default::default() };
        let mut layers = [
            layer(vec![weight("a.weight", &[5, 3], Kind::BFloat16), weight("a.bias", &[5], Kind::Float)]),
            layer(vec![weight("b.weight", &[7, 2], Kind::Half)]),
        ];
        let before: Vec<Tensor> = layers.iter().flat_map(|l| l.tensors.iter().map(|w| w.tensor.copy())).collect();
        let buffer = pack_into_one(layers.iter_mut(), Device::Cpu).unwrap().unwrap();
        let start = buffer.data_ptr() as usize;
        let range = start..start + buffer.numel();
        for (w, was) in layers.iter().flat_map(|l| &l.tensors).zip(&before) {
            assert!(w.tensor.equal(was), "`{}`", w.name);
            let at = w.tensor.data_ptr() as usize;
            assert!(
                range.contains(&at) && (at - start).is_multiple_of(256),
                "`{}` is not a view of the buffer",
                w.name
            );
        }
        assert!(pack_into_one(Vec::new(), Device::Cpu).unwrap().is_none());
    }

    #[test]
    fn cpu_resident_weights_are_used_in_place_over_the_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let inventory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tiny_flux.json");
        let fixture: InventoryFixture = serde_json::from_str(&std::fs::read_to_string(inventory).unwrap()).unwrap();
        write_model(&fixture, "", &dir.path().join("tiny.safetensors"), Fill::Random { seed: 3 }).unwrap();
        let workflow = "[[device]]\nname = \"cpu\"\nmemory = \"4gb\"\n[[model]]\nname = \"tiny\"\nfile = \"tiny.safetensors\"\ncompute = \"cpu\"\nallocation = \"cpu,50%;disk,*\"\n";
        let plan = toml_to_plan(workflow, dir.path(), &Hardware::default).unwrap();
        let files = open_inputs(&plan, dir.path()).unwrap();
        let transfers: Vec<&Transfer> = plan.transfers.iter().collect();
        let loaded = load_model(&plan.models[0], &transfers, &files, false).unwrap();
        let start = files[0].map.as_ptr() as usize;
        let mapping = start..start + files[0].map.len();
        let mut resident = 0;
        for (layer, planned) in loaded.layers.iter().zip(&plan.models[0].layers) {
            if planned.home == PlanDevice::Cpu && !planned.streamed {
                for w in &layer.tensors {
                    assert!(mapping.contains(&(w.tensor.data_ptr() as usize)), "`{}` was copied", w.name);
                    resident += 1;
                }
            }
        }
        assert!(resident > 0, "the plan keeps some layers resident in RAM");
    }
}
