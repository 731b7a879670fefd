"""The benchmark's own parts, without ComfyUI: records, the lower bound, the results document,
its table and the curve."""

import json
import xml.etree.ElementTree as ET

import pytest

from bench.comfyui import curve, records
from bench.comfyui.records import RecordError


def _record(system, offloaded, steps, **figures):
    return records.make_record("flux", system, offloaded, 24_000_000_000, steps, **figures)


def _runs():
    return [
        _record("resident", 0, [5.0, 0.30, 0.32, 0.31], peak_vram_bytes=25_000_000_000),
        _record("mgc", 0, [5.0, 0.31, 0.31, 0.33], predicted_step_seconds=0.30, copied_bytes=0),
        _record("mgc", 12_000_000_000, [5.0, 0.35, 0.36, 0.34], predicted_step_seconds=0.31,
                copied_bytes=12_000_000_000),
        _record("distorch2", 12_000_000_000, [5.0, 0.50, 0.52, 0.51], copied_bytes=12_000_000_000),
        _record("comfyui", 12_000_000_000, [5.0, 0.90, 0.95, 0.92]),
    ]


def test_the_step_is_the_median_of_the_steps_after_the_first():
    assert records.median_after_first([9.0, 1.0, 3.0, 2.0]) == 2.0
    assert records.median_after_first([9.0, 1.0, 2.0]) == 1.5
    with pytest.raises(RecordError, match="at least two steps"):
        records.median_after_first([1.0])


def test_the_lower_bound_is_compute_or_streaming_whichever_is_longer():
    # 12 GB at 50 GB/s is 0.24 s: under a 0.3 s step, the compute bounds it.
    assert records.lower_bound(0.3, 12_000_000_000, 50e9) == 0.3
    # 24 GB at 50 GB/s is 0.48 s: streaming bounds it.
    assert records.lower_bound(0.3, 24_000_000_000, 50e9) == pytest.approx(0.48)
    # Nothing streamed, or no bandwidth probed (a CPU computing): the compute alone.
    assert records.lower_bound(0.3, 0, 50e9) == 0.3
    assert records.lower_bound(0.3, 24_000_000_000, None) == 0.3
    with pytest.raises(RecordError, match="must be positive"):
        records.lower_bound(0.0, 1, 1.0)


def test_a_record_has_every_field_and_its_copy_rate():
    r = _record("mgc", 12_000_000_000, [5.0, 0.4, 0.4, 0.4], predicted_step_seconds=0.3, copied_bytes=12_000_000_000)
    assert set(r) == set(records.RECORD_KEYS)
    assert r["steps"] == 4 and r["step_seconds"] == 0.4
    assert r["copy_gb_per_s"] == pytest.approx(30.0)  # 12 GB in 0.4 s
    assert r["peak_vram_bytes"] is None and r["lower_bound_seconds"] is None
    with pytest.raises(RecordError, match="unknown system `accelerate`"):
        _record("accelerate", 0, [1.0, 1.0])
    with pytest.raises(RecordError, match="unknown record fields: speed"):
        _record("mgc", 0, [1.0, 1.0], speed=1)


def test_lower_bounds_come_from_the_models_resident_run():
    runs = records.attach_lower_bounds(_runs(), 50e9)
    by = {(r["system"], r["offloaded_bytes"]): r["lower_bound_seconds"] for r in runs}
    assert by[("resident", 0)] == pytest.approx(0.31)
    assert by[("mgc", 12_000_000_000)] == pytest.approx(0.31)  # 0.24 s of streaming hides under 0.31
    slow = records.attach_lower_bounds(_runs(), 20e9)  # 12 GB at 20 GB/s: 0.6 s
    assert [r["lower_bound_seconds"] for r in slow if r["offloaded_bytes"]] == [pytest.approx(0.6)] * 3
    # No resident run of the model: its bound is unknown, not made up.
    alone = records.attach_lower_bounds([r for r in _runs() if r["system"] != "resident"], 50e9)
    assert all(r["lower_bound_seconds"] is None for r in alone)


def test_the_document_orders_its_records_and_round_trips():
    runs = _runs()[::-1]
    doc = records.document(runs, {"device": "cuda:0", "gpu": "H200", "driver": "580", "pinned_gb_per_s": 55.0},
                           {"torch": "2.11.0", "comfyui": "0.3.64"}, {"steps": 4},
                           [{"model": "flux", "system": "comfyui", "offloaded_bytes": 0, "reason": "out of time"}])
    assert [r["system"] for r in doc["records"]] == ["mgc", "mgc", "distorch2", "comfyui", "resident"]
    text = records.to_json(doc)
    assert records.check_document(json.loads(text)) == json.loads(text)
    assert records.to_json(json.loads(text)) == text  # the same document gives the same bytes


def test_a_document_that_is_not_the_benchmarks_is_refused():
    with pytest.raises(RecordError, match="format version"):
        records.check_document({"records": []})
    doc = records.document(_runs(), {}, {}, {})
    del doc["records"][1]["step_seconds"]
    with pytest.raises(RecordError, match="record 1 has no `step_seconds`"):
        records.check_document(doc)


def test_the_markdown_table_has_a_line_per_run():
    doc = records.document(records.attach_lower_bounds(_runs(), 50e9),
                           {"device": "cuda:0", "gpu": "H200", "driver": "580", "pinned_gb_per_s": 55.0},
                           {"torch": "2.11.0"}, {}, [{"model": "flux", "system": "comfyui", "offloaded_bytes": 0,
                                                       "reason": "out of time"}])
    text = records.markdown(doc)
    assert "H200, driver 580" in text and "55.0 GB/s" in text and "torch 2.11.0" in text
    table = [line for line in text.splitlines() if line.startswith("| flux")]
    assert len(table) == 5
    mgc_half = next(line for line in table if "| mgc | 12.00 |" in line)
    # 350 ms against the 310 ms bound, predicted 310 ms, 12 GB copied at 34.3 GB/s.
    assert "| 350.0 | 310.0 | 1.13 | 310.0 |" in mgc_half and mgc_half.endswith("| 12.00 | 34.3 |")
    assert "- flux / ComfyUI lowvram at 0.00 GB: out of time" in text


def test_the_curve_has_a_line_per_system_and_the_prediction_dashed():
    runs = records.attach_lower_bounds(_runs(), 50e9)
    svg = curve.svg_curve(runs, "flux")
    root = ET.fromstring(svg)  # well-formed
    ns = "{http://www.w3.org/2000/svg}"
    lines = root.findall(f"{ns}polyline")
    labels = [t.text for t in root.findall(f"{ns}text")]
    for label in ("mgc", "DisTorch2", "ComfyUI lowvram", "all resident", "mgc predicted", "lower bound"):
        assert label in labels
    assert len(lines) == 6
    dashed = [p for p in lines if p.get("stroke-dasharray")]
    assert {p.get("stroke-dasharray") for p in dashed} == {"6 4", "2 3"}
    # mgc's measured line: two points, from x = 0 to x = 12 GB; its y grows with the step.
    mgc_line = lines[0].get("points").split()
    assert len(mgc_line) == 2
    (x0, y0), (x1, y1) = [tuple(float(v) for v in p.split(",")) for p in mgc_line]
    assert x1 > x0 and y1 < y0  # further right, and higher (SVG's y grows downwards)
    # DisTorch2 and ComfyUI with nothing offloaded are the resident run: their lines start there.
    (resident,) = lines[4].get("points").split()
    for line in (lines[2], lines[3]):
        points = line.get("points").split()
        assert len(points) == 2 and points[0] == resident
    assert svg == curve.svg_curve(runs, "flux")  # deterministic
    with pytest.raises(ValueError, match="no records of model `wan`"):
        curve.svg_curve(runs, "wan")


def test_ticks_are_round_and_cover_the_range():
    assert curve.nice_ticks(0.95) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert curve.nice_ticks(24.0)[-1] >= 24.0
    assert curve.nice_ticks(0.0) == [0.0, 1.0]


def test_the_curve_is_drawn_to_png_by_the_mgc_package_at_twice_its_size():
    import struct

    svg = curve.svg_curve(records.attach_lower_bounds(_runs(), 50e9), "flux")
    png = curve.render_png(svg)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    svg_width = float(svg.split('width="', 1)[1].split('"', 1)[0])
    svg_height = float(svg.split('height="', 1)[1].split('"', 1)[0])
    assert (width, height) == (round(2 * svg_width), round(2 * svg_height))
