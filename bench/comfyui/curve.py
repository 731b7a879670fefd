"""The benchmark's curve for one model: seconds per step against GB offloaded, a line per system,
mgc's prediction dashed and the lower bound dotted, as SVG (and PNG through the `mgc` package
where it can render one). Plain Python, deterministic: the same records give the same bytes."""

from __future__ import annotations

import math
from typing import Iterable, List, Optional, Tuple
from xml.sax.saxutils import escape

from .records import SYSTEM_TITLES, SYSTEMS

WIDTH, HEIGHT = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 40, 50
COLOURS = {"mgc": "#1f77b4", "distorch2": "#d62728", "comfyui": "#2ca02c", "resident": "#7f7f7f"}
BOUND_COLOUR = "#000000"


def nice_ticks(high: float, count: int = 5) -> List[float]:
    """Round tick values from 0 to at least ``high``: steps of 1, 2 or 5 times a power of ten."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks = [0.0]
    while ticks[-1] < high - 1e-12:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _series(records: List[dict], system: str, key: str) -> List[Tuple[float, float]]:
    points = [(r["offloaded_bytes"] / 1e9, r[key]) for r in records if r["system"] == system and r.get(key) is not None]
    return sorted(points)


def _bound_series(records: List[dict]) -> List[Tuple[float, float]]:
    """The lower bound at every amount measured (it is the same for every system)."""
    bounds = {}
    for r in records:
        if r.get("lower_bound_seconds") is not None:
            bounds[r["offloaded_bytes"] / 1e9] = r["lower_bound_seconds"]
    return sorted(bounds.items())


def _fmt(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if abs(v - round(v, 1)) < 1e-9 else f"{v:.3g}"


def svg_curve(records: Iterable[dict], model: str, title: Optional[str] = None) -> str:
    """The curve of ``model``'s records as an SVG document."""
    records = [r for r in records if r["model"] == model]
    if not records:
        raise ValueError(f"no records of model `{model}` to draw")
    lines = []  # (label, colour, dash, points)
    resident = _series(records, "resident", "step_seconds")[:1]
    for system in SYSTEMS:
        points = _series(records, system, "step_seconds")
        if system in ("distorch2", "comfyui") and points and points[0][0] > 0:
            points = resident + points  # with nothing offloaded, both are ComfyUI's full load: the resident run
        if points:
            lines.append((SYSTEM_TITLES[system], COLOURS[system], "", points))
        if system == "mgc":
            predicted = _series(records, system, "predicted_step_seconds")
            if predicted:
                lines.append(("mgc predicted", COLOURS["mgc"], "6 4", predicted))
    bound = _bound_series(records)
    if bound:
        lines.append(("lower bound", BOUND_COLOUR, "2 3", bound))
    xs = [x for *_, pts in lines for x, _ in pts]
    ys = [y for *_, pts in lines for _, y in pts]
    x_ticks, y_ticks = nice_ticks(max(xs)), nice_ticks(max(ys))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + plot_w * x / x_ticks[-1]

    def py(y: float) -> float:
        return TOP + plot_h * (1 - y / y_ticks[-1])

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="24" font-size="15">{escape(title or model)}</text>',
    ]
    for t in x_ticks:
        out.append(f'<line x1="{px(t):.1f}" y1="{TOP}" x2="{px(t):.1f}" y2="{TOP + plot_h}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{px(t):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{_fmt(t)}</text>')
    for t in y_ticks:
        out.append(f'<line x1="{LEFT}" y1="{py(t):.1f}" x2="{LEFT + plot_w}" y2="{py(t):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#000000"/>')
    out.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 12}" text-anchor="middle">GB offloaded</text>')
    out.append(f'<text x="16" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 16 {TOP + plot_h / 2:.1f})">seconds per step</text>')
    for i, (label, colour, dash, points) in enumerate(lines):
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dashed}/>')
        if not dash:
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>' for x, y in points]
        ly = TOP + 10 + 20 * i
        lx = LEFT + plot_w + 14
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{colour}" stroke-width="2"{dashed}/>')
        out.append(f'<text x="{lx + 30}" y="{ly + 4}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_png(svg: str) -> bytes:
    """The SVG as PNG, at twice its size, drawn by the `mgc` package (resvg, its own font)."""
    import mgc

    return mgc.render_png(svg, 2.0)
