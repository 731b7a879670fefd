"""The benchmark's records: one per run (a model, a system, an amount offloaded), the lower bound
each run is held against, the results document and its markdown table. Plain Python: no torch,
no ComfyUI, so that CI tests it.

A run's step time is the median of its steps after the first (the first step also loads the
model). Its lower bound is what no system can beat at that amount: the all-resident step of the
same model, or the time to stream the offloaded bytes at the probed pinned bandwidth, whichever is
longer.
"""

from __future__ import annotations

import json
import statistics
from typing import Dict, Iterable, List, Optional, Sequence

SYSTEMS = ("mgc", "distorch2", "comfyui", "resident")
# How each system is named in tables and on the curve.
SYSTEM_TITLES = {
    "mgc": "mgc",
    "distorch2": "DisTorch2",
    "comfyui": "ComfyUI lowvram",
    "resident": "all resident",
}
FORMAT_VERSION = 1

# Every record has these keys; `None` where a figure does not apply (no VRAM on a CPU, no
# prediction but mgc's, no bandwidth probed). `peak_vram_bytes` is the peak of the whole run
# (loading included), `peak_vram_steps_bytes` that of the steps after the first; `copied_bytes` is
# per step; `output_abs_sum` the sampled latent's sum of absolute values (equal inputs, so runs of
# one model can be compared).
RECORD_KEYS = (
    "model",
    "system",
    "offloaded_bytes",
    "model_bytes",
    "allocation",
    "steps",
    "step_seconds",
    "step_times",
    "lower_bound_seconds",
    "predicted_step_seconds",
    "predicted_peak_bytes",
    "peak_vram_bytes",
    "peak_vram_steps_bytes",
    "copied_bytes",
    "copy_gb_per_s",
    "load_seconds",
    "output_abs_sum",
    "vram_at_start_bytes",
)


class RecordError(ValueError):
    """A record or a results document that does not hold what the benchmark writes."""


def median_after_first(step_times: Sequence[float]) -> float:
    """The median of the steps after the first, which also loads the model and warms up."""
    after = list(step_times[1:])
    if not after:
        raise RecordError(f"a step time needs at least two steps, got {len(step_times)}")
    return statistics.median(after)


def lower_bound(resident_step: float, streamed_bytes: int, bandwidth: Optional[float]) -> float:
    """``max(all-resident step, streamed bytes ÷ pinned bandwidth)``: a step cannot be faster than
    the model's compute, nor than moving what is not resident. Without a probed bandwidth (a CPU
    computing) only the compute part is known."""
    if resident_step <= 0:
        raise RecordError(f"the all-resident step must be positive, got {resident_step}")
    if not bandwidth or streamed_bytes <= 0:
        return resident_step
    return max(resident_step, streamed_bytes / bandwidth)


def make_record(model: str, system: str, offloaded_bytes: int, model_bytes: int, step_times: Sequence[float],
                **figures) -> dict:
    """A run's record from its step times and its other figures (any of ``RECORD_KEYS``)."""
    if system not in SYSTEMS:
        raise RecordError(f"unknown system `{system}`: one of {', '.join(SYSTEMS)}")
    unknown = sorted(set(figures) - set(RECORD_KEYS))
    if unknown:
        raise RecordError(f"unknown record fields: {', '.join(unknown)}")
    record = {key: None for key in RECORD_KEYS}
    step = median_after_first(step_times)
    record.update(figures)
    record.update(model=model, system=system, offloaded_bytes=int(offloaded_bytes), model_bytes=int(model_bytes),
                  steps=len(step_times), step_times=[float(t) for t in step_times], step_seconds=step)
    copied = record["copied_bytes"]
    if copied is not None and record["copy_gb_per_s"] is None:
        record["copy_gb_per_s"] = copied / step / 1e9 if copied else 0.0
    return record


def attach_lower_bounds(records: List[dict], bandwidth: Optional[float]) -> List[dict]:
    """Sets every record's lower bound from its model's all-resident run; a model without one
    keeps `None` (its bound is unknown)."""
    resident = {r["model"]: r["step_seconds"] for r in records if r["system"] == "resident"}
    for r in records:
        step = resident.get(r["model"])
        r["lower_bound_seconds"] = None if step is None else lower_bound(step, r["offloaded_bytes"], bandwidth)
    return records


def sort_records(records: Iterable[dict]) -> List[dict]:
    """Records in a fixed order: by model as first seen, then system, then amount offloaded."""
    records = list(records)
    models: Dict[str, int] = {}
    for r in records:
        models.setdefault(r["model"], len(models))
    return sorted(records, key=lambda r: (models[r["model"]], SYSTEMS.index(r["system"]), r["offloaded_bytes"]))


def document(records: Iterable[dict], machine: dict, versions: dict, settings: dict,
             skipped: Sequence[dict] = ()) -> dict:
    """The results document: the machine and versions, how the runs were made, every record, and
    the runs that did not happen with why."""
    return {
        "format_version": FORMAT_VERSION,
        "machine": machine,
        "versions": versions,
        "settings": settings,
        "records": sort_records(records),
        "skipped": list(skipped),
    }


def check_document(doc: dict) -> dict:
    """Refuses a results document that lacks what the benchmark writes (a hand-edited file, or
    one from another version), naming the first problem."""
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
        raise RecordError(f"not a benchmark results document of format version {FORMAT_VERSION}")
    for key in ("machine", "versions", "settings", "records", "skipped"):
        if key not in doc:
            raise RecordError(f"the results document has no `{key}`")
    for i, r in enumerate(doc["records"]):
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise RecordError(f"record {i} has no {', '.join(f'`{k}`' for k in missing)}")
        if r["system"] not in SYSTEMS:
            raise RecordError(f"record {i}: unknown system `{r['system']}`")
    return doc


def to_json(doc: dict) -> str:
    """The document as JSON text, keys in a fixed order."""
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def _gb(n: Optional[float]) -> str:
    """Gigabytes: two decimals, or three significant digits below 0.1 GB (the tiny models)."""
    if n is None:
        return "—"
    return f"{n / 1e9:.2f}" if n == 0 or n >= 1e8 else f"{n / 1e9:.3g}"


def _ms(s: Optional[float]) -> str:
    return "—" if s is None else f"{s * 1e3:.1f}"


def markdown_table(records: Iterable[dict]) -> str:
    """One line per run: s/step against the lower bound and mgc's prediction, peak VRAM, what was
    copied each step and how fast."""
    lines = [
        "| model | system | offloaded GB | ms/step | lower bound ms | step / bound | predicted ms | "
        "peak VRAM GB | predicted peak GB | copied GB/step | GB/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sort_records(records):
        bound = r["lower_bound_seconds"]
        ratio = "—" if not bound else f"{r['step_seconds'] / bound:.2f}"
        rate = "—" if r["copy_gb_per_s"] is None else f"{r['copy_gb_per_s']:.1f}"
        lines.append(
            f"| {r['model']} | {SYSTEM_TITLES[r['system']]} | {_gb(r['offloaded_bytes'])} | {_ms(r['step_seconds'])} | "
            f"{_ms(bound)} | {ratio} | {_ms(r['predicted_step_seconds'])} | {_gb(r['peak_vram_bytes'])} | "
            f"{_gb(r['predicted_peak_bytes'])} | {_gb(r['copied_bytes'])} | {rate} |"
        )
    return "\n".join(lines) + "\n"


def markdown(doc: dict) -> str:
    """The table with a line on the machine and versions above it, and the skipped runs below."""
    m, v = doc["machine"], doc["versions"]
    head = ", ".join(f"{k} {v[k]}" for k in sorted(v) if v[k])
    text = [f"Machine: {m.get('device', '?')}" + (f" ({m['gpu']}, driver {m['driver']})" if m.get("gpu") else "")
            + (f", pinned host-to-device {m['pinned_gb_per_s']:.1f} GB/s" if m.get("pinned_gb_per_s") else "")
            + f"; {head}.", "", markdown_table(doc["records"])]
    if doc["skipped"]:
        text.append("Not run:\n")
        text += [f"- {s['model']} / {SYSTEM_TITLES.get(s['system'], s['system'])}"
                 + (f" at {_gb(s['offloaded_bytes'])} GB" if s.get("offloaded_bytes") is not None else "")
                 + f": {s['reason']}" for s in doc["skipped"]]
        text.append("")
    return "\n".join(text)
