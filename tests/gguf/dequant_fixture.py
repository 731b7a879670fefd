#!/usr/bin/env python3
"""Writes a small GGUF model of Q8_0, Q4_K and Q6_K weights (and F32 biases) with llama.cpp's
reference writer, and the reference reader's dequantized values of each quantized tensor.

Usage: dequant_fixture.py OUT_DIR → OUT_DIR/quant.gguf, OUT_DIR/<tensor>.f32 (little-endian f32)
"""
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T


def k_blocks(rng, qtype, rows, cols):
    """Random K-quant blocks whose f16 scales are finite and small (the rest is any bytes)."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    scales = rng.uniform(0.001, 0.05, size=(rows, cols // block, 2)).astype(np.float16).view(np.uint8)
    if qtype == T.Q4_K:
        raw[..., 0:4] = scales.reshape(rows, cols // block, 4)  # d and dmin
    else:  # Q6_K: d is the last two bytes
        raw[..., 208:210] = scales[..., 0:2]
    return raw.reshape(rows, cols // block * size)


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    writer = gguf.GGUFWriter(str(out / "quant.gguf"), "test")
    tensors = {}
    for i in range(4):
        w = rng.normal(0, 0.05, size=(64, 256)).astype(np.float32)
        tensors[f"blocks.{i}.q8.weight"] = (gguf.quants.quantize(w, T.Q8_0), T.Q8_0)
        tensors[f"blocks.{i}.q4k.weight"] = (k_blocks(rng, T.Q4_K, 32, 256), T.Q4_K)
        tensors[f"blocks.{i}.q6k.weight"] = (k_blocks(rng, T.Q6_K, 32, 256), T.Q6_K)
        tensors[f"blocks.{i}.q8.bias"] = (rng.normal(0, 0.02, size=(64,)).astype(np.float32), T.F32)
    for name, (data, qtype) in tensors.items():
        if qtype == T.F32:
            writer.add_tensor(name, data)
        else:
            writer.add_tensor(name, data, raw_shape=list(data.shape), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    for t in gguf.GGUFReader(str(out / "quant.gguf")).tensors:
        if t.tensor_type in (T.Q8_0, T.Q4_K, T.Q6_K):
            values = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype("<f4")
            values.tofile(out / f"{t.name}.f32")


if __name__ == "__main__":
    main()
