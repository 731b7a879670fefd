//! GGUF quantized weights with real libtorch: dequantized by torch ops to the same values as
//! llama.cpp's reference reader (PyPI `gguf`), on the CPU and on CUDA where there is a GPU. (GGUF
//! models run under plans by `mgc-run`: `cli/tests/run.rs`.)
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

#[path = "common/gguf_fixture.rs"]
mod gguf_fixture;

use gguf_fixture::gguf_fixture;

use mgc_compiler::inventory::file_to_inventory;
use tch::{Kind, Tensor};

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
    let dir = gguf_fixture();
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
