"""bench/kernels.py on the CPU: every kernel is timed, its figure is the work over the median
time, and the runtime's input pattern is the one the Rust runtime writes."""

import json

import torch

from bench import kernels


def test_every_kernel_is_timed_and_written(tmp_path, capsys):
    out = tmp_path / "kernels.json"
    assert kernels.main(["--device", "cpu", "--rounds", "1", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    names = [k["kernel"] for k in figures["kernels"]]
    for data in ("ones", "zeros", "run", "normal"):
        assert sum(name.endswith(f", {data}") for name in names) == 2, names
    assert any("fused" in name for name in names) and any("two products" in name for name in names)
    for k in figures["kernels"]:
        assert k["seconds"] > 0 and k["rate"] > 0, k
    assert "median of 1 rounds" in capsys.readouterr().out


def test_the_pattern_is_the_runtimes():
    # The Rust runtime's inputs (runtime/src/exec/compute.rs, `fill`): 251 values from -0.5 up,
    # in steps of 1/251, repeated.
    x = kernels.pattern((3, 200), "cpu", torch.float32).flatten()
    assert x[0] == -0.5 and abs(float(x[250]) - (250 / 251 - 0.5)) < 1e-6 and x[251] == -0.5
    assert x.shape == (600,)
