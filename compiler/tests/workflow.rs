//! Resolving workflows against detected hardware (fixed here, so results do not depend on the
//! machine the tests run on).
#![expect(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

use mgc_compiler::workflow::{Origin, SpecErrorKind, Workload, toml_to_workflow};
use mgc_core::{Bytes, DetectedDevice, Device, Hardware};

fn machine(gpus: u32) -> Hardware {
    let mut devices: Vec<DetectedDevice> = (0..gpus)
        .map(|i| DetectedDevice { device: Device::Cuda(i), memory: Bytes(24 << 30), description: "test GPU".into() })
        .collect();
    devices.push(DetectedDevice { device: Device::Cpu, memory: Bytes(64 << 30), description: "RAM".into() });
    Hardware { devices, notes: if gpus == 0 { vec!["no CUDA driver".into()] } else { Vec::new() } }
}

fn workflow_text(dir: &std::path::Path) -> String {
    std::fs::write(dir.join("m.safetensors"), b"x").unwrap();
    "[[model]]\nname = \"flux\"\nfile = \"m.safetensors\"\ncompute = \"cuda:0\"\nallocation = \"cuda:0,8gb;cpu,*\"\n"
        .into()
}

#[test]
fn devices_are_detected_when_none_are_declared() {
    let dir = tempfile::tempdir().unwrap();
    let text = workflow_text(dir.path());
    let calls = std::cell::Cell::new(0);
    let detect = || {
        calls.set(calls.get() + 1);
        machine(2)
    };
    let workflow = toml_to_workflow(&text, dir.path(), &detect).unwrap();
    assert_eq!(calls.get(), 1, "detection runs once");
    let devices: Vec<(Device, Origin)> = workflow.devices.iter().map(|d| (d.device, d.origin)).collect();
    assert_eq!(
        devices,
        vec![(Device::Cuda(0), Origin::Detected), (Device::Cuda(1), Origin::Detected), (Device::Cpu, Origin::Detected)]
    );
    assert_eq!(workflow.workload, Workload::Resolution { width: 1024, height: 1024, frames: 1, batch: 1 });
}

#[test]
fn a_device_this_machine_lacks_is_an_error_that_says_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let text = workflow_text(dir.path());
    let errors = toml_to_workflow(&text, dir.path(), &|| machine(0)).unwrap_err();
    // One device missing is one error: at `compute`, the allocation's `cuda:0` as another use.
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = &errors[0];
    let SpecErrorKind::NotDetected { device, detected, notes, also } = &error.kind else { panic!("{error:?}") };
    assert_eq!(device, "cuda:0");
    assert_eq!(detected, &vec!["cpu".to_owned()]);
    assert_eq!(notes, &vec!["no CUDA driver".to_owned()]);
    for span in std::iter::once(&error.span).chain(also) {
        assert_eq!(&text[span.range()].trim_matches('"'), &"cuda:0");
    }
    assert_eq!(also.len(), 1);
}

#[test]
fn declared_devices_are_not_detected_except_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[[device]]\nname = \"cuda:0\"\nmemory = \"16gb\"\n{}", workflow_text(dir.path()));
    let workflow = toml_to_workflow(&text, dir.path(), &|| machine(4)).unwrap();
    let devices: Vec<(Device, u64, Origin)> =
        workflow.devices.iter().map(|d| (d.device, d.memory.get(), d.origin)).collect();
    assert_eq!(devices, vec![(Device::Cuda(0), 16 << 30, Origin::Declared), (Device::Cpu, 64 << 30, Origin::Detected)]);
}

#[test]
fn gpu_classes_set_default_throughput() {
    use mgc_compiler::compile::cost::{CostModel, class_flops};
    assert_eq!(class_flops("NVIDIA GeForce RTX 4090"), class_flops("rtx4090"));
    assert!(class_flops("NVIDIA H100 80GB HBM3").unwrap() > class_flops("rtx3060").unwrap());
    assert_eq!(class_flops("a toaster"), None);
    let dir = tempfile::tempdir().unwrap();
    let model = workflow_text(dir.path());
    let text = format!("[[device]]\nname = \"cuda:0\"\nmemory = \"24gb\"\ngpu = \"rtx4090\"\n{model}");
    let workflow = toml_to_workflow(&text, dir.path(), &|| machine(0)).unwrap();
    assert_eq!(CostModel::new(&workflow).flops(Device::Cuda(0)), class_flops("rtx4090").unwrap());
    // A detected GPU is matched by its driver name.
    let detected = || {
        let mut hw = machine(1);
        hw.devices[0].description = "NVIDIA H100 80GB HBM3".into();
        hw
    };
    let workflow = toml_to_workflow(&model, dir.path(), &detected).unwrap();
    assert_eq!(CostModel::new(&workflow).flops(Device::Cuda(0)), class_flops("h100").unwrap());
    let bad = format!("[[device]]\nname = \"cuda:0\"\nmemory = \"24gb\"\ngpu = \"rtx9999\"\n{model}");
    let errors = toml_to_workflow(&bad, dir.path(), &|| machine(0)).unwrap_err();
    assert!(matches!(errors[0].kind, SpecErrorKind::UnknownGpu { .. }));
}

#[test]
fn the_layer_graph_runs_text_encoders_then_diffusion_then_vae() {
    use mgc_compiler::compile::graph::workflow_to_graph;
    use mgc_compiler::inventory::synth::{InventoryFixture, write_header_only};
    let dir = tempfile::tempdir().unwrap();
    for name in ["clip_l", "flux_ae", "tiny_flux"] {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/models/{name}.json"));
        let fixture: InventoryFixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        write_header_only(&fixture, "", &dir.path().join(format!("{name}.safetensors"))).unwrap();
    }
    // Written out of order on purpose: the VAE first, the text encoder last.
    let text = "[[device]]\nname = \"cpu\"\nmemory = \"64gb\"\n\
        [[model]]\nname = \"vae\"\nfile = \"flux_ae.safetensors\"\ncompute = \"cpu\"\n\
        [[model]]\nname = \"flux\"\nfile = \"tiny_flux.safetensors\"\ncompute = \"cpu\"\n\
        [[model]]\nname = \"clip\"\nfile = \"clip_l.safetensors\"\ncompute = \"cpu\"\n";
    let workflow = toml_to_workflow(text, dir.path(), &Hardware::default).unwrap();
    let graph = workflow_to_graph(&workflow).unwrap();
    let order = graph.execution_order();
    let total: usize = graph.models.iter().map(|m| m.layers.len()).sum();
    assert_eq!(order.len(), total, "every layer once");
    let names: Vec<&str> = order.iter().map(|&(m, _)| graph.models[m].spec.name.as_str()).collect();
    let mut runs = names.clone();
    runs.dedup();
    assert_eq!(runs, vec!["clip", "flux", "vae"]);
    for pair in order.windows(2) {
        if pair[0].0 == pair[1].0 {
            assert_eq!(pair[0].1 + 1, pair[1].1, "a model's layers in order");
        }
    }
}
