#!/usr/bin/env python3
"""Writes real GGUF files with llama.cpp's reference writer (the PyPI `gguf` package) and what
that package's own reader says of them, for mgc's GGUF header tests.

Usage: make_gguf.py OUT_DIR   → OUT_DIR/*.gguf and OUT_DIR/expected.json
"""
import json
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T


def add_raw(writer, name, shape, qtype, rng):
    """A tensor of `shape` (torch order) stored as `qtype`; its bytes are random (only headers matter)."""
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    byte_shape = list(shape[:-1]) + [shape[-1] // block * type_size]
    data = rng.integers(0, 256, size=byte_shape, dtype=np.uint8)
    writer.add_tensor(name, data, raw_shape=byte_shape, raw_dtype=qtype)


def write(path, arch, tensors, rng, extra=None):
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(path.stem)
    writer.add_array("tokenizer.ggml.tokens", ["<pad>", "hello", "world"] * 1000)
    writer.add_uint32("test.count", 7)
    if extra:
        extra(writer)
    for name, shape, qtype in tensors:
        add_raw(writer, name, shape, qtype, rng)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    # A Flux-like diffusion model in the layout ComfyUI-GGUF loads, mixing quant types the way
    # city96's converter does: big matrices quantized, small tensors and norms in F32/F16/BF16.
    h = 512
    flux = [("img_in.weight", (h, 64), T.F16), ("img_in.bias", (h,), T.F32),
            ("time_in.in_layer.weight", (h, 256), T.BF16), ("time_in.in_layer.bias", (h,), T.F32),
            ("final_layer.linear.weight", (64, h), T.F16)]
    kinds = [T.Q8_0, T.Q4_K, T.Q6_K, T.Q5_K, T.Q4_0, T.IQ4_XS]
    for i in range(3):
        q = kinds[i % len(kinds)]
        flux += [(f"double_blocks.{i}.img_attn.qkv.weight", (3 * h, h), q),
                 (f"double_blocks.{i}.img_attn.qkv.bias", (3 * h,), T.F32),
                 (f"double_blocks.{i}.img_mlp.0.weight", (4 * h, h), kinds[(i + 1) % len(kinds)]),
                 (f"double_blocks.{i}.txt_attn.norm.key_norm.scale", (128,), T.F32)]
    for i in range(12):
        flux += [(f"single_blocks.{i}.linear1.weight", (7 * h, h), kinds[i % len(kinds)]),
                 (f"single_blocks.{i}.linear2.weight", (h, 5 * h), T.Q8_0),
                 (f"single_blocks.{i}.norm.query_norm.scale", (128,), T.F32)]
    write(out / "flux-mixed.gguf", "flux", flux, rng)

    # One tensor of every type the package can write, to check every block layout.
    every = []
    for qtype, (block, _size) in sorted(gguf.GGML_QUANT_SIZES.items()):
        every.append((f"t.{qtype.name}", (3, 2 * max(block, 256)), qtype))
    write(out / "every-type.gguf", "test", every, rng)

    # A custom alignment.
    write(out / "aligned-64.gguf", "test",
          [("a.weight", (8, 256), T.Q4_K), ("b.weight", (5, 32), T.Q8_0), ("c.bias", (5,), T.F32)], rng,
          extra=lambda w: w.add_uint32("general.alignment", 64))

    expected = {"types": {q.name: [int(q), b, s] for q, (b, s) in gguf.GGML_QUANT_SIZES.items()}, "files": {}}
    for path in sorted(out.glob("*.gguf")):
        reader = gguf.GGUFReader(str(path))
        expected["files"][path.name] = {
            "file_bytes": path.stat().st_size,
            "tensors": [{"name": t.name, "type": t.tensor_type.name, "bytes": int(t.n_bytes),
                         "shape": [int(d) for d in reversed(t.shape.tolist())], "offset": int(t.data_offset)}
                        for t in reader.tensors],
            "metadata_keys": [f.name for f in reader.fields.values() if not f.name.startswith("GGUF.")],
        }
    (out / "expected.json").write_text(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
