"""Apply an mgc plan to a torch module. Plain torch: no ComfyUI import here.

A plan (``mgc compile``) says, for every layer of a model, where its weights live (its *home*)
and whether they are streamed to the compute device every step. ``apply_plan`` moves each
parameter to its home and hooks each streamed layer so that, when it runs, its weights are on
the compute device — copied there in advance on a side CUDA stream (``prefetch`` streamed layers
ahead), small layers batched through one staging buffer (pinned for a GPU) — and released after
it ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional

import torch

from . import telemetry

PLAN_VERSION = 1
_SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "plan.schema.json")


class PlanError(Exception):
    """A plan that cannot be used: the message says why and what to do."""


class Plan(dict):
    """A plan as read (a ``dict``, as the JSON says) and ``source``, where it was read from (a
    path, or ``plan`` for text), for messages."""

    def __init__(self, plan: dict, source: str = "plan"):
        super().__init__(plan)
        self.source = source


def load_plan(path_or_text: str) -> dict:
    """Reads a plan, refusing other format versions, schema violations and broken references."""
    if os.path.exists(path_or_text):
        with open(path_or_text, "r", encoding="utf-8") as f:
            text = f.read()
        where = path_or_text
    else:
        text, where = path_or_text, "plan"
    try:
        plan = json.loads(text)
    except json.JSONDecodeError as e:
        raise PlanError(f"`{where}` is not a plan: {e}") from None
    if not isinstance(plan, dict):
        raise PlanError(f"`{where}` is not a plan: not a JSON object")
    version = plan.get("format_version")
    if version != PLAN_VERSION:
        raise PlanError(
            f"`{where}`: plan format version {version!r} is not supported; this node pack reads "
            f"version {PLAN_VERSION}. Compile the plan again with this mgc."
        )
    _validate(plan, where)
    for model in plan["models"]:
        if model["input"] >= len(plan["inputs"]):
            raise PlanError(f"`{where}` is damaged: model `{model['name']}` refers to a missing input")
    return Plan(plan, where)


def compiled_plan(plan: dict, source: str = "plan") -> Plan:
    """A plan the `mgc` package compiled in this process: the compiler's own output, so only its
    format version is checked (validating it against the schema takes longer than compiling)."""
    if plan.get("format_version") != PLAN_VERSION:
        raise PlanError(
            f"the installed mgc compiler writes plan format version {plan.get('format_version')!r}; this node pack "
            f"reads version {PLAN_VERSION}: install both from the same repository"
        )
    return Plan(plan, source)


def plan_source(plan: dict) -> str:
    """Where a plan was read from, for messages."""
    return getattr(plan, "source", "plan")


def model_devices(model: dict) -> List[str]:
    """The devices a plan's model uses: its compute device, then its layers' homes, in order."""
    devices = [model["compute"]]
    for layer in model["layers"]:
        if layer["home"] not in devices:
            devices.append(layer["home"])
    return devices


def check_devices(plan: dict, model: dict, present: List[str]) -> None:
    """Refuses a plan's model that uses a device this machine lacks (``present``; `disk` is always
    there), naming the plan and the device."""
    missing = [d for d in model_devices(model) if d != "disk" and d not in present]
    if missing:
        raise PlanError(
            f"plan `{plan_source(plan)}` puts model `{model['name']}` on `{missing[0]}`, which this machine "
            f"does not have (it has {', '.join(f'`{d}`' for d in present + ['disk'])}): compile the plan on "
            "this machine, or declare this machine's devices in its workflow"
        )


def _validate(plan: dict, where: str) -> None:
    import jsonschema

    with open(_SCHEMA_PATH, "r", encoding="utf-8") as f:
        schema = json.load(f)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(plan), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        at = "/".join(str(p) for p in first.path) or "(top)"
        raise PlanError(f"`{where}` is damaged: at {at}: {first.message}")


def fingerprint(path: str, header_bytes: int) -> tuple:
    """The size of a model file and the SHA-256 of its header, as the plan records them."""
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(header_bytes))
    return size, digest.hexdigest()


def model_entry(plan: dict, name: Optional[str] = None, role: Optional[str] = None) -> dict:
    """The plan's entry for a model, by name, else the only one of a role."""
    models = plan["models"]
    if name:
        for m in models:
            if m["name"] == name:
                return m
        raise PlanError(f"the plan has no model `{name}`; it has {', '.join(m['name'] for m in models)}")
    chosen = [m for m in models if role is None or m["role"] == role]
    if len(chosen) != 1:
        raise PlanError(f"name the model to use: the plan has {', '.join(m['name'] for m in models)}")
    return chosen[0]


def model_for_file(plan: dict, path: str, name: Optional[str] = None, role: Optional[str] = None) -> dict:
    """The plan's entry for the model in the file at ``path``: by name when given, else the one
    model of the plan compiled from this very file (its fingerprint), else the only one of
    ``role``. Refuses a file the plan was not compiled for."""
    if name:
        model = model_entry(plan, name)
    else:
        matching = []
        for m in plan["models"]:
            entry = plan["inputs"][m["input"]]
            if os.path.getsize(path) == entry["size_bytes"] and fingerprint(path, entry["header_bytes"])[1] == entry["header_sha256"]:
                matching.append(m)
        by_role = [m for m in matching if role is None or m["role"] == role]
        if len(by_role) == 1:
            model = by_role[0]
        elif len(matching) == 1:
            model = matching[0]
        elif not matching:
            model = model_entry(plan, None, role)
        else:
            raise PlanError(f"name the model to use: `{path}` holds {', '.join(m['name'] for m in matching)}")
    check_model_file(plan, model, path)
    return model


def key_prefix(module: torch.nn.Module, model: dict) -> str:
    """Where the plan's keys sit in ``module``: ComfyUI nests some models under a name of its own
    (a text encoder's keys under ``clip_l.transformer.``, say). The prefix that most of the plan's
    keys need, or ``""`` when they are found as they are."""
    keys = set(module.state_dict().keys())
    prefix = model["prefix"]
    names = [_state_key(t["name"], prefix, "") for layer in model["layers"] for t in layer["tensors"]][:64]
    if not names or sum(n in keys for n in names) * 2 >= len(names):
        return ""
    counts: Dict[str, int] = {}
    for n in names:
        for k in keys:
            if k.endswith("." + n):
                counts[k[: len(k) - len(n)]] = counts.get(k[: len(k) - len(n)], 0) + 1
    if not counts:
        return ""
    best = max(sorted(counts), key=lambda c: counts[c])
    return best if counts[best] * 2 >= len(names) else ""


def check_model_file(plan: dict, model: dict, path: str) -> None:
    """Refuses a model file that is not the one the plan was compiled for."""
    entry = plan["inputs"][model["input"]]
    size, digest = fingerprint(path, entry["header_bytes"])
    if size != entry["size_bytes"] or digest != entry["header_sha256"]:
        raise PlanError(
            f"`{path}` is not the file the plan was compiled for (`{entry['path']}`: "
            f"{entry['size_bytes']} bytes, header {entry['header_sha256'][:12]}…); "
            "compile the plan for this file with `mgc compile`"
        )


# safetensors dtype names, as torch names them.
_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": getattr(torch, "float8_e4m3fn", None), "F8_E5M2": getattr(torch, "float8_e5m2", None),
}


def mapped_tensors(path: str) -> Dict[str, torch.Tensor]:
    """The tensors of a safetensors file as views of a private mapping of the file: their bytes
    are read from the file when used (the page cache may keep them) and are no memory of the
    process's own. Tensors of a dtype torch lacks are left out; an unreadable header gives none."""
    import mmap
    import struct

    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    except (OSError, ValueError, struct.error):
        return {}
    start, out = 8 + length, {}
    for name, info in header.items():
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype")) if isinstance(info, dict) else None
        if dtype is None or "data_offsets" not in info:
            continue
        begin, end = info["data_offsets"]
        if end == begin or (start + begin) % torch.empty((), dtype=dtype).element_size():
            continue
        raw = torch.frombuffer(mapping, dtype=torch.uint8, count=end - begin, offset=start + begin)
        out[name] = raw.view(dtype).reshape(info["shape"])
    return out


def torch_device(name: str) -> torch.device:
    """A plan device as torch names it; `disk` weights live in host memory here."""
    return torch.device("cpu" if name == "disk" else name)


@dataclass
class Stats:
    """What the hooks did (``Applied.stats``; the nodes keep it as ``mgc_plan.stats``)."""

    copies: int = 0
    batched_copies: int = 0
    bytes: int = 0
    prefetched: int = 0
    rehomed: int = 0
    mapped: int = 0  # weights homed on `disk` that are views of the model file
    disk_in_ram: int = 0  # weights homed on `disk` kept in RAM (ComfyUI changed them as it loaded)
    # How long the copies took, from the start of each (its staging included) to its end: on the
    # CPU timed as they run; on a GPU from CUDA events on the side stream, added by
    # `Applied.settle_copy_time()` once they completed.
    copy_seconds: float = 0.0


@dataclass
class _Layer:
    index: int
    name: str
    module: Optional[torch.nn.Module]  # None where the module has no such layer
    params: List[tuple]  # (owner module, attribute, home tensor)
    streamed: bool
    keys: List[str] = field(default_factory=list)  # each param's state-dict key in the module
    transfer: Optional[int] = None


@dataclass
class Applied:
    """A plan applied to a module; ``remove()`` undoes the hooks (weights stay where they are)."""

    model: dict
    compute: torch.device
    module: Optional[torch.nn.Module] = None
    stats: Stats = field(default_factory=Stats)
    _handles: list = field(default_factory=list)
    _homes: list = field(default_factory=list)  # (owner, attribute, home tensor) of every weight
    patches: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=dict)
    _layers: List[_Layer] = field(default_factory=list)
    _patch_handles: Dict[int, list] = field(default_factory=dict)
    _streamer: Optional["_Streamer"] = None
    _telemetry: Optional[object] = None  # the step logger its module's hooks call, weakly

    def set_patches(self, patches: Optional[Mapping[str, Callable[[torch.Tensor], torch.Tensor]]]) -> None:
        """Weight patches (LoRA and the like), by state-dict key: each function takes a weight on
        the compute device and returns the patched weight in its dtype, computing at full
        precision. Streamed weights are patched right after their copy; resident ones just
        before their layer runs (and restored after), so no patched copy is kept anywhere."""
        self.patches = dict(patches or {})
        for layer in self._layers:
            if layer.streamed or layer.module is None:
                continue
            wants = any(k in self.patches for k in layer.keys)
            if wants and layer.index not in self._patch_handles:
                self._patch_handles[layer.index] = [
                    layer.module.register_forward_pre_hook(weak_hook(self, "_patch_resident", layer.index)),
                    layer.module.register_forward_hook(weak_hook(self, "_restore_resident", layer.index)),
                ]
            elif not wants and layer.index in self._patch_handles:
                for h in self._patch_handles.pop(layer.index):
                    h.remove()

    def rehome(self) -> None:
        """Puts every weight back on its home device, after something else (ComfyUI's own model
        loading) moved it: the plan's placement wins."""
        self.stats.rehomed += 1
        for owner, attribute, home in self._homes:
            if getattr(owner, attribute) is not home and getattr(owner, attribute).data_ptr() != home.data_ptr():
                _set(owner, attribute, home)

    def _patch_resident(self, index: int, _module, _args) -> None:
        layer = self._layers[index]
        for (owner, attribute, home), key in zip(layer.params, layer.keys):
            if key in self.patches:
                _set(owner, attribute, self.patches[key](home))

    def _restore_resident(self, index: int, _module, _args, _output) -> None:
        for owner, attribute, home in self._layers[index].params:
            _set(owner, attribute, home)

    def settle_copy_time(self) -> None:
        """Adds the time of the side stream's completed copies to ``stats.copy_seconds``."""
        if self._streamer is not None:
            self._streamer.settle()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.set_patches(None)


def weak_hook(owner, method: str, *bound):
    """A module hook that calls ``owner.method(*bound, *hook arguments)``, holding ``owner``
    weakly. A module keeps its hooks; a hook that held the plan would keep, through it, the
    module and its weights alive in a reference cycle after ComfyUI let the model go, and its
    memory (VRAM too) would wait for Python's cycle collector. What loads a model keeps its plan
    beside it (``mgc_plan`` on the model's patcher, and in its load callback, which clones share);
    a module that runs after its plan was dropped, hooks still in place, is refused: its streamed
    weights would stay where they live, off the compute device."""
    ref = weakref.ref(owner)

    def hook(*args):
        target = ref()
        if target is None:
            raise PlanError(
                "this model's mgc plan was dropped while the model still runs: keep the loader's "
                "output (its `mgc_plan`) as long as the model, or call `remove()` on the plan first"
            )
        return getattr(target, method)(*bound, *args)

    return hook


def _params_of(module: torch.nn.Module, prefix: str, tensors: list, key_prefix: str) -> list:
    """(owner module, attribute, tensor) of each of a layer's tensors, by state-dict key."""
    out = []
    for t in tensors:
        key = _state_key(t["name"], prefix, key_prefix)
        owner_path, _, attribute = key.rpartition(".")
        try:
            owner = module.get_submodule(owner_path) if owner_path else module
        except AttributeError:
            raise PlanError(f"the module has no `{key}`: is this the model the plan is for?") from None
        value = getattr(owner, attribute, None)
        if not isinstance(value, torch.Tensor):
            raise PlanError(f"the module has no tensor `{key}`: is this the model the plan is for?")
        out.append((owner, attribute, value))
    return out


# What a GGUF weight (ComfyUI-GGUF's tensor class) carries besides its bytes.
_CARRIED = ("tensor_type", "tensor_shape", "patches")


def _carry(source: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` with what ``source`` carries as a GGUF weight (its quantization type and the
    shape it dequantizes to), which some torch operations drop."""
    if not hasattr(source, "tensor_type"):
        return tensor
    if type(tensor) is not type(source):
        tensor = tensor.as_subclass(type(source))
    for name in _CARRIED:
        if hasattr(source, name) and not hasattr(tensor, name):
            setattr(tensor, name, getattr(source, name))
    return tensor


def _set(owner: torch.nn.Module, attribute: str, tensor: torch.Tensor) -> None:
    current = getattr(owner, attribute)
    if isinstance(current, torch.nn.Parameter):
        current.data = tensor
    else:
        setattr(owner, attribute, tensor)


def apply_plan(
    module: torch.nn.Module,
    plan: dict,
    model: dict,
    key_prefix: str = "",
    patches: Optional[Mapping[str, Callable[[torch.Tensor], torch.Tensor]]] = None,
    file: Optional[str] = None,
) -> Applied:
    """Moves every weight of ``module`` to its home and hooks the streamed layers.

    ``key_prefix`` is put before each state-dict key of the plan (without the file's model
    prefix) to find the tensor in ``module``. ``patches`` maps such keys to functions applied to
    the weight on the compute device before it is used (see ``Applied.set_patches``). ``file`` is
    the model's safetensors file: weights homed on `disk` become views of it (``mapped_tensors``)
    where they are the file's bytes as they are; without it, or for a weight the loader changed
    (cast to another dtype, say), they are kept in RAM (``Stats.disk_in_ram``).
    """
    compute = torch_device(model["compute"])
    applied = Applied(model=model, compute=compute, module=module)
    on_disk = any(layer["home"] == "disk" for layer in model["layers"])
    mapped = mapped_tensors(file) if file and on_disk and str(file).endswith(".safetensors") else {}
    for entry in model["layers"]:
        layer = _place_layer(module, model, entry, compute, key_prefix, mapped, applied.stats)
        applied._layers.append(layer)
        applied._homes.extend(layer.params)
    transfers = _model_transfers(plan, model)
    _assign_transfers(applied._layers, transfers)
    applied._streamer = _Streamer(applied, transfers, prefetch=max(0, int(model["prefetch"])))
    _hook_streamed(applied, applied._streamer)
    applied.set_patches(patches)
    telemetry.watch(plan, applied)
    return applied


def _state_key(name: str, prefix: str, key_prefix: str) -> str:
    """A plan tensor's key in the module: the file's model ``prefix`` taken off, ``key_prefix`` put on."""
    return key_prefix + (name[len(prefix):] if name.startswith(prefix) else name)


def _place_layer(module: torch.nn.Module, model: dict, entry: dict, compute: torch.device, key_prefix: str,
                 mapped: Mapping[str, torch.Tensor], stats: Stats) -> _Layer:
    """Moves one layer's weights to its home (pinned host memory when streamed to a GPU from
    RAM; the file's bytes for `disk`) and returns it with its home tensors."""
    home = torch_device(entry["home"])
    on_disk = entry["home"] == "disk"
    pin = entry["streamed"] and home.type == "cpu" and compute.type == "cuda" and not on_disk
    placed = []
    params = _params_of(module, model["prefix"], entry["tensors"], key_prefix)
    for (owner, attribute, value), tensor in zip(params, entry["tensors"]):
        moved = value.data.to(home) if value.device != home else value.data
        if on_disk:
            moved = _from_file(mapped.get(tensor["name"]), value, moved, stats)
        if pin:
            moved = _carry(value, moved.pin_memory())
        _set(owner, attribute, moved)
        placed.append((owner, attribute, moved))
    keys = [_state_key(t["name"], model["prefix"], key_prefix) for t in entry["tensors"]]
    sub = _submodule(module, key_prefix, entry["name"])
    return _Layer(entry["index"], entry["name"], sub, placed, entry["streamed"], keys)


def _from_file(in_file: Optional[torch.Tensor], value: torch.Tensor, moved: torch.Tensor, stats: Stats) -> torch.Tensor:
    """A `disk` weight's home: its view of the model file when the loaded weight is the file's
    bytes as they are (same dtype, shape and values), else the weight in RAM."""
    same = (
        in_file is not None and not hasattr(value, "tensor_type") and in_file.dtype == moved.dtype
        and in_file.shape == moved.shape and torch.equal(in_file, moved)
    )
    if not same:
        stats.disk_in_ram += 1
        return moved
    stats.mapped += 1
    return in_file


def _submodule(module: torch.nn.Module, key_prefix: str, name: str) -> Optional[torch.nn.Module]:
    """The layer ``name`` of the plan in ``module`` (the whole module for the unnamed layer), or
    ``None`` where the module has no such layer."""
    if not name:
        return module
    try:
        return module.get_submodule(key_prefix.rstrip(".") + ("." if key_prefix else "") + name)
    except AttributeError:
        return None


def _model_transfers(plan: dict, model: dict) -> List[dict]:
    """The plan's transfers for ``model``, in order: each is one copy of a run of streamed layers."""
    return [t for t in plan["transfers"] if plan["models"][t["model"]] is model]


def _assign_transfers(layers: List[_Layer], transfers: List[dict]) -> None:
    """Tells each layer which transfer (by position in ``transfers``) brings its weights in."""
    for k, t in enumerate(transfers):
        for i in range(t["first_layer"], t["last_layer"] + 1):
            layers[i].transfer = k


def _hook_streamed(applied: Applied, streamer: "_Streamer") -> None:
    """Hooks every streamed layer to the streamer; refuses a layer the module does not have."""
    for layer in applied._layers:
        if not layer.streamed:
            continue
        if layer.module is None or layer.transfer is None:
            raise PlanError(f"the module has no layer `{layer.name}` to stream: is this the model the plan is for?")
        applied._handles.append(layer.module.register_forward_pre_hook(weak_hook(streamer, "before_hook", layer.index)))
        applied._handles.append(layer.module.register_forward_hook(weak_hook(streamer, "after_hook", layer.index)))


class _Streamer:
    """Brings the weights of streamed layers to the compute device for the time their layer runs.

    Each of the plan's transfers is one copy of a run of layers (a batched one: through one
    staging buffer). On a GPU the copies are made on a side stream, ``prefetch`` streamed layers
    ahead, and the compute stream waits on an event for them; on the CPU they are made when their
    first layer is about to run. A transfer's copies are released after its last layer ran.
    """

    def __init__(self, applied: Applied, transfers: List[dict], prefetch: int):
        # Weakly: the plan holds its streamer, and a cycle between them would keep the module.
        self._applied = weakref.ref(applied)
        self.layers: List[_Layer] = applied._layers
        self.transfers = transfers
        self.compute = applied.compute
        self.stream = torch.cuda.Stream(device=self.compute) if self.compute.type == "cuda" else None
        self.prefetch = prefetch
        self.order = [layer for layer in self.layers if layer.streamed]
        self._position = {layer.index: p for p, layer in enumerate(self.order)}
        self.ready: Dict[int, tuple] = {}  # transfer → (event or None, {layer index: [tensors]})
        self.timed: List[tuple] = []  # (start, end) CUDA events of copies not yet counted

    @property
    def applied(self) -> Applied:
        return self._applied()

    def before_hook(self, index: int, _module, _args) -> None:
        self.before(self.layers[index])

    def after_hook(self, index: int, _module, _args, _output) -> None:
        self.after(self.layers[index])

    def members(self, k: int) -> List[_Layer]:
        """The layers that transfer ``k`` brings in."""
        t = self.transfers[k]
        return [self.layers[i] for i in range(t["first_layer"], t["last_layer"] + 1)]

    def copy(self, k: int) -> None:
        """Starts transfer ``k``: its layers' weights copied to the compute device."""
        t = self.transfers[k]
        members = self.members(k)
        sources = [value for layer in members for (_, _, value) in layer.params]
        start = self._record() if self.stream is not None else time.perf_counter()
        if t["batched"] and sources:
            copies = self._copy_batched(sources)
            self.applied.stats.batched_copies += 1
        else:
            copies = self._copy_each(sources)
        end = self._record()
        if end is None:
            self.applied.stats.copy_seconds += time.perf_counter() - start
        else:
            self.timed.append((start, end))
        self.ready[k] = (end, _by_layer(members, copies))
        self.applied.stats.copies += 1
        self.applied.stats.bytes += t["bytes"]

    def _copy_batched(self, sources: List[torch.Tensor]) -> List[torch.Tensor]:
        """One staging buffer (pinned for a GPU), one copy; the copies are views into it."""
        staging = _stage(sources, pin=self.stream is not None)
        if self.stream is None:
            return _unstage(staging, sources)  # on the CPU the staging buffer is the copy
        with torch.cuda.stream(self.stream):
            on_device = staging.to(self.compute, non_blocking=True)
        return _unstage(on_device, sources)

    def _copy_each(self, sources: List[torch.Tensor]) -> List[torch.Tensor]:
        if self.stream is None:
            return [s.to(self.compute, copy=True) for s in sources]
        with torch.cuda.stream(self.stream):
            return [s.to(self.compute, non_blocking=True) for s in sources]

    def _record(self) -> Optional["torch.cuda.Event"]:
        """An event after the copies queued on the side stream, or ``None`` on the CPU."""
        if self.stream is None:
            return None
        event = torch.cuda.Event(enable_timing=True)
        event.record(self.stream)
        return event

    def settle(self) -> None:
        """Counts the time of the side stream's copies that completed (the rest wait)."""
        waiting = []
        for start, end in self.timed:
            if end.query():
                self.applied.stats.copy_seconds += start.elapsed_time(end) / 1e3
            else:
                waiting.append((start, end))
        self.timed = waiting

    def before(self, layer: _Layer) -> None:
        """Before ``layer`` runs: its weights become their copies on the compute device (patched
        where a patch is set), and the next streamed layers' copies are started."""
        k = layer.transfer
        if k not in self.ready:
            self.copy(k)
        else:
            self.applied.stats.prefetched += 1
        event, by_layer = self.ready[k]
        copies = by_layer[layer.index]
        if event is not None:
            self._wait(event, copies)
        patches = self.applied.patches
        for (owner, attribute, _), key, tensor in zip(layer.params, layer.keys, copies):
            if key in patches:
                tensor = patches[key](tensor)
            _set(owner, attribute, tensor)
        if self.stream is not None:
            self._prefetch_after(layer)

    def _wait(self, event: "torch.cuda.Event", copies: List[torch.Tensor]) -> None:
        current = torch.cuda.current_stream(self.compute)
        current.wait_event(event)
        # The copies were allocated on the side stream: tell the allocator this stream reads
        # them, so their memory is not reused before these kernels are done.
        for tensor in copies:
            tensor.record_stream(current)

    def _prefetch_after(self, layer: _Layer) -> None:
        """Starts the copies of the ``prefetch`` streamed layers after ``layer``, while it computes."""
        position = self._position[layer.index]
        for ahead in self.order[position + 1:position + 1 + self.prefetch]:
            if ahead.transfer not in self.ready:
                self.copy(ahead.transfer)

    def after(self, layer: _Layer) -> None:
        """After ``layer`` ran: its weights are their home tensors again, and the transfer's
        copies are released once its last layer ran."""
        for owner, attribute, home in layer.params:
            _set(owner, attribute, home)
        if layer.index == self.transfers[layer.transfer]["last_layer"]:
            self.ready.pop(layer.transfer, None)


# Every tensor starts on a multiple of this many bytes in a staging buffer, so that a view of any
# dtype over it is aligned (a GGUF weight of an odd number of 34-byte blocks may precede an F32).
_ALIGN = 16


def _offsets(sources: List[torch.Tensor]) -> tuple:
    """Each source's byte offset in a staging buffer, and the buffer's size."""
    offsets, end = [], 0
    for s in sources:
        start = -(-end // _ALIGN) * _ALIGN
        offsets.append(start)
        end = start + s.numel() * s.element_size()
    return offsets, end


def _stage(sources: List[torch.Tensor], pin: bool) -> torch.Tensor:
    """The bytes of ``sources``, one after another (each aligned), in one new buffer."""
    offsets, size = _offsets(sources)
    staging = torch.empty(size, dtype=torch.uint8, pin_memory=pin)
    for s, offset in zip(sources, offsets):
        flat = s.reshape(-1).view(torch.uint8)
        staging[offset:offset + flat.numel()].copy_(flat)
    return staging


def _unstage(buffer: torch.Tensor, sources: List[torch.Tensor]) -> List[torch.Tensor]:
    """Views into ``buffer`` (as ``_stage`` filled it) with the dtype and size of each source."""
    views = []
    for s, offset in zip(sources, _offsets(sources)[0]):
        n = s.numel() * s.element_size()
        # `size()`, not `.shape`: a GGUF weight's `.shape` is the shape it dequantizes to.
        views.append(buffer[offset:offset + n].view(s.dtype).reshape(s.size()))
    return views


def _by_layer(members: List[_Layer], copies: List[torch.Tensor]) -> Dict[int, List[torch.Tensor]]:
    """The copies of a transfer split by layer index, in the order of each layer's params."""
    by_layer, j = {}, 0
    for layer in members:
        by_layer[layer.index] = copies[j:j + len(layer.params)]
        j += len(layer.params)
    return by_layer


def check_placement(module: torch.nn.Module, model: dict, key_prefix: str = "") -> None:
    """Refuses a module whose weights are not where the plan put them (something else moved them)."""
    homes = {t["name"]: str(torch_device(layer["home"])) for layer in model["layers"] for t in layer["tensors"]}
    wrong = [(k, d, homes[k]) for k, d in placement(module, model, key_prefix).items() if d != homes[k]]
    if wrong:
        key, now, home = wrong[0]
        raise PlanError(
            f"{len(wrong)} weight(s) of `{model['name']}` are not where the plan put them "
            f"(`{key}` is on {now}, its home is {home}): something else manages this model's memory"
        )


def placement(module: torch.nn.Module, model: dict, key_prefix: str = "") -> Dict[str, str]:
    """Where each of the plan's tensors is now, by state-dict key (for checks)."""
    out = {}
    prefix = model["prefix"]
    for layer in model["layers"]:
        for (owner, attribute, _), t in zip(_params_of(module, prefix, layer["tensors"], key_prefix), layer["tensors"]):
            out[t["name"]] = str(getattr(owner, attribute).device)
    return out
