"""mgc, the MultiGPU compiler, in-process.

- ``check_allocation(s)``: an allocation string, as ``mgc check --allocation S --format json``.
- ``compile(workflow, *, hardware=None)``: a workflow (a path, or its TOML text) into a plan.
- ``inspect(path)``: what a model file holds, from its header.
- ``schema()``: the plan's JSON Schema.
- ``explain(plan_or_workflow, stage=None, *, hardware=None)``: ``{"table": ..., "svg": ...}``, what
  ``mgc explain`` prints and the picture ``mgc explain --svg`` draws.
- ``render_png(svg, scale=1.0)``: a picture (SVG text) as PNG bytes, its text in an embedded font.

Each returns what the ``mgc`` command prints with ``--format json``, as Python values; a problem
with the input raises ``MgcError``, whose message is the diagnostic ``mgc`` prints and whose
``.diagnostics`` holds the JSON errors (message, span, line, column, label, help).
"""

from ._mgc import MgcError, __version__, check_allocation, compile, explain, inspect, render_png, schema

__all__ = ["MgcError", "__version__", "check_allocation", "compile", "explain", "inspect", "render_png", "schema"]
