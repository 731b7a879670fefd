"""The Python package `mgc`: each function gives what the `mgc` command prints with `--format
json` for the same input, problems raise `MgcError` with the diagnostics, and the `mgc` command
the package installs works without cargo.

The comparisons run the CLI binary (`target/debug/mgc`, or `MGC_CLI`) only to compare; they are
skipped, saying so, when it is not built."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import mgc

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = os.environ.get("MGC_CLI", str(ROOT / "target" / "debug" / "mgc"))
EXAMPLES = ROOT / "examples"

needs_cli = pytest.mark.skipif(not os.path.isfile(CLI), reason=f"no CLI binary at {CLI} to compare with (cargo build -p mgc)")


def cli_json(*args, cwd=None):
    out = subprocess.run([CLI, *args, "--format", "json"], capture_output=True, text=True, cwd=cwd)
    return out.returncode, json.loads(out.stdout)


def tiny_model(folder: pathlib.Path) -> pathlib.Path:
    """A small safetensors file with the header only: four blocks and what sits outside them."""
    header, offset = {}, 0
    keys = ["img_in.weight"] + [f"blocks.{i}.{n}.weight" for i in range(4) for n in ("attn", "mlp")] + ["final_layer.weight"]
    for key in keys:
        header[key] = {"dtype": "F32", "shape": [64, 64], "data_offsets": [offset, offset + 64 * 64 * 4]}
        offset += 64 * 64 * 4
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    path = folder / "tiny.safetensors"
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        f.truncate(8 + len(raw) + offset)
    return path


WORKFLOW = """[[device]]
name = "cpu"
memory = "1gb"

[[model]]
name = "tiny"
file = "tiny.safetensors"
compute = "cpu"
allocation = "cpu,40%;disk,*"

[workload]
tokens = 8
"""


@pytest.fixture
def workflow(tmp_path):
    tiny_model(tmp_path)
    path = tmp_path / "tiny.toml"
    path.write_text(WORKFLOW)
    return path


@needs_cli
@pytest.mark.parametrize("allocation", ["cuda:0,4gb;cpu,*", "cuda:0,25%;cpu,75%", "0.8", "cuda:0,0.8;cpu,0.5"])
def test_check_allocation_is_the_clis_json(allocation):
    code, expected = cli_json("check", "--allocation", allocation)
    assert code == 0
    assert mgc.check_allocation(allocation) == expected


@needs_cli
def test_a_wrong_allocation_raises_the_clis_errors():
    bad = "cuda:0,4tbs;cpu,*;cpu,2gb"
    code, expected = cli_json("check", "--allocation", bad)
    assert code == 1
    with pytest.raises(mgc.MgcError) as caught:
        mgc.check_allocation(bad)
    error = caught.value
    assert error.diagnostics == expected["errors"]
    assert error.status == 1
    assert error.diagnostics[0]["span"] == [8, 11]
    assert "unknown unit `tbs`" in str(error)
    assert "in allocation" in str(error) and "\x1b[" not in str(error)
    human = subprocess.run([CLI, "check", "--allocation", bad], capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    assert str(error) == human.stderr.rstrip("\n")


@needs_cli
def test_compile_a_path_is_the_clis_plan(workflow):
    out = subprocess.run([CLI, "compile", workflow.name, "-o", "-"], capture_output=True, text=True, cwd=workflow.parent)
    assert out.returncode == 0, out.stderr
    expected = json.loads(out.stdout)
    assert mgc.compile(workflow) == expected
    assert mgc.compile(str(workflow)) == expected
    assert expected["inputs"][0]["path"] == "tiny.safetensors"


@needs_cli
def test_compile_text_reads_paths_from_the_current_folder(workflow, monkeypatch):
    monkeypatch.chdir(workflow.parent)
    out = subprocess.run([CLI, "compile", workflow.name, "-o", "-"], capture_output=True, text=True)
    assert mgc.compile(WORKFLOW) == json.loads(out.stdout)


@needs_cli
@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.toml")))
def test_compile_every_example_like_the_cli(example):
    code, expected = cli_json("compile", str(EXAMPLES / example), "-o", "-")
    if code == 0:
        out = subprocess.run([CLI, "compile", example, "-o", "-"], capture_output=True, text=True, cwd=EXAMPLES)
        assert mgc.compile(EXAMPLES / example) == json.loads(out.stdout)
    else:
        with pytest.raises(mgc.MgcError) as caught:
            mgc.compile(EXAMPLES / example)
        assert caught.value.diagnostics == expected["errors"]


def test_a_wrong_workflow_raises_errors_with_spans_into_it(workflow):
    workflow.write_text(WORKFLOW.replace('"cpu,40%;disk,*"', '"cpu,40%;dsk,*"'))
    with pytest.raises(mgc.MgcError) as caught:
        mgc.compile(workflow)
    (error,) = [e for e in caught.value.diagnostics if "unknown device `dsk`" in e["message"]]
    start, end = error["span"]
    assert WORKFLOW.replace("disk", "dsk").encode()[start:end] == b"dsk"
    assert error["file"] == str(workflow) and error["line"] == 9
    assert str(workflow) in str(caught.value) and "dsk" in str(caught.value)


def test_hardware_replaces_detection(workflow):
    text = WORKFLOW.replace('[[device]]\nname = "cpu"\nmemory = "1gb"\n', "")
    workflow.write_text(text)
    plan = mgc.compile(workflow, hardware=[{"device": "cpu", "memory": 2 << 30}])
    assert [(d["name"], d["memory_bytes"]) for d in plan["devices"]] == [("cpu", 2 << 30), ("disk", 0)]
    with pytest.raises(ValueError, match="list of devices"):
        mgc.compile(workflow, hardware=[{"device": "cpu"}])


@needs_cli
def test_inspect_is_the_clis_json(tmp_path):
    model = tiny_model(tmp_path)
    code, expected = cli_json("inspect", str(model))
    assert code == 0
    assert mgc.inspect(model) == expected
    with pytest.raises(mgc.MgcError) as caught:
        mgc.inspect(tmp_path / "missing.safetensors")
    assert "missing.safetensors" in str(caught.value) and caught.value.diagnostics[0]["message"]


@needs_cli
def test_schema_is_the_clis():
    out = subprocess.run([CLI, "schema"], capture_output=True, text=True, check=True)
    assert mgc.schema() == json.loads(out.stdout)


def mgc_command():
    """The `mgc` console command installed beside this Python, else `python -m mgc`."""
    beside = pathlib.Path(sys.executable).parent / "mgc"
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "mgc"]


@pytest.mark.parametrize("command", [mgc_command(), [sys.executable, "-m", "mgc"]], ids=["console script", "python -m mgc"])
def test_the_mgc_command_runs_in_process(command, tmp_path):
    ok = subprocess.run([*command, "check", "--allocation", "cuda:0,4gb;cpu,*"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "bytes mode" in ok.stdout and "cuda:0" in ok.stdout
    bad = subprocess.run([*command, "check", "--allocation", "cuda:0,4tbs", "--format", "json"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["errors"][0]["span"] == [8, 11]
    usage = subprocess.run([*command, "frobnicate"], capture_output=True, text=True)
    assert usage.returncode == 2 and "frobnicate" in usage.stderr
    version = subprocess.run([*command, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("mgc ")


def test_run_says_it_needs_the_runtime_when_it_is_missing(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "mgc", "run", "plan.json"], capture_output=True, text=True, env=env)
    if shutil.which("mgc-run", path=env["PATH"]) is None:
        assert out.returncode == 2
        assert "mgc-run" in out.stderr


def png_size(data: bytes) -> tuple:
    """The width and height a PNG's header gives."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def svg_size(svg: str) -> tuple:
    width = float(svg.split('width="', 1)[1].split('"', 1)[0])
    height = float(svg.split('height="', 1)[1].split('"', 1)[0])
    return width, height


@needs_cli
def test_explain_is_what_the_cli_prints_for_a_plan_and_its_workflow(workflow):
    plan_file = workflow.with_name("tiny.plan.json")
    out = subprocess.run([CLI, "compile", workflow.name], capture_output=True, text=True, cwd=workflow.parent)
    assert out.returncode == 0, out.stderr
    table = subprocess.run([CLI, "explain", plan_file.name], capture_output=True, text=True, cwd=workflow.parent)
    svg = subprocess.run([CLI, "explain", plan_file.name, "--svg", "-"], capture_output=True, text=True, cwd=workflow.parent)
    assert table.returncode == 0 and svg.returncode == 0, table.stderr + svg.stderr
    expected = {"table": table.stdout, "svg": svg.stdout}
    assert expected["table"].startswith("predicted step") and "model `tiny`" in expected["table"]
    plan = json.loads(plan_file.read_text())
    assert mgc.explain(plan_file) == expected
    assert mgc.explain(str(plan_file)) == expected
    assert mgc.explain(plan) == expected
    assert mgc.explain(plan_file.read_text()) == expected
    assert mgc.explain(workflow) == expected


@needs_cli
def test_explain_a_stage_is_what_the_cli_prints(workflow):
    out = subprocess.run([CLI, "explain", workflow.name, "--stage", "budgets"], capture_output=True, text=True, cwd=workflow.parent)
    assert out.returncode == 0, out.stderr
    assert mgc.explain(workflow, "budgets") == {"table": out.stdout, "svg": None}


def test_explain_compiles_a_workflow_for_the_hardware_given(workflow):
    workflow.write_text(WORKFLOW.replace('[[device]]\nname = "cpu"\nmemory = "1gb"\n', ""))
    explained = mgc.explain(workflow, hardware=[{"device": "cpu", "memory": 3 << 30}])
    assert explained["table"] == mgc.explain(mgc.compile(workflow, hardware=[{"device": "cpu", "memory": 3 << 30}]))["table"]
    assert "\ncpu         3.00 GiB" in explained["table"], explained["table"]


def test_explain_refuses_what_it_cannot_explain(workflow):
    with pytest.raises(mgc.MgcError) as caught:
        mgc.explain(workflow, stage="placment")
    assert "no stage `placment`" in str(caught.value) and caught.value.status == 1
    assert "placement" in caught.value.diagnostics[0]["help"]
    plan = mgc.compile(workflow)
    with pytest.raises(mgc.MgcError, match="is a plan; `--stage`"):
        mgc.explain(plan, "graph")
    with pytest.raises(mgc.MgcError) as caught:
        mgc.explain({**plan, "format_version": 99})
    assert caught.value.status == 1 and "plan" in str(caught.value)
    with pytest.raises(mgc.MgcError) as caught:
        mgc.explain(WORKFLOW.replace('"cpu,40%;disk,*"', '"cpu,40%;dsk,*"'))
    assert any("unknown device `dsk`" in e["message"] for e in caught.value.diagnostics)
    with pytest.raises(mgc.MgcError, match="missing.plan.json"):
        mgc.explain(workflow.with_name("missing.plan.json"))


def test_render_png_draws_the_plans_picture_at_its_size_and_scaled(workflow):
    svg = mgc.explain(mgc.compile(workflow))["svg"]
    width, height = svg_size(svg)
    png = mgc.render_png(svg)
    assert png_size(png) == (int(width), int(height))
    assert png_size(mgc.render_png(svg, scale=2.0)) == (int(2 * width), int(2 * height))
    assert mgc.render_png(svg) == png, "the same picture draws the same bytes"


def test_render_png_draws_text_in_the_embedded_font():
    blank = '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="30"><rect width="100%" height="100%" fill="white"/>{}</svg>'
    text = '<text x="5" y="20" font-family="sans-serif" font-size="14">mgc 42 GiB</text>'
    drawn, empty = mgc.render_png(blank.format(text)), mgc.render_png(blank.format(""))
    assert png_size(drawn) == png_size(empty) == (120, 30)
    assert drawn != empty, "the text is drawn: a font is found without any installed on the machine"
    assert mgc.render_png(blank.format(text.replace("sans-serif", "No Such Font"))) == drawn


@pytest.mark.parametrize(
    ("svg", "scale", "message"),
    [
        ("<svg", 1.0, "not SVG"),
        ("this is not a picture", 1.0, "not SVG"),
        ('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', 0.0, "not a number above 0"),
        ('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', float("nan"), "not a number above 0"),
        ('<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="10"/>', 1.0, "no side may be over"),
    ],
)
def test_render_png_refuses_what_it_cannot_draw(svg, scale, message):
    with pytest.raises(mgc.MgcError, match=message) as caught:
        mgc.render_png(svg, scale)
    assert caught.value.status == 1 and caught.value.diagnostics[0]["help"]
