"""The whole benchmark on the tiny models inside a real ComfyUI, on the CPU: every system that
runs on a CPU, through the same code as on a GPU (no timing is asserted, only the plumbing).
Runs when MGC_COMFYUI names a ComfyUI checkout (skipped otherwise, as in CI); with
MGC_COMFYUI_MULTIGPU DisTorch2 runs too, with MGC_COMFYUI_GGUF the Q8_0 GGUF model."""

import json
import os

import pytest

from bench.comfyui import records, run

COMFYUI = os.environ.get("MGC_COMFYUI")
MULTIGPU = os.environ.get("MGC_COMFYUI_MULTIGPU")
GGUF = os.environ.get("MGC_COMFYUI_GGUF")

pytestmark = pytest.mark.skipif(
    not COMFYUI or not os.path.isdir(os.path.join(COMFYUI, "comfy")),
    reason="set MGC_COMFYUI to a ComfyUI checkout to run the benchmark on the tiny models",
)


def test_every_system_samples_the_tiny_models_and_the_results_are_written(tmp_path):
    models = "tiny-wan,tiny-flux-q8" if GGUF else "tiny-wan"
    argv = ["--comfyui", COMFYUI, "--models", models, "--device", "cpu", "--steps", "2", "--fractions", "0,0.5,1",
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--trace"]
    argv += ["--multigpu", MULTIGPU] if MULTIGPU else []
    argv += ["--gguf", GGUF] if GGUF else []
    assert run.main(argv) == 0
    doc = records.check_document(json.loads((tmp_path / "out" / "results.json").read_text()))
    ran = {(r["model"], r["system"], r["offloaded_bytes"]) for r in doc["records"]}
    systems = ["resident", "comfyui", "mgc"] + (["distorch2"] if MULTIGPU else [])
    for model in models.split(","):
        total = next(r["model_bytes"] for r in doc["records"] if r["model"] == model)
        half = round(total / 2)
        assert (model, "resident", 0) in ran
        for system in systems[1:]:
            assert {(model, system, half), (model, system, total)} <= ran, (model, system, doc["skipped"])
        assert (model, "mgc", 0) in ran
        mine = [r for r in doc["records"] if r["model"] == model]
        # Every system sampled the same latent from the same weights and noise.
        sums = {r["system"]: r["output_abs_sum"] for r in mine}
        assert all(s == pytest.approx(sums["resident"], rel=1e-5) for s in sums.values()), sums
        for r in mine:
            assert r["steps"] == 2 and r["step_seconds"] > 0
            # No bandwidth probed on a CPU: the bound is the resident step.
            assert r["lower_bound_seconds"] == next(x["step_seconds"] for x in mine if x["system"] == "resident")
            assert r["peak_vram_bytes"] is None  # a CPU has no VRAM
        for r in (r for r in mine if r["system"] == "mgc"):
            assert r["predicted_step_seconds"] > 0 and r["predicted_peak_bytes"] > 0
            # Streamed from the `disk` tier: bytes copied each step, none when nothing is offloaded.
            assert (r["copied_bytes"] > 0) == (r["offloaded_bytes"] > 0), r
    if not MULTIGPU:
        assert any(s["system"] == "distorch2" and "--multigpu" in s["reason"] for s in doc["skipped"])
    table = (tmp_path / "out" / "results.md").read_text()
    assert table.count("| tiny-wan |") == len([r for r in doc["records"] if r["model"] == "tiny-wan"])
    assert (tmp_path / "out" / "curve-tiny-wan.svg").read_text().startswith("<svg")
    # `--trace`: a few more all-resident steps under torch's profiler, summarised beside the records.
    (traced,) = (tmp_path / "work" / "jobs").glob("tiny-wan-resident*.trace.json")
    summary = json.loads(traced.read_text())
    assert summary["steps_timed"] == 2 and summary["wall_seconds"] > 0 and summary["cpu_ops"] > 0
    assert summary["device_busy_seconds"] == 0.0, "a CPU run has no device kernels"

