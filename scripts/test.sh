#!/usr/bin/env bash
# The test suite: sets up the Python environment (torch, gguf, pytest) when missing, then runs
# every Rust test with real files (header-only models, GGUF files written by the reference writer,
# libtorch on the CPU) and the node pack's Python tests.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup-python.sh
# `--all-features`: the runtime and `mgc-run` (feature `torch`) with their libtorch tests.
cargo test --workspace --locked --all-features
# The ComfyUI node pack's core, with real torch, against the `mgc` just built.
MGC="$here/target/debug/mgc" .venv/bin/python -m pytest -q comfyui/tests
