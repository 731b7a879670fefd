#!/usr/bin/env bash
# The test suite: sets up the Python environment (torch, gguf, pytest) when missing, then runs
# every Rust test with real files (header-only models, GGUF files written by the reference writer,
# libtorch on the CPU), the `mgc` Python package's tests and the node pack's.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup-python.sh
# `--all-features`: the runtime and `mgc-run` (feature `torch`) with their libtorch tests.
cargo test --workspace --locked --all-features
# The compiler as the Python package `mgc`, this clone's build, into this clone's `.venv-mgc`
# (the shared environment beneath it is left as it is); then its tests, which compare it with the
# `mgc` binary just built, and the ComfyUI node pack's, with real torch, which import it.
VIRTUAL_ENV="$here/.venv-mgc" .venv-mgc/bin/maturin develop --quiet --locked -m python/Cargo.toml
MGC_CLI="${CARGO_TARGET_DIR:-$here/target}/debug/mgc" .venv-mgc/bin/python -m pytest -q python/tests comfyui/tests bench/comfyui/tests bench/tests
