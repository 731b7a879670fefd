"""The node pack's core with real torch on the CPU: a small transformer-like model saved as
safetensors, its plan compiled by `mgc`, applied — the outputs equal the plain model's, weights
sit where the plan says between forwards, and wrong plans are refused."""

import json
import os
import struct
import sys

import pytest
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from comfyui import core, nodes  # noqa: E402  (the package as ComfyUI imports it)


try:
    import mgc
except ImportError:
    pytest.fail("no `mgc` package: `pip install ./python` (scripts/test.sh builds it into .venv-mgc)", pytrace=False)


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        attn = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1) @ v
        x = x + self.proj(attn)
        return x + self.mlp(x)


class Tiny(nn.Module):
    def __init__(self, d=32, depth=6):
        super().__init__()
        self.img_in = nn.Linear(16, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(depth))
        self.final_layer = nn.Linear(d, 16)

    def forward(self, x):
        x = self.img_in(x)
        for block in self.blocks:
            x = block(x)
        return self.final_layer(x)


def save_safetensors(module, path):
    tensors = module.state_dict()
    header, offset, blobs = {}, 0, []
    for key in sorted(tensors):
        data = tensors[key].contiguous().numpy().tobytes()
        header[key] = {"dtype": "F32", "shape": list(tensors[key].shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def compile_plan(tmp_path, name, allocation, batch_below="1kb", prefetch="1", compute="cpu"):
    workflow = tmp_path / f"{name}.toml"
    gpu = '[[device]]\nname = "cuda:0"\nmemory = "4gb"\n' if compute.startswith("cuda") else ""
    workflow.write_text(
        '[[device]]\nname = "cpu"\nmemory = "1gb"\n' + gpu +
        f'[[model]]\nname = "tiny"\nfile = "tiny.safetensors"\ncompute = "{compute}"\nallocation = "{allocation}"\n'
        f'[workload]\ntokens = 8\n[schedule]\nprefetch = {prefetch}\nbatch_below = "{batch_below}"\n'
    )
    (tmp_path / f"{name}.plan.json").write_text(json.dumps(mgc.compile(workflow), separators=(",", ":")))
    return core.load_plan(str(tmp_path / f"{name}.plan.json"))


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    model = Tiny().eval()
    save_safetensors(model, tmp_path / "tiny.safetensors")
    return model, tmp_path


def fresh_copy(model):
    clone = Tiny().eval()
    clone.load_state_dict(model.state_dict())
    return clone


@pytest.mark.parametrize("allocation,batch_below", [("cpu,*", "1kb"), ("cpu,40%;disk,*", "1kb"), ("cpu,20%;disk,*", "64mb")])
def test_outputs_equal_the_plain_model(model_file, allocation, batch_below):
    model, tmp = model_file
    plan = compile_plan(tmp, "p", allocation, batch_below)
    entry = core.model_entry(plan, "tiny")
    core.check_model_file(plan, entry, str(tmp / "tiny.safetensors"))
    planned = fresh_copy(model)
    applied = core.apply_plan(planned, plan, entry)
    x = torch.randn(2, 8, 16)
    with torch.no_grad():
        expected = model(x)
        for _ in range(2):
            assert torch.equal(planned(x), expected)
    transfers = [t for t in plan["transfers"] if t["model"] == 0]
    assert applied.stats.copies == 2 * len(transfers)
    if any(t["batched"] for t in transfers):
        assert len(transfers) < sum(1 for layer in entry["layers"] if layer["streamed"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the side-stream prefetch is checked on a GPU only")
@pytest.mark.parametrize("batch_below", ["1kb", "64mb"])
def test_on_cuda_streamed_layers_are_prefetched_on_a_side_stream(model_file, batch_below):
    model, tmp = model_file
    plan = compile_plan(tmp, "gpu", "cuda:0,30%;cpu,*", batch_below, prefetch="2", compute="cuda:0")
    entry = core.model_entry(plan, "tiny")
    planned = fresh_copy(model)
    applied = core.apply_plan(planned, plan, entry)
    reference = fresh_copy(model).to("cuda:0")
    x = torch.randn(4, 8, 16, device="cuda:0")
    with torch.no_grad():
        expected = reference(x)
        for _ in range(3):
            assert torch.equal(planned(x), expected)
    torch.cuda.synchronize()
    streamed = [layer for layer in entry["layers"] if layer["streamed"]]
    assert streamed and any(not layer["streamed"] for layer in entry["layers"])
    assert applied.stats.prefetched > 0
    homes = {t["name"]: str(core.torch_device(layer["home"])) for layer in entry["layers"] for t in layer["tensors"]}
    assert core.placement(planned, entry) == homes
    for layer in streamed:
        for owner, attribute, _ in core._params_of(planned, entry["prefix"], layer["tensors"], ""):
            assert getattr(owner, attribute).is_pinned()


def test_weights_sit_where_the_plan_says_between_forwards(model_file):
    model, tmp = model_file
    plan = compile_plan(tmp, "p", "cpu,40%;disk,*")
    entry = core.model_entry(plan)
    planned = fresh_copy(model)
    homes = {}
    for layer in entry["layers"]:
        for t in layer["tensors"]:
            homes[t["name"]] = str(core.torch_device(layer["home"]))
    applied = core.apply_plan(planned, plan, entry)  # kept, as a loader keeps it
    before = {name: p.data_ptr() for name, p in planned.named_parameters()}
    with torch.no_grad():
        planned(torch.randn(1, 8, 16))
    assert applied.stats.copies > 0, "the streamed layers were copied in"
    assert core.placement(planned, entry) == homes
    # After a forward, streamed weights are their home tensors again, not the copies.
    assert {name: p.data_ptr() for name, p in planned.named_parameters()} == before
    assert any(layer["streamed"] for layer in entry["layers"])


def test_a_planned_model_is_freed_as_soon_as_it_is_let_go(model_file):
    """Its hooks hold the plan weakly: no reference cycle keeps a dropped model's weights (its
    VRAM, on a GPU) until Python's cycle collector runs, which a GPU run showed happens late
    enough to hold the last model through the next one's sampling."""
    import gc
    import weakref

    model, tmp = model_file
    plan = compile_plan(tmp, "p", "cpu,40%;disk,*")
    entry = core.model_entry(plan)
    planned = fresh_copy(model)
    applied = core.apply_plan(planned, plan, entry, patches={"img_in.weight": lambda w: w * 2},
                              file=str(tmp / "tiny.safetensors"))
    assert applied._telemetry is not None  # the step logger's hooks are among those checked
    with torch.no_grad():
        planned(torch.randn(1, 8, 16))
    module, plan_ref = weakref.ref(planned), weakref.ref(applied)
    gc.disable()
    try:
        del planned, applied
        assert module() is None and plan_ref() is None, "a reference cycle keeps the model"
    finally:
        gc.enable()


def test_a_model_whose_plan_was_dropped_is_refused_not_run_off_its_device(model_file):
    import gc

    model, tmp = model_file
    plan = compile_plan(tmp, "p", "cpu,40%;disk,*")
    planned = fresh_copy(model)
    core.apply_plan(planned, plan, core.model_entry(plan))  # its plan kept nowhere
    gc.collect()
    with pytest.raises(core.PlanError, match="plan was dropped while the model still runs"):
        with torch.no_grad():
            planned(torch.randn(1, 8, 16))


def test_patches_apply_to_streamed_and_resident_weights_without_changing_them(model_file):
    model, tmp = model_file
    plan = compile_plan(tmp, "p", "cpu,40%;disk,*")
    entry = core.model_entry(plan)
    streamed = {t["name"] for layer in entry["layers"] if layer["streamed"] for t in layer["tensors"]}
    resident = {t["name"] for layer in entry["layers"] if not layer["streamed"] for t in layer["tensors"]}
    keys = ["final_layer.weight", "img_in.weight", "blocks.2.qkv.weight"]
    assert any(k in streamed for k in keys) and any(k in resident for k in keys)
    planned = fresh_copy(model)
    applied = core.apply_plan(planned, plan, entry, patches={k: (lambda w: (w.double() * 2).to(w.dtype)) for k in keys})
    doubled = fresh_copy(model)
    x = torch.randn(1, 8, 16)
    with torch.no_grad():
        for k in keys:
            doubled.get_parameter(k).mul_(2)
        for _ in range(2):
            assert torch.equal(planned(x), doubled(x))
        # The stored weights are untouched, and without patches the plain output comes back.
        for k in keys:
            assert torch.equal(planned.get_parameter(k), model.get_parameter(k))
        applied.set_patches(None)
        assert torch.equal(planned(x), model(x))


def test_wrong_plans_are_refused(model_file, tmp_path):
    model, tmp = model_file
    plan = compile_plan(tmp, "p", "cpu,*")
    entry = core.model_entry(plan)
    other = Tiny(d=16)
    save_safetensors(other, tmp / "other.safetensors")
    with pytest.raises(core.PlanError, match="not the file the plan was compiled for"):
        core.check_model_file(plan, entry, str(tmp / "other.safetensors"))
    text = (tmp / "p.plan.json").read_text()
    with pytest.raises(core.PlanError, match="version 0 is not supported"):
        core.load_plan(text.replace('"format_version":1', '"format_version":0', 1))
    with pytest.raises(core.PlanError, match="damaged"):
        core.load_plan(text.replace('"generator"', '"generatr"', 1))
    with pytest.raises(core.PlanError, match="not a plan"):
        core.load_plan(text[: len(text) // 2])
    with pytest.raises(core.PlanError, match="no model `vae`"):
        core.model_entry(plan, "vae")
    with pytest.raises(core.PlanError, match="is this the model the plan is for"):
        core.apply_plan(Tiny(d=32, depth=2), plan, entry)


def test_the_schema_is_the_one_mgc_writes():
    with open(core._SCHEMA_PATH, encoding="utf-8") as f:
        assert mgc.schema() == json.load(f), "run `mgc schema > comfyui/plan.schema.json`"


def test_compile_allocation_node_uses_the_mgc_package_and_says_what_is_wrong(model_file, monkeypatch):
    _, tmp = model_file
    plan = nodes.compile_allocation(str(tmp / "tiny.safetensors"), "cpu", "cpu,50%;disk,*")
    assert plan["models"][0]["allocation"] == "cpu,50%;disk,*"
    with pytest.raises(core.PlanError, match="unknown unit `tbs`"):
        nodes.compile_allocation(str(tmp / "tiny.safetensors"), "cpu", "cpu,4tbs;disk,*")
    monkeypatch.setitem(sys.modules, "mgc", None)  # as if the package were not installed
    with pytest.raises(core.PlanError, match="pip install -r requirements.txt"):
        nodes.compile_allocation(str(tmp / "tiny.safetensors"), "cpu", "cpu,50%;disk,*")
    import comfyui

    assert set(comfyui.NODE_DISPLAY_NAME_MAPPINGS.values()) >= {"Load mgc plan", "UNETLoader (mgc)", "Compile allocation (mgc)"}


def test_rehome_undoes_someone_elses_move(model_file):
    model, tmp = model_file
    plan = compile_plan(tmp, "p", "cpu,40%;disk,*")
    planned = fresh_copy(model)
    applied = core.apply_plan(planned, plan, core.model_entry(plan))
    homes = {name: p.data_ptr() for name, p in planned.named_parameters()}
    for p in planned.parameters():  # what a loader moving the model would do
        p.data = p.data.clone()
    assert all(p.data_ptr() != homes[name] for name, p in planned.named_parameters())
    applied.rehome()
    assert {name: p.data_ptr() for name, p in planned.named_parameters()} == homes
    assert applied.stats.rehomed == 1


class _Patcher:
    """Stands in for ComfyUI's model patchers where no ComfyUI with dynamic VRAM can run (it needs
    comfy-aimdo and a GPU): the parts of their interface the node pack relies on, as current
    ComfyUI defines them — `is_dynamic()`, and `clone(disable_dynamic=True)` giving a classic one."""

    def __init__(self, dynamic, can_opt_out=True):
        self.dynamic, self.can_opt_out = dynamic, can_opt_out

    def is_dynamic(self):
        return self.dynamic

    def clone(self, disable_dynamic=False):
        if disable_dynamic and not self.can_opt_out:
            raise RuntimeError("Cannot create non-dynamic delegate")
        return _Patcher(self.dynamic and not disable_dynamic)


def test_dynamic_vram_is_opted_out_of_per_model_or_stops_with_what_to_do(monkeypatch):
    import types

    memory_management = types.ModuleType("comfy.memory_management")
    comfy = types.ModuleType("comfy")
    comfy.memory_management = memory_management
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.memory_management", memory_management)

    def loader(path, model_options={}, disable_dynamic=False):  # noqa: B006 (ComfyUI's signature)
        return _Patcher(dynamic=memory_management.aimdo_enabled and not disable_dynamic)

    memory_management.aimdo_enabled = False
    assert not nodes.dynamic_vram_enabled()
    assert not nodes._load(loader, "m.safetensors").is_dynamic()

    memory_management.aimdo_enabled = True
    assert nodes.dynamic_vram_enabled()
    # A loader that takes the option is asked for a classic patcher.
    assert not nodes._load(loader, "m.safetensors").is_dynamic()
    # One that does not: ComfyUI's own classic clone.
    assert not nodes._classic(_Patcher(dynamic=True), "`m`").is_dynamic()
    # Where neither works, a clear stop that says what to do.
    with pytest.raises(core.PlanError, match="--disable-dynamic-vram"):
        nodes._classic(_Patcher(dynamic=True, can_opt_out=False), "`m`")


def test_key_prefix_finds_keys_nested_as_comfyui_nests_text_encoders(model_file):
    model, tmp = model_file
    plan = compile_plan(tmp, "p", "cpu,40%;disk,*")
    entry = core.model_entry(plan)
    outer = nn.Module()
    outer.clip_l = nn.Module()
    outer.clip_l.transformer = fresh_copy(model)
    assert core.key_prefix(outer, entry) == "clip_l.transformer."
    assert core.key_prefix(fresh_copy(model), entry) == ""
    applied = core.apply_plan(outer, plan, entry, key_prefix="clip_l.transformer.")
    core.check_placement(outer, entry, "clip_l.transformer.")
    x = torch.randn(1, 8, 16)
    with torch.no_grad():
        assert torch.equal(outer.clip_l.transformer(x), model(x))
    assert applied.stats.copies > 0
    # Moved behind the plan's back: refused with what and where.
    outer.clip_l.transformer.final_layer.weight = nn.Parameter(torch.empty(16, 32, device="meta"))
    with pytest.raises(core.PlanError, match="not where the plan put them"):
        core.check_placement(outer, entry, "clip_l.transformer.")


def test_a_batched_transfer_is_one_staging_copy_of_the_layers_the_plan_groups(model_file):
    model, tmp = model_file
    plan = compile_plan(tmp, "p", "cpu,20%;disk,*", batch_below="64mb")
    entry = core.model_entry(plan)
    applied = core.apply_plan(fresh_copy(model), plan, entry)
    streamer = applied._streamer  # lives as long as its plan
    transfers = [t for t in plan["transfers"] if t["model"] == 0]
    assert streamer.transfers == transfers
    assert any(t["batched"] and t["last_layer"] > t["first_layer"] for t in transfers)
    for k, t in enumerate(transfers):
        streamer.copy(k)
        event, by_layer = streamer.ready[k]
        assert event is None
        assert sorted(by_layer) == list(range(t["first_layer"], t["last_layer"] + 1))
        for layer in streamer.members(k):
            assert layer.transfer == k
            for (_, _, home), copied in zip(layer.params, by_layer[layer.index]):
                assert torch.equal(copied, home) and copied.data_ptr() != home.data_ptr()
        storages = {c.untyped_storage().data_ptr() for copies in by_layer.values() for c in copies}
        if t["batched"]:
            assert len(storages) == 1, "a batched transfer is one staging buffer"
    assert applied.stats.batched_copies == sum(t["batched"] for t in transfers)


def test_staging_keeps_each_tensors_dtype_size_and_bytes():
    sources = [torch.arange(4, dtype=torch.int64).reshape(2, 2), torch.randn(3, 4),
               torch.randn(5, dtype=torch.bfloat16), torch.tensor([1, 2, 3], dtype=torch.uint8)]
    staging = core._stage(sources, pin=False)
    data = sum(s.numel() * s.element_size() for s in sources)
    assert data <= staging.numel() < data + core._ALIGN * len(sources), "only alignment is added"
    for source, view in zip(sources, core._unstage(staging, sources)):
        assert view.dtype == source.dtype and view.size() == source.size() and torch.equal(view, source)


def test_staging_aligns_a_wide_dtype_after_an_odd_number_of_bytes():
    # A GGUF Q8_0 weight of 3 blocks (34 bytes each, stored as uint8) before an F32 norm.
    sources = [torch.randint(0, 255, (3, 34), dtype=torch.uint8), torch.randn(7), torch.randn(2, dtype=torch.float64)]
    staging = core._stage(sources, pin=False)
    for source, view in zip(sources, core._unstage(staging, sources)):
        assert view.data_ptr() % source.element_size() == 0
        assert torch.equal(view, source)


def test_a_transfer_is_copied_for_its_first_layer_and_released_after_its_last(model_file):
    model, tmp = model_file
    plan = compile_plan(tmp, "p", "cpu,20%;disk,*", batch_below="64mb")
    applied = core.apply_plan(fresh_copy(model), plan, core.model_entry(plan))
    streamer = applied._streamer  # lives as long as its plan
    k = next(k for k, t in enumerate(streamer.transfers) if t["last_layer"] > t["first_layer"])
    first, *rest = streamer.members(k)
    stats = applied.stats
    streamer.before(first)
    assert k in streamer.ready and (stats.copies, stats.prefetched) == (1, 0)
    for (owner, attribute, home), copied in zip(first.params, streamer.ready[k][1][first.index]):
        assert getattr(owner, attribute).data_ptr() == copied.data_ptr() != home.data_ptr()
    streamer.after(first)
    assert all(getattr(owner, attribute).data_ptr() == home.data_ptr() for owner, attribute, home in first.params)
    assert k in streamer.ready, "kept for the transfer's other layers"
    for layer in rest:
        streamer.before(layer)
        streamer.after(layer)
    assert (stats.copies, stats.prefetched) == (1, len(rest))
    assert k not in streamer.ready, "released after the transfer's last layer"


def test_disk_weights_are_views_of_the_model_file_and_outputs_are_unchanged(model_file):
    model, tmp = model_file
    path = str(tmp / "tiny.safetensors")
    plan = compile_plan(tmp, "disk", "cpu,40%;disk,*")
    entry = core.model_entry(plan, "tiny")
    on_disk = [t["name"] for layer in entry["layers"] if layer["home"] == "disk" for t in layer["tensors"]]
    assert on_disk
    planned = fresh_copy(model)
    applied = core.apply_plan(planned, plan, entry, file=path)
    assert applied.stats.mapped == len(on_disk) and applied.stats.disk_in_ram == 0
    # Each `disk` weight's bytes are the file's: a view of the mapping, not a copy in RAM.
    mapped = core.mapped_tensors(path)
    params = dict(planned.named_parameters())
    for name in on_disk:
        assert torch.equal(params[name].data, mapped[name])
        assert not params[name].data.untyped_storage().resizable(), f"{name} is a view of the file mapping"
    x = torch.randn(2, 8, 16)
    with torch.no_grad():
        assert torch.equal(planned(x), model(x))
        assert torch.equal(planned(x), model(x))


def test_disk_weights_the_loader_changed_stay_in_ram(model_file):
    model, tmp = model_file
    plan = compile_plan(tmp, "disk", "cpu,40%;disk,*")
    entry = core.model_entry(plan, "tiny")
    planned = fresh_copy(model).to(torch.float64)  # as a loader casting the weights would
    applied = core.apply_plan(planned, plan, entry, file=str(tmp / "tiny.safetensors"))
    assert applied.stats.mapped == 0 and applied.stats.disk_in_ram > 0


def test_a_plan_for_a_device_this_machine_lacks_names_the_plan_and_the_device(model_file):
    _, tmp = model_file
    plan = compile_plan(tmp, "gpu", "cuda:0,30%;cpu,*", compute="cuda:0")
    with pytest.raises(core.PlanError, match=r"plan `.*gpu\.plan\.json` puts model `tiny` on `cuda:0`, which this machine does not have"):
        core.check_devices(plan, core.model_entry(plan, "tiny"), ["cpu"])
    core.check_devices(plan, core.model_entry(plan, "tiny"), ["cpu", "cuda:0"])


def test_allocation_inputs_are_distorch2s(model_file):
    from comfyui import allocation

    inputs = allocation.allocation_inputs()
    assert list(inputs) == ["compute_device", "virtual_vram_gb", "donor_device", "expert_mode_allocations"]
    devices = allocation.machine_devices()
    assert devices[0] == "cpu" and inputs["compute_device"][0] == devices
    assert inputs["compute_device"][1]["default"] == (devices[1] if len(devices) > 1 else "cpu")
    assert inputs["virtual_vram_gb"][0] == "FLOAT"
    assert {k: inputs["virtual_vram_gb"][1][k] for k in ("default", "min", "max", "step")} == {"default": 4.0, "min": 0.0, "max": 128.0, "step": 0.1}
    assert inputs["donor_device"][0] == devices + ["disk"] and inputs["donor_device"][1]["default"] == "cpu"
    assert inputs["expert_mode_allocations"][1]["default"] == ""


@pytest.mark.parametrize("inputs,expected", [
    (("cuda:0", 4.0, "cpu", ""), "#cuda:0;4.0;cpu"),
    (("cuda:1", 2.5, "cuda:0", ""), "#cuda:1;2.5;cuda:0"),
    (("cuda:0", 0.1 + 0.2, "disk", ""), "#cuda:0;0.3;disk"),
    (("cuda:0", 0.0, "cpu", ""), "cuda:0,*"),
    (("cpu", 4.0, "cpu", ""), "cpu,*"),
    (("cuda:0", 4.0, "cpu", "cuda:0,2gb;cpu,*"), "cuda:0,2gb;cpu,*"),
    (("cuda:0", 4.0, "cpu", " cuda:0,25%;cpu,75%#cuda:0 "), "cuda:0,25%;cpu,75%"),
    (("cuda:0", 0.0, "cpu", "#cuda:0;2.0;cpu"), "#cuda:0;2.0;cpu"),
])
def test_allocation_string_is_the_one_distorch2_builds(inputs, expected):
    from comfyui import allocation

    assert allocation.allocation_string(*inputs) == expected


HARDWARE = [{"device": "cuda:0", "memory": 4 << 30}, {"device": "cpu", "memory": 1 << 30}]


def test_plan_for_files_moves_the_virtual_vram_onto_the_donor(model_file):
    from comfyui import allocation

    _, tmp = model_file
    path = str(tmp / "tiny.safetensors")
    total = os.path.getsize(path)
    plan = allocation.plan_for_files([("tiny", path, "diffusion")], "cuda:0", total * 0.5 / (1 << 30), "cpu", "",
                                     hardware=HARDWARE)
    entry = plan["models"][0]
    assert entry["name"] == "tiny" and entry["compute"] == "cuda:0" and entry["allocation"].startswith("#cuda:0;")
    on = {d: sum(t["bytes"] for layer in entry["layers"] if layer["home"] == d for t in layer["tensors"]) for d in ("cuda:0", "cpu")}
    assert on["cpu"] > 0 and on["cuda:0"] > 0 and on["cpu"] <= total * 0.5
    whole = allocation.plan_for_files([("tiny", path, "diffusion")], "cuda:0", 0.0, "cpu", "", hardware=HARDWARE)
    assert {layer["home"] for layer in whole["models"][0]["layers"]} == {"cuda:0"}
    on_disk = allocation.plan_for_files([("tiny", path, "diffusion")], "cpu", 1.0, "disk", "", hardware=HARDWARE)
    assert {layer["home"] for layer in on_disk["models"][0]["layers"]} == {"disk"}


def test_plan_for_files_says_what_is_wrong_with_mgcs_own_diagnostic(model_file):
    from comfyui import allocation

    _, tmp = model_file
    files = [("tiny", str(tmp / "tiny.safetensors"), "diffusion")]
    with pytest.raises(core.PlanError, match=r"(?s)`expert_mode_allocations` is not an allocation.*unknown unit `tbs`.*did you mean `tb`"):
        allocation.plan_for_files(files, "cuda:0", 4.0, "cpu", "cuda:0,4tbs;cpu,*", hardware=HARDWARE)
    with pytest.raises(core.PlanError, match=r"(?s)cannot be planned on this machine.*`cpu` has 1.00 GiB to give.*lower the amount"):
        allocation.plan_for_files(files, "cuda:0", 100.0, "cpu", "", hardware=HARDWARE)
