//! GGUF quantized weights with real libtorch: dequantized by torch ops to the same values as
//! llama.cpp's reference reader (PyPI `gguf`), and a GGUF model that runs under plans — on the CPU,
//! and on CUDA where there is a GPU.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::Command;

use mgc_compiler::compile::toml_to_plan;
use mgc_compiler::inventory::file_to_inventory;
use mgc_core::Hardware;
use tch::{Kind, Tensor};

fn python() -> PathBuf {
    // `MGC_PYTHON` names another Python with `gguf` (this test run where it was not built).
    if let Ok(python) = std::env::var("MGC_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(venv.exists(), "{} is missing: run `scripts/setup-python.sh` first", venv.display());
    venv
}

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let script = Path::new(&root).join("../tests/gguf/dequant_fixture.py");
    let out = Command::new(python()).arg(script).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

#[test]
fn dequantized_values_equal_the_reference_readers() {
    dequantized_on(tch::Device::Cpu);
}

#[test]
fn on_cuda_dequantized_values_equal_the_reference_readers() {
    if !tch::Cuda::is_available() {
        eprintln!("skipped: no CUDA device here; this test runs where there is one");
        return;
    }
    dequantized_on(tch::Device::Cuda(0));
}

fn dequantized_on(device: tch::Device) {
    let dir = fixture();
    let file = dir.path().join("quant.gguf");
    let inventory = file_to_inventory(&file).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let mut checked = std::collections::BTreeSet::new();
    for t in inventory.tensors.iter().filter(|t| mgc_runtime::exec::gguf::is_quantized(t.dtype.name())) {
        let raw = &bytes[t.offset as usize..(t.offset + t.bytes) as usize];
        let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
        let raw = Tensor::from_slice(raw).to_device(device);
        let ours = mgc_runtime::exec::gguf::dequantize_f32(&raw, t.dtype.name(), &shape).unwrap();
        assert_eq!(ours.device(), device, "dequantized where the blocks are");
        let ours = ours.to_device(tch::Device::Cpu);
        let reference: Vec<f32> = std::fs::read(dir.path().join(format!("{}.f32", t.name)))
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let reference = Tensor::from_slice(&reference).reshape(&shape);
        assert_eq!(ours.kind(), Kind::Float);
        assert!(ours.allclose(&reference, 1e-6, 1e-7, false), "{} ({}) differs from the reference", t.name, t.dtype);
        checked.insert(t.dtype.name());
    }
    assert_eq!(checked.into_iter().collect::<Vec<_>>(), vec!["Q4_K", "Q6_K", "Q8_0"]);
}

#[test]
fn a_gguf_model_runs_quantized_under_any_plan() {
    runs_under_plans("cpu", &[("resident", "cpu,*"), ("streamed", "cpu,30%;disk,*")]);
}

#[test]
fn on_cuda_a_gguf_model_runs_quantized_under_any_plan() {
    if !tch::Cuda::is_available() {
        eprintln!("skipped: no CUDA device here; this test runs where there is one");
        return;
    }
    runs_under_plans(
        "cuda:0",
        &[("resident", "cuda:0,*"), ("streamed", "cuda:0,30%;cpu,*"), ("file", "cuda:0,30%;disk,*")],
    );
}

fn runs_under_plans(compute: &str, plans: &[(&str, &str)]) {
    let dir = fixture();
    let mut checksums = Vec::new();
    let gpu = if compute == "cpu" { "" } else { "[[device]]\nname = \"cuda:0\"\nmemory = \"2gb\"\n" };
    for &(name, allocation) in plans {
        let workflow = format!(
            "[[device]]\nname = \"cpu\"\nmemory = \"2gb\"\n{gpu}[[model]]\nname = \"q\"\nfile = \"quant.gguf\"\ncompute = \"{compute}\"\nallocation = \"{allocation}\"\n[workload]\ntokens = 16\n[schedule]\nprefetch = 1\nbatch_below = \"1kb\"\n"
        );
        let plan = toml_to_plan(&workflow, dir.path(), &Hardware::default).unwrap();
        let text = plan.to_json().replace(&dir.path().join("quant.gguf").display().to_string(), "quant.gguf");
        std::fs::write(dir.path().join(format!("{name}.json")), text).unwrap();
        let binary = std::env::var("MGC_RUN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mgc-run").to_owned());
        let out = Command::new(binary)
            .args(["run", &format!("{name}.json"), "--steps", "2", "--format", "json"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if name != "resident" {
            // Quantized on the wire: the bytes copied are the file's, not dequantized ones.
            let plan =
                mgc_plan::Plan::from_json(&std::fs::read_to_string(dir.path().join(format!("{name}.json"))).unwrap())
                    .unwrap();
            let copied: u64 = report["links"].as_array().unwrap().iter().map(|l| l["bytes"].as_u64().unwrap()).sum();
            let steps = report["models"][0]["steps"].as_array().unwrap().len() as u64;
            assert_eq!(copied, steps * plan.transfers.iter().map(|t| t.bytes).sum::<u64>());
            assert!(copied > 0);
        }
        checksums.push(report["models"][0]["checksum"].as_str().unwrap().to_owned());
    }
    assert!(checksums.windows(2).all(|w| w[0] == w[1]), "outputs differ between plans: {checksums:?}");
}
