//! `mgc inspect` on the header-only flux1-dev file (23.8 GB logical, 780 tensors): the header
//! read and layer grouping in process, and the whole `mgc inspect` process as a user runs it.
#![expect(clippy::unwrap_used, reason = "benchmark set-up")]

use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};

use criterion::{Criterion, criterion_group, criterion_main};
use mgc_compiler::inventory::synth::{InventoryFixture, write_header_only};
use mgc_compiler::inventory::{file_to_inventory, inventory_to_models};

fn inspect(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/flux1-dev.json");
    let fixture: InventoryFixture = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let file = dir.path().join("flux1-dev.safetensors");
    write_header_only(&fixture, "", &file).unwrap();

    let mut group = c.benchmark_group("inspect flux1-dev");
    group.bench_function("in process: header + models + layers", |b| {
        b.iter(|| {
            let inventory = file_to_inventory(black_box(&file)).unwrap();
            black_box(inventory_to_models(&inventory))
        });
    });
    group.bench_function("whole process: mgc inspect", |b| {
        b.iter(|| {
            let status = Command::new(env!("CARGO_BIN_EXE_mgc"))
                .arg("inspect")
                .arg(&file)
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
        });
    });
    group.bench_function("whole process: mgc --version (start-up alone)", |b| {
        b.iter(|| {
            let status =
                Command::new(env!("CARGO_BIN_EXE_mgc")).arg("--version").stdout(Stdio::null()).status().unwrap();
            assert!(status.success());
        });
    });
    group.finish();
}

criterion_group!(benches, inspect);
criterion_main!(benches);
