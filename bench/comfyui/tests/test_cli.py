"""The benchmark's command line, without ComfyUI: wrong arguments are named before anything
runs or is written."""

import json

import pytest

from bench.comfyui import models, run


def _stop(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        run.main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def comfyui(tmp_path):
    (tmp_path / "ComfyUI" / "comfy").mkdir(parents=True)
    return str(tmp_path / "ComfyUI")


def test_no_comfyui_checkout_says_what_to_set(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MGC_COMFYUI", raising=False)
    err = _stop(["--out", str(tmp_path / "out")], capsys)
    assert "name a ComfyUI checkout with --comfyui or MGC_COMFYUI" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--multigpu", "."], "is not that checkout (it has no `distorch_2.py`)"),
    (["--steps", "1"], "--steps 1: at least 2 are needed"),
    (["--systems", "mgc,accelerate"], "unknown system `accelerate` in --systems"),
    (["--fractions", "0,1.5"], "--fractions `0,1.5`: each must be from 0 to 1"),
    (["--fractions", "half"], "write numbers from 0 to 1"),
    (["--models", "flux-dev,sdxl"], "unknown model `sdxl` in `--models`"),
])
def test_wrong_arguments_are_named(comfyui, tmp_path, capsys, argv, message):
    err = _stop(["--comfyui", comfyui, "--out", str(tmp_path / "out"), *argv], capsys)
    assert message in err
    assert not (tmp_path / "out").exists()


def test_model_sets_expand_in_order_once_each():
    names = [m.name for m in models.resolve_models("tiny-wan,tiny,gpu")]
    assert names == ["tiny-wan", "tiny-flux", "tiny-flux-q8", "flux-dev-q8", "wan2.1-1.3b", "flux-dev"]


def test_allocations_are_distorch_shaped():
    gib = 1 << 30
    assert run.allocation("cuda:0", "cpu", 0, 24 * gib) == "cuda:0,*"
    assert run.allocation("cuda:0", "cpu", 6 * gib, 24 * gib) == "#cuda:0;6.000000;cpu"
    assert run.allocation("cuda:0", "cpu", 24 * gib, 24 * gib) == "cpu,*"


def test_the_workflow_names_the_probed_link():
    text = run.workflow_toml("m.safetensors", "cuda:0", "#cuda:0;6.0;cpu", 4096, {"pinned_gb_per_s": 55.04})
    assert 'allocation = "#cuda:0;6.0;cpu"' in text and "tokens = 4096" in text
    assert 'between = ["cpu", "cuda:0"]\nbandwidth = "55.04GB/s"' in text
    assert "[[link]]" not in run.workflow_toml("m.safetensors", "cpu", "cpu,*", 64, {"pinned_gb_per_s": None})


def test_the_workflow_compiles_to_a_plan_with_its_prediction(tmp_path):
    spec = models.MODELS["tiny-wan"]
    path = models.make_model(spec, str(tmp_path))
    total = run.model_bytes(path)
    runs = [{"offloaded_bytes": total // 2, "allocation": run.allocation("cpu", "disk", total // 2, total)}]
    (done,) = run.mgc_runs(spec, path, runs, "cpu", {"pinned_gb_per_s": None}, str(tmp_path / "plans"))
    assert done["predicted_step_seconds"] > 0 and done["predicted_peak_bytes"] > 0
    with open(done["plan"], encoding="utf-8") as f:
        layers = json.load(f)["models"][0]["layers"]
    # Half the model offloaded: some layers streamed from the `disk` tier, some resident.
    assert any(layer["streamed"] for layer in layers) and not all(layer["streamed"] for layer in layers)


def test_the_plan_predicts_the_workload_the_worker_samples(tmp_path):
    """One pass a step at the sampler's CFG of 1, not the family's default CFG (6 for Wan: two
    passes), with the model's text tokens: a prediction of twice the work the sampler does had
    made Wan's prediction 1.48× its measured step on a GPU."""
    import mgc

    spec = models.MODELS["tiny-wan"]
    path = models.make_model(spec, str(tmp_path))
    text = run.workflow_toml(path, "cpu", "cpu,*", run.tokens_of(spec), {}, None, spec.text_tokens, 4, run.CFG)
    assert "cfg = 1.0" in text and f"text_tokens = {spec.text_tokens}" in text and "steps = 4" in text
    sampled = mgc.compile(text)
    wan_default = mgc.compile(text.replace("cfg = 1.0\n", ""))
    ratio = wan_default["predicted"]["step_seconds"] / sampled["predicted"]["step_seconds"]
    assert 1.5 < ratio <= 2.0, ratio  # twice the arithmetic; the fixed cost of a tensor once


def test_the_report_redraws_a_results_document(tmp_path, capsys):
    from bench.comfyui import records, report

    runs = [records.make_record("m", "resident", 0, 10, [1.0, 0.2, 0.2]),
            records.make_record("m", "mgc", 5, 10, [1.0, 0.3, 0.3], predicted_step_seconds=0.25)]
    doc = records.document(records.attach_lower_bounds(runs, 50.0), {"device": "cpu"}, {}, {})
    (tmp_path / "results.json").write_text(records.to_json(doc))
    assert report.main([str(tmp_path / "results.json"), "--out", str(tmp_path / "again")]) == 0
    assert "| m | mgc |" in (tmp_path / "again" / "results.md").read_text()
    assert (tmp_path / "again" / "curve-m.svg").read_text().startswith("<svg")
    (tmp_path / "bad.json").write_text('{"records": []}')
    assert report.main([str(tmp_path / "bad.json")]) == 1
    assert "format version" in capsys.readouterr().err
    assert report.main([str(tmp_path / "missing.json")]) == 2
