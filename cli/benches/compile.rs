//! `mgc compile` of header-only workflows — Flux dev on two GPUs, Wan 2.1 14B with CPU offload,
//! and a synthetic model of 100,000 tensors — in process and as a whole process.
#![expect(clippy::unwrap_used, reason = "benchmark set-up")]

use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};

use criterion::{Criterion, criterion_group, criterion_main};
use mgc_compiler::compile::toml_to_plan;
use mgc_compiler::inventory::synth::{InventoryFixture, write_header_only};
use mgc_core::Hardware;

fn synth(inventory: &str, out: &Path) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/models/{inventory}.json"));
    let fixture: InventoryFixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    write_header_only(&fixture, "", out).unwrap();
}

fn compile(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::create_dir(dir.path().join("models")).unwrap();
    for (file, inventory) in [
        ("flux1-dev.safetensors", "flux1-dev"),
        ("t5xxl_fp16.safetensors", "t5xxl_fp16"),
        ("clip_l.safetensors", "clip_l"),
        ("ae.safetensors", "flux_ae"),
        ("wan2.1_t2v_14B_bf16.safetensors", "wan2.1_t2v_14B_bf16"),
        ("umt5_xxl_fp16.safetensors", "umt5_xxl_fp16"),
        ("wan_2.1_vae.safetensors", "wan_2.1_vae"),
    ] {
        synth(inventory, &dir.path().join("models").join(file));
    }
    for example in ["flux-dev-two-gpus.toml", "wan21-14b-cpu-offload.toml"] {
        std::fs::copy(root.join("examples").join(example), dir.path().join(example)).unwrap();
    }
    // 1,000 blocks of 100 tensors each.
    let mut tensors = Vec::new();
    for block in 0..1000 {
        for t in 0..100 {
            tensors.push((format!("blocks.{block}.part{t}.weight"), vec![64, 64], "BF16".to_owned()));
        }
    }
    let big = InventoryFixture { model: "synthetic".into(), prefix: None, metadata: None, tensors, data_bytes: None };
    write_header_only(&big, "", &dir.path().join("models/big.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("big.toml"),
        "[[device]]\nname = \"cuda:0\"\nmemory = \"24gb\"\n[[device]]\nname = \"cpu\"\nmemory = \"64gb\"\n[[model]]\nname = \"big\"\nfile = \"models/big.safetensors\"\ncompute = \"cuda:0\"\nallocation = \"cuda:0,400mb;cpu,*\"\n",
    )
    .unwrap();

    let mut group = c.benchmark_group("compile");
    group.sample_size(20);
    for (name, workflow) in [
        ("flux1-dev", "flux-dev-two-gpus.toml"),
        ("wan2.1-14b", "wan21-14b-cpu-offload.toml"),
        ("100k tensors", "big.toml"),
    ] {
        let source = std::fs::read_to_string(dir.path().join(workflow)).unwrap();
        group.bench_function(format!("{name}: in process"), |b| {
            b.iter(|| black_box(toml_to_plan(&source, dir.path(), &Hardware::default).unwrap()));
        });
        group.bench_function(format!("{name}: whole process (mgc compile)"), |b| {
            b.iter(|| {
                let status = Command::new(env!("CARGO_BIN_EXE_mgc"))
                    .args(["compile", workflow, "-o", "out.plan.json"])
                    .current_dir(dir.path())
                    .stdout(Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success());
            });
        });
    }
    group.finish();
}

criterion_group!(benches, compile);
criterion_main!(benches);
