//! `allocation = "auto"` (and a model with no allocation): the compiler picks the budgets within
//! every device's memory, and the plan it picks is at least as fast as the allocations a person
//! might write that fit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

use mgc_compiler::compile::toml_to_plan;
use mgc_compiler::inventory::synth::{InventoryFixture, write_header_only};
use mgc_core::{Device, Hardware};

/// A folder with header-only Flux dev (about 22 GiB) and a CLIP-L text encoder.
fn models() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, fixture) in [("flux", "flux1-dev"), ("clip", "clip_l")] {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/models/{fixture}.json"));
        let inventory: InventoryFixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        write_header_only(&inventory, "", &dir.path().join(format!("{name}.safetensors"))).unwrap();
    }
    dir
}

/// A workflow of Flux on a 16 GB GPU with 64 GB of RAM, its allocation line as given (none when
/// empty), and the text encoder's.
fn workflow(flux: &str, clip: &str) -> String {
    let line = |allocation: &str| {
        if allocation.is_empty() { String::new() } else { format!("allocation = \"{allocation}\"\n") }
    };
    format!(
        "[[device]]\nname = \"cuda:0\"\nmemory = \"16gb\"\n[[device]]\nname = \"cpu\"\nmemory = \"64gb\"\n\
         [[model]]\nname = \"clip\"\nfile = \"clip.safetensors\"\ncompute = \"cuda:0\"\n{}\
         [[model]]\nname = \"flux\"\nfile = \"flux.safetensors\"\ncompute = \"cuda:0\"\n{}\
         [workload]\ntokens = 4096\n",
        line(clip),
        line(flux)
    )
}

fn budget(plan: &mgc_plan::Plan, model: &str, device: Device) -> u64 {
    let m = plan.models.iter().find(|m| m.name == model).unwrap();
    m.budgets.iter().filter(|b| b.device == device).map(|b| b.used_bytes).sum()
}

#[test]
fn auto_fills_the_compute_device_and_beats_the_allocations_that_fit() {
    let dir = models();
    let auto = toml_to_plan(&workflow("auto", ""), dir.path(), &Hardware::default).unwrap();
    let flux = auto.models.iter().find(|m| m.name == "flux").unwrap();
    let reason = flux.budgets_reason.as_deref().unwrap();
    assert!(reason.starts_with("auto:") && reason.contains("does not fit on cuda:0"), "{reason}");
    assert!(budget(&auto, "flux", Device::Cuda(0)) > 0 && budget(&auto, "flux", Device::Cpu) > 0);
    for d in &auto.devices {
        assert!(d.peak_bytes <= d.memory_bytes - d.reserve_bytes || d.name == Device::Disk, "{d:?}");
    }
    // The text encoder, with no allocation, fits whole on the GPU, and the compiler says so.
    let clip = auto.models.iter().find(|m| m.name == "clip").unwrap();
    assert!(clip.budgets_reason.as_deref().unwrap().contains("all"), "{clip:?}");
    assert_eq!(budget(&auto, "clip", Device::Cuda(0)), clip.bytes);
    // Every allocation a person might write that compiles is no faster.
    let mut compared = 0;
    for gb in [2, 4, 6, 8, 10, 12, 14] {
        let manual = format!("cuda:0,{gb}gb;cpu,*");
        let Ok(plan) = toml_to_plan(&workflow(&manual, ""), dir.path(), &Hardware::default) else { continue };
        compared += 1;
        assert!(
            auto.predicted.step_seconds <= plan.predicted.step_seconds * 1.001,
            "auto {} s, {manual} {} s",
            auto.predicted.step_seconds,
            plan.predicted.step_seconds
        );
    }
    assert!(compared >= 3, "some manual allocations fit: {compared}");
    // No allocation at all is `auto` too: the same plan.
    let none = toml_to_plan(&workflow("", ""), dir.path(), &Hardware::default).unwrap();
    assert_eq!(none.predicted.step_seconds, auto.predicted.step_seconds);
}

#[test]
fn auto_leaves_room_for_the_models_with_allocations() {
    let dir = models();
    // A text encoder that keeps its weights on the GPU for the whole workflow leaves less there
    // for Flux than one kept in RAM; either way every device stays within its memory.
    let on_gpu = toml_to_plan(&workflow("auto", "cuda:0,*"), dir.path(), &Hardware::default).unwrap();
    let in_ram = toml_to_plan(&workflow("auto", "cpu,*"), dir.path(), &Hardware::default).unwrap();
    assert!(budget(&on_gpu, "clip", Device::Cuda(0)) > 0 && budget(&in_ram, "clip", Device::Cuda(0)) == 0);
    assert!(budget(&on_gpu, "flux", Device::Cuda(0)) < budget(&in_ram, "flux", Device::Cuda(0)));
    for plan in [&on_gpu, &in_ram] {
        for d in plan.devices.iter().filter(|d| d.name != Device::Disk) {
            assert!(d.peak_bytes <= d.memory_bytes - d.reserve_bytes, "{d:?}");
        }
        let flux = plan.models.iter().find(|m| m.name == "flux").unwrap();
        assert!(flux.budgets_reason.is_some() && plan.models[0].budgets_reason.is_none());
    }
}
