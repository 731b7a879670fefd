"""The `mgc` logger with real torch on the CPU: a plan applied to the small model of
`test_core` logs its allocation at load and each forward against the plan; logging off costs no
measurement, and a failure in it never reaches the forward."""

import logging
import re

import pytest
import torch

from comfyui import core, telemetry, ui
from comfyui.tests.test_core import compile_plan, fresh_copy, model_file  # noqa: F401  (a fixture)


def records(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "mgc"]


def apply(model_file, allocation, name="p"):  # noqa: F811
    model, tmp = model_file
    plan = compile_plan(tmp, name, allocation, batch_below="1kb")
    entry = core.model_entry(plan, "tiny")
    planned = fresh_copy(model)
    return plan, entry, planned, core.apply_plan(planned, plan, entry)


def test_load_is_summarized_and_each_step_timed_against_the_plan(model_file, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="mgc")
    plan, entry, planned, applied = apply(model_file, "cpu,40%;disk,*")
    (summary,) = records(caplog)
    on = {}
    for layer in entry["layers"]:
        on[layer["home"]] = on.get(layer["home"], 0) + layer["bytes"]
    transfers = [t for t in plan["transfers"] if t["model"] == 0]
    streamed = sum(t["bytes"] for t in transfers)
    assert summary.startswith(f"mgc: model `tiny` ({entry['family']} {entry['role']}, {telemetry.human_bytes(entry['bytes'])}) computes on cpu: ")
    assert f"{telemetry.human_bytes(on['cpu'])} on cpu, {telemetry.human_bytes(on['disk'])} on disk;" in summary
    assert f"streams {telemetry.human_bytes(streamed)} a step in {len(transfers)} copies (prefetch 1)" in summary
    assert f"predicted step {telemetry.seconds(entry['predicted']['step_seconds'])}" in summary
    cpu = plan["devices"][0]
    assert f"predicted peaks cpu {telemetry.human_bytes(cpu['peak_bytes'])} of 1.00 GiB" in summary

    x = torch.randn(2, 8, 16)
    with torch.no_grad():
        planned(x)
        planned(x)
    steps = records(caplog)[1:]
    assert len(steps) == 2
    for n, line in enumerate(steps, 1):
        assert line.startswith(f"mgc: `tiny` step {n}: "), line
        assert f" measured, {telemetry.seconds(entry['predicted']['step_seconds'])} predicted (" in line
        assert f"; copied {telemetry.human_bytes(streamed)} in " in line
        link = next(l for l in plan["links"] if l["from"] == "disk" and l["to"] == "cpu")
        assert line.endswith(f" GB/s (plan: disk -> cpu {link['bandwidth_bytes_per_second'] / 1e9:.1f} GB/s)"), line
        assert float(re.search(r", ([0-9.]+) GB/s \(plan", line).group(1)) > 0
    assert applied.stats.copy_seconds > 0 and applied.stats.bytes == 2 * streamed


def test_a_resident_model_steps_without_copies(model_file, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="mgc")
    _, _, planned, _ = apply(model_file, "cpu,*")
    with torch.no_grad():
        planned(torch.randn(2, 8, 16))
    (step,) = records(caplog)[1:]
    assert step.startswith("mgc: `tiny` step 1: ") and step.endswith("; no copies"), step


def test_below_info_nothing_is_measured_and_removed_hooks_log_nothing(model_file, caplog):  # noqa: F811
    caplog.set_level(logging.WARNING, logger="mgc")
    _, _, planned, applied = apply(model_file, "cpu,40%;disk,*")
    with torch.no_grad():
        planned(torch.randn(2, 8, 16))
    assert records(caplog) == []
    caplog.set_level(logging.INFO, logger="mgc")
    applied.remove()
    with torch.no_grad():
        planned(torch.randn(2, 8, 16))
    assert records(caplog) == [], "remove() took the step hooks off with the others"


def test_a_failing_log_never_reaches_the_forward(model_file, caplog, monkeypatch):  # noqa: F811
    caplog.set_level(logging.INFO, logger="mgc")
    model, _ = model_file
    _, _, planned, _ = apply(model_file, "cpu,40%;disk,*")

    def broken(*_args):
        raise RuntimeError("broken telemetry")

    monkeypatch.setattr(telemetry._Steps, "line", broken)
    x = torch.randn(2, 8, 16)
    with torch.no_grad():
        assert torch.equal(planned(x), model(x))
    assert [line for line in records(caplog) if "step" in line and "measured" in line] == []


def test_a_tables_sections_are_kept_for_the_models_named(model_file):  # noqa: F811
    import mgc

    plan, *_ = apply(model_file, "cpu,40%;disk,*")
    table = mgc.explain(plan)["table"]
    assert ui.only_models(table, ["tiny"]) == table
    kept = ui.only_models(table, [])
    assert "model `tiny`" not in kept and kept.startswith("predicted step") and "device" in kept
    with pytest.raises(core.PlanError, match="no model `wan`; it has tiny"):
        ui.only_models(table, ["wan"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the copies' CUDA-event timing is checked on a GPU only")
def test_on_cuda_each_step_times_the_side_streams_copies(model_file, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="mgc")
    model, tmp = model_file
    plan = compile_plan(tmp, "gpu", "cuda:0,40%;cpu,*", compute="cuda:0")
    entry = core.model_entry(plan, "tiny")
    planned = fresh_copy(model)
    applied = core.apply_plan(planned, plan, entry)
    streamed = sum(t["bytes"] for t in plan["transfers"] if t["model"] == 0)
    x = torch.randn(2, 8, 16, device="cuda:0")
    with torch.no_grad():
        for _ in range(3):
            planned(x)
    steps = records(caplog)[1:]
    assert [s.split(":", 2)[1] for s in steps] == [" `tiny` step 1", " `tiny` step 2", " `tiny` step 3"], steps
    for line in steps:
        assert f"; copied {telemetry.human_bytes(streamed)} in " in line and "(plan: cpu -> cuda:0 " in line, line
        assert float(re.search(r", ([0-9.]+) GB/s \(plan", line).group(1)) > 0
    assert applied._streamer.timed == [], "every copy's time was counted at its step's end"
    assert applied.stats.copy_seconds > 0
