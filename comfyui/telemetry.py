"""The ``mgc`` logger: what a plan does, in ComfyUI's console. Plain torch: no ComfyUI import here.

- At load, one line per model: the bytes it keeps on each device, what it streams a step, its
  predicted step, and every device's predicted peak.
- Each step of a diffusion model (one forward of the module the plan was applied to): the step
  time measured against the plan's prediction, and the bytes copied in with the copies' GB/s
  against the plan's link.

Logging never raises into loading or sampling: a problem here is logged at debug level and
dropped. With the logger below INFO nothing is measured. On a GPU a step's end waits for its
kernels (one synchronize a step), so that its time is the step's and not the time to queue it.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Dict, List, Optional

import torch

LOG = logging.getLogger("mgc")

# Models that run once, not a step at a time.
_NO_STEPS = ("text-encoder", "vae")


def watch(plan: dict, applied) -> None:
    """Logs the allocation summary of ``applied``'s model and, for a model that steps (a
    diffusion model, or one whose role mgc could not tell), hooks its module's forward so that
    every step is logged. ``applied.remove()`` removes the hooks."""
    try:
        LOG.info("%s", summary(plan, applied.model))
        if applied.model["role"] not in _NO_STEPS and applied.module is not None:
            from .core import weak_hook

            applied._telemetry = steps = _Steps(plan, applied)
            applied._handles.append(applied.module.register_forward_pre_hook(weak_hook(steps, "start")))
            applied._handles.append(applied.module.register_forward_hook(weak_hook(steps, "end")))
    except Exception:  # noqa: BLE001 - the console must never stop a load
        LOG.debug("mgc: no telemetry for this model", exc_info=True)


def summary(plan: dict, model: dict) -> str:
    """One line on what the plan does with ``model``: bytes per device, streamed bytes, the
    predicted step and the devices' predicted peaks."""
    homes: Dict[str, int] = {}
    for layer in model["layers"]:
        homes[layer["home"]] = homes.get(layer["home"], 0) + layer["bytes"]
    order = [d["name"] for d in plan["devices"]]
    where = ", ".join(f"{human_bytes(homes[d])} on {d}" for d in sorted(homes, key=_position(order)))
    transfers = model_transfers(plan, model)
    streamed = sum(t["bytes"] for t in transfers)
    peaks = ", ".join(
        f"{d['name']} {human_bytes(d['peak_bytes'])} of {human_bytes(d['memory_bytes'])}"
        for d in plan["devices"]
        if d["name"] != "disk"
    )
    return (
        f"mgc: model `{model['name']}` ({model['family']} {model['role']}, {human_bytes(model['bytes'])}) "
        f"computes on {model['compute']}: {where}; streams {human_bytes(streamed)} a step in "
        f"{len(transfers)} copies (prefetch {model['prefetch']}); predicted step "
        f"{seconds(model['predicted']['step_seconds'])}; predicted peaks {peaks}"
    )


def _position(order: List[str]):
    return lambda name: order.index(name) if name in order else len(order)


def model_transfers(plan: dict, model: dict) -> List[dict]:
    """The plan's transfers (copies of a step) of ``model``."""
    index = next(i for i, m in enumerate(plan["models"]) if m["name"] == model["name"])
    return [t for t in plan["transfers"] if t["model"] == index]


def planned_link(plan: dict, model: dict) -> Optional[dict]:
    """The plan's link that brings ``model``'s first streamed layer to its compute device."""
    homes = [layer["home"] for layer in model["layers"] if layer["streamed"]]
    if not homes:
        return None
    return next((l for l in plan["links"] if l["from"] == homes[0] and l["to"] == model["compute"]), None)


class _Steps:
    """Times each forward of a diffusion model and logs it against the plan."""

    def __init__(self, plan: dict, applied):
        self._applied = weakref.ref(applied)  # the plan holds these steps: no cycle
        self.name = applied.model["name"]
        self.predicted = applied.model["predicted"]["step_seconds"]
        self.link = planned_link(plan, applied.model)
        self.cuda = applied.compute.type == "cuda"
        self.count = 0
        self.begun: Optional[tuple] = None  # (seconds, bytes copied, copy seconds) at the start

    @property
    def applied(self):
        return self._applied()

    def start(self, _module, _args) -> None:
        try:
            if self.begun is not None or not LOG.isEnabledFor(logging.INFO):
                return
            self._sync()
            stats = self.applied.stats
            self.begun = (time.perf_counter(), stats.bytes, stats.copy_seconds)
        except Exception:  # noqa: BLE001 - never into sampling
            self.begun = None
            LOG.debug("mgc: a step was not timed", exc_info=True)

    def end(self, _module, _args, _output) -> None:
        begun, self.begun = self.begun, None
        if begun is None:
            return
        try:
            self._sync()
            elapsed = time.perf_counter() - begun[0]
            self.applied.settle_copy_time()
            stats = self.applied.stats
            self.count += 1
            LOG.info("%s", self.line(elapsed, stats.bytes - begun[1], stats.copy_seconds - begun[2]))
        except Exception:  # noqa: BLE001 - never into sampling
            LOG.debug("mgc: a step was not logged", exc_info=True)

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.applied.compute)

    def line(self, elapsed: float, copied: int, copy_seconds: float) -> str:
        """The log line of one step."""
        ratio = f" ({elapsed / self.predicted:.2f}x)" if self.predicted > 0 else ""
        text = (
            f"mgc: `{self.name}` step {self.count}: {seconds(elapsed)} measured, "
            f"{seconds(self.predicted)} predicted{ratio}; "
        )
        if copied == 0:
            return text + "no copies"
        text += f"copied {human_bytes(copied)} in {seconds(copy_seconds)}"
        if copy_seconds > 0:
            text += f", {copied / copy_seconds / 1e9:.2f} GB/s"
        if self.link is not None:
            text += f" (plan: {self.link['from']} -> {self.link['to']} {self.link['bandwidth_bytes_per_second'] / 1e9:.1f} GB/s)"
        return text


def human_bytes(n: int) -> str:
    """Bytes with binary units, as mgc prints them: ``22.17 GiB``."""
    for name, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {name}"
    return f"{n} B"


def seconds(s: float) -> str:
    """A duration as mgc prints one: ``1.234 s``, ``12.34 ms``, ``5.6 µs``."""
    if s <= 0:
        return "0 s"
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"
