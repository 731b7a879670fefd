"""The table and curves again from a results document, without running anything: to draw a GPU
run's results on another machine (the PNG too, where this `mgc` package renders PNG).

Usage: python bench/comfyui/report.py RESULTS.json [--out DIR]   (default: the JSON's folder)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

if __package__ in (None, ""):  # run as a script: the repository root on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from bench.comfyui import records  # noqa: E402
from bench.comfyui.run import write_results  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bench/comfyui/report.py", description=__doc__.split("\n\n")[0])
    p.add_argument("results", help="a results.json written by bench/comfyui/run.py")
    p.add_argument("--out", default=None, help="where to write results.md and the curves")
    args = p.parse_args(argv)
    try:
        with open(args.results, "r", encoding="utf-8") as f:
            doc = records.check_document(json.load(f))
    except OSError as e:
        print(f"error: cannot read `{args.results}`: {e.strerror}", file=sys.stderr)
        return 2
    except (json.JSONDecodeError, records.RecordError) as e:
        print(f"error: `{args.results}`: {e}", file=sys.stderr)
        return 1
    write_results(doc, args.out or os.path.dirname(os.path.abspath(args.results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
