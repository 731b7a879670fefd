"""The benchmark's models, without ComfyUI: written from the inventories with random weights."""

import json
import os

import pytest

from bench.comfyui import models


def _inventory(name):
    with open(os.path.join(models.INVENTORIES, name), encoding="utf-8") as f:
        return json.load(f)["tensors"]


def test_the_q8_gguf_holds_every_tensor_matrices_as_q8_0_blocks(tmp_path):
    gguf = pytest.importorskip("gguf")
    import mgc
    import numpy as np

    path = models.make_model(models.MODELS["tiny-flux-q8"], str(tmp_path))
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    inventory = _inventory("tiny_flux.json")
    assert set(tensors) == {key for key, _, _ in inventory}
    expected = 0
    for key, shape, _ in inventory:
        t = tensors[key]
        n = int(np.prod(shape))
        if len(shape) == 2 and shape[1] % 32 == 0:
            assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0, key
            blocks = np.asarray(t.data).reshape(-1, 34)
            # Each block's F16 scale keeps the values within ±0.05.
            scales = blocks[:, :2].copy().view(np.float16).astype(np.float32)
            assert np.all(np.abs(scales * 127) <= 0.0501)
            expected += n // 32 * 34
        else:
            assert t.tensor_type == gguf.GGMLQuantizationType.F32, key
            assert np.all(np.abs(np.asarray(t.data)) <= 0.05)
            expected += 4 * n
    # mgc reads it as the same Flux, its bytes as written.
    (model,) = mgc.inspect(path)["models"]
    assert model["family"] == "flux" and model["bytes"] == expected


def test_a_model_is_written_once_and_the_same_each_time(tmp_path):
    spec = models.MODELS["tiny-wan"]
    first = models.make_model(spec, str(tmp_path / "a"))
    again = models.make_model(spec, str(tmp_path / "b"))
    with open(first, "rb") as f, open(again, "rb") as g:
        assert f.read() == g.read()
    stamp = os.stat(first).st_mtime_ns
    assert models.make_model(spec, str(tmp_path / "a")) == first and os.stat(first).st_mtime_ns == stamp
