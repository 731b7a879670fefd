"""The benchmark's models: real shapes from the repository's tensor inventories, random weights
made on the spot (nothing is downloaded), and the workload each is sampled at (its usual
resolution, as latent and text-conditioning shapes).

- safetensors models are written by ``mgc synth-model --random`` (values uniform in ±0.05);
- a Q8_0 GGUF is written here with llama.cpp's reference writer (the ``gguf`` package) the way
  ComfyUI-GGUF reads them: every matrix whose rows are whole Q8_0 blocks as random Q8_0 blocks
  (int8 values, one F16 scale per 32, so that the weights also lie in ±0.05), the rest F32.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVENTORIES = os.path.join(ROOT, "tests", "fixtures", "models")


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: its inventory, its file format and its workload."""

    name: str
    inventory: str  # a file in tests/fixtures/models
    family: str  # "flux" or "wan": which conditioning it takes
    gguf: bool  # written as a Q8_0 GGUF rather than BF16 safetensors
    latent: Tuple[int, ...]  # the empty latent sampled (batch, channels, [frames,] height / 8, width / 8)
    text_tokens: int  # tokens of text conditioning
    workload: str  # the resolution, in words

    @property
    def file_name(self) -> str:
        return f"{self.name}.gguf" if self.gguf else f"{self.name}.safetensors"


MODELS: Dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("flux-dev", "flux1-dev.json", "flux", False, (1, 16, 128, 128), 256, "1024×1024"),
        ModelSpec("flux-dev-q8", "flux1-dev.json", "flux", True, (1, 16, 128, 128), 256, "1024×1024"),
        ModelSpec("wan2.1-1.3b", "wan2.1_t2v_1.3B_bf16.json", "wan", False, (1, 16, 21, 60, 104), 512,
                  "832×480, 81 frames"),
        ModelSpec("wan2.1-14b", "wan2.1_t2v_14B_bf16.json", "wan", False, (1, 16, 21, 90, 160), 512,
                  "1280×720, 81 frames"),
        # The tiny models of the tests: the same classes and key patterns, a few MB.
        ModelSpec("tiny-flux", "tiny_flux.json", "flux", False, (1, 16, 16, 16), 8, "128×128"),
        ModelSpec("tiny-flux-q8", "tiny_flux.json", "flux", True, (1, 16, 16, 16), 8, "128×128"),
        ModelSpec("tiny-wan", "tiny_wan21.json", "wan", False, (1, 16, 2, 16, 16), 8, "128×128, 5 frames"),
    )
}
# The sets `--models` takes by name.
MODEL_SETS = {
    "tiny": ("tiny-flux", "tiny-flux-q8", "tiny-wan"),
    "gpu": ("flux-dev-q8", "wan2.1-1.3b", "flux-dev"),
}


def resolve_models(text: str) -> Tuple[ModelSpec, ...]:
    """The models named in ``text`` (comma-separated names or set names), in order, once each."""
    names = []
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        chosen = MODEL_SETS.get(word, (word,))
        for name in chosen:
            if name not in MODELS:
                known = ", ".join(list(MODEL_SETS) + list(MODELS))
                raise ValueError(f"unknown model `{name}` in `--models`: one of {known}")
            if name not in names:
                names.append(name)
    if not names:
        raise ValueError("`--models` names no model")
    return tuple(MODELS[n] for n in names)


def make_model(spec: ModelSpec, folder: str) -> str:
    """Writes ``spec``'s model file into ``folder`` unless a file of that name is there already
    (the same seed gives the same file); returns its path."""
    path = os.path.join(folder, spec.file_name)
    if os.path.isfile(path):
        return path
    os.makedirs(folder, exist_ok=True)
    inventory = os.path.join(INVENTORIES, spec.inventory)
    partial = path + ".partial"
    if spec.gguf:
        write_q8_gguf(inventory, partial, spec.family)
    else:
        done = subprocess.run([sys.executable, "-m", "mgc", "synth-model", inventory, "-o", partial, "--random"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"mgc synth-model {spec.inventory} failed: {done.stderr.strip()}")
    os.replace(partial, path)
    return path


def _tensors(inventory: str):
    with open(inventory, "r", encoding="utf-8") as f:
        fixture = json.load(f)
    prefix = fixture.get("prefix") or ""
    return [(prefix + key, [int(n) for n in shape]) for key, shape, _dtype in fixture["tensors"]]


def write_q8_gguf(inventory: str, path: str, arch: str, seed: int = 0) -> None:
    """A Q8_0 GGUF of the inventory's tensors with random values, written tensor by tensor so
    that a 12 GB model never sits in memory whole."""
    import gguf
    import numpy as np

    q8 = gguf.GGMLQuantizationType.Q8_0
    block, block_bytes = gguf.GGML_QUANT_SIZES[q8]
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(path, arch)
    tensors = sorted(_tensors(inventory))
    quantized = {name for name, shape in tensors if len(shape) == 2 and shape[-1] % block == 0}
    for name, shape in tensors:
        if name in quantized:
            byte_shape = [shape[0], shape[1] // block * block_bytes]
            writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), byte_shape[0] * byte_shape[1], raw_dtype=q8)
        else:
            if len(shape) > 4:  # ComfyUI-GGUF's convention for shapes GGUF cannot hold
                writer.add_array(f"comfy.gguf.orig_shape.{name}", shape)
                shape = [shape[0], int(np.prod(shape[1:]))]
            writer.add_tensor_info(name, shape, np.dtype(np.float32), 4 * int(np.prod(shape)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    # A Q8_0 block: an F16 scale, then 32 int8 values; scale × value lies in ±0.05.
    scale = np.frombuffer(np.float16(0.05 / 127).tobytes(), dtype=np.uint8)
    for name, shape in tensors:
        if name in quantized:
            rows, blocks = shape[0], shape[1] // block
            data = np.empty((rows, blocks, block_bytes), dtype=np.uint8)
            data[:, :, :2] = scale
            data[:, :, 2:] = rng.integers(-127, 128, size=(rows, blocks, block), dtype=np.int8).view(np.uint8)
            writer.write_tensor_data(data.reshape(rows, blocks * block_bytes))
        else:
            values = rng.uniform(-0.05, 0.05, size=int(np.prod(shape))).astype(np.float32)
            writer.write_tensor_data(values)
    writer.close()
