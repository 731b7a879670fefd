"""Writes a GGUF copy of a small safetensors diffusion model the way ComfyUI-GGUF reads them:
matrices as Q8_0, everything else F32, tensors of more than four dimensions flattened with their
shape in `comfy.gguf.orig_shape.NAME`. Uses the `gguf` package (llama.cpp's reference writer).

Usage: tiny_gguf.py MODEL.safetensors OUT.gguf ARCH
"""

import json
import struct
import sys

import gguf
import torch

KINDS = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    tensors = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        data = bytearray(raw[8 + n + start:8 + n + end])
        tensors[key] = torch.frombuffer(data, dtype=KINDS[entry["dtype"]]).reshape(entry["shape"])
    return tensors


def write_gguf(source, target, arch):
    writer = gguf.GGUFWriter(str(target), arch)
    for key, tensor in sorted(read_safetensors(source).items()):
        values = tensor.float()
        if values.ndim == 2 and values.shape[-1] % 32 == 0:
            quantized = gguf.quants.quantize(values.numpy(), gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(key, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        elif values.ndim > 4:
            writer.add_array(f"comfy.gguf.orig_shape.{key}", list(values.shape))
            writer.add_tensor(key, values.reshape(values.shape[0], -1).numpy())
        else:
            writer.add_tensor(key, values.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    write_gguf(sys.argv[1], sys.argv[2], sys.argv[3])
