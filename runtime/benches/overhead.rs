//! The runtime's own cost: `mgc run` of an all-resident plan (copy thread, schedule, timing and
//! checksums included) against a plain loop doing the same arithmetic over the same weights.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "benchmark set-up")]

use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use mgc_compiler::compile::toml_to_plan;
use mgc_compiler::inventory::synth::{Fill, InventoryFixture, write_model};
use mgc_core::Hardware;
use mgc_runtime::exec::{Options, Session};

fn overhead(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let inventory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tiny_flux.json");
    let fixture: InventoryFixture = serde_json::from_str(&std::fs::read_to_string(inventory).unwrap()).unwrap();
    write_model(&fixture, "", &dir.path().join("tiny.safetensors"), Fill::Random { seed: 1 }).unwrap();
    let workflow = "[[device]]\nname = \"cpu\"\nmemory = \"4gb\"\n[[model]]\nname = \"tiny\"\nfile = \"tiny.safetensors\"\ncompute = \"cpu\"\nallocation = \"cpu,*\"\n[workload]\ntokens = 256\n";
    let plan = toml_to_plan(workflow, dir.path(), &Hardware::default).unwrap();
    let text = plan.to_json().replace(&dir.path().join("tiny.safetensors").display().to_string(), "tiny.safetensors");
    let path = dir.path().join("resident.plan.json");
    std::fs::write(&path, text).unwrap();
    let session = Session::open(&path, false).unwrap();
    let steps = 32;
    let mut group = c.benchmark_group("runtime overhead (tiny Flux, all resident, 32 steps)");
    group.sample_size(20);
    group.bench_function("mgc run", |b| {
        b.iter(|| {
            session
                .run(&Options { steps, progress: false, copies: mgc_runtime::exec::Copies::Streams }, Instant::now())
                .unwrap()
        });
    });
    group.bench_function("plain loop", |b| b.iter(|| session.plain_loop(steps).unwrap()));
    group.finish();

    // The two one after the other drift apart on a noisy machine: the ratio of interleaved pairs.
    let options = Options { steps, progress: false, copies: mgc_runtime::exec::Copies::Streams };
    let mut ratios: Vec<f64> = (0..41)
        .map(|i| {
            // Alternate which goes first, so that neither gains from the other's warm caches.
            let plain_first = if i % 2 == 0 { Some(session.plain_loop(steps).unwrap()) } else { None };
            let start = Instant::now();
            session.run(&options, Instant::now()).unwrap();
            let run = start.elapsed().as_secs_f64();
            let plain = plain_first.unwrap_or_else(|| session.plain_loop(steps).unwrap());
            run / plain
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    println!("mgc run / plain loop, median of 41 interleaved pairs: {:.3}", ratios[ratios.len() / 2]);
}

criterion_group!(benches, overhead);
criterion_main!(benches);
