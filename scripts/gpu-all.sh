#!/usr/bin/env bash
# Every GPU check in one command that ends within a time limit, for a GPU machine lent for a few
# minutes (torch installed there; no network, no cargo):
#   scripts/prepare-gpu-all.sh                                   # here: device-run/ and device-run/bench/
#   (on the GPU machine, from the repository root)
#   bash scripts/gpu-all.sh OUT_DIR [SECONDS] [PARTS] [MODELS]
# PARTS (default "check bench tests"), in this order, each within what is left of SECONDS (default 560):
#   check: `mgc probe`, bench/kernels.py and the Wan 2.1 1.3B runs of scripts/gpu-check.sh (ratios,
#          peaks, checksums);
#   bench: bench/comfyui/gpu.sh on MODELS (default: the `gpu` set), with the profile just probed;
#   tests: the runtime's tests and the node pack's core on CUDA (scripts/gpu-check.sh).
# Everything lands under OUT_DIR/all, packed at the end into OUT_DIR/all.tgz beside copies of the
# summaries (check.txt, kernels.txt, results.md, results.json), so that only a few files need to travel back.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "${1:?usage: gpu-all.sh OUT_DIR [SECONDS] [PARTS] [MODELS]}" && cd "$1" && pwd)"
limit="${2:-560}"
parts=" ${3:-check bench tests} "
models="${4:-gpu}"
start=$(date +%s)
left() { echo $((start + limit - $(date +%s))); }
cd "$repo"
all="$out/all"
mkdir -p "$all"
log() { echo "== $* (at $(($(date +%s) - start)) s)" | tee -a "$all/driver.txt"; }

# The packed wheels once, for every part.
site="${TMPDIR:-/tmp}/mgc-gpu-site"
if ! python3 -c 'import jsonschema, av, torchsde, trampoline, gguf, mgc' 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
        device-run/bench/wheels/*.whl > "$all/pip.txt" 2>&1 || log "the wheels did not install (pip.txt)"
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi

# The profile probed by an earlier call on the same machine, kept beside the benchmark's models.
profile=""
[ -f bench-work/profile.toml ] && profile="$repo/bench-work/profile.toml"
if [[ "$parts" == *" check "* ]]; then
    log "check: probe and Wan 2.1 1.3B"
    MGC_GPU_CHECK="probe kernels wan" MGC_PROBE_TIMEOUT=$(($(left) / 2)) \
        timeout $(($(left) - 60)) bash device-run/gpu-check.sh "$all/check" > "$all/check-stdout.txt" 2>&1
    log "check: exit $?"
    if [ -f "$all/check/profile.toml" ]; then
        mkdir -p bench-work && cp "$all/check/profile.toml" bench-work/profile.toml
        profile="$repo/bench-work/profile.toml"
    fi
fi
if [[ "$parts" == *" bench "* ]] && [ "$(left)" -gt 90 ]; then
    log "bench: $models"
    MGC_BENCH_MODELS="$models" MGC_BENCH_PROFILE="$profile" MGC_BENCH_WORK="$repo/bench-work" \
        timeout $(($(left) - 25)) bash bench/comfyui/gpu.sh "$all/bench" $(($(left) - 75)) > "$all/bench-stdout.txt" 2>&1
    log "bench: exit $?"
fi
if [[ "$parts" == *" tests "* ]] && [ "$(left)" -gt 40 ]; then
    log "tests: runtime and node pack core on the GPU"
    MGC_GPU_CHECK="tests core" timeout $(($(left) - 15)) bash device-run/gpu-check.sh "$all/tests" \
        > "$all/tests-stdout.txt" 2>&1
    log "tests: exit $?"
fi
log "done"
cp "$all/check/summary.txt" "$out/check.txt" 2>/dev/null
cp "$all/check/kernels.txt" "$out/kernels.txt" 2>/dev/null
cp "$all/bench/results.md" "$all/bench/results.json" "$out/" 2>/dev/null
tar czf "$out/all.tgz" -C "$all" . 2>/dev/null
rm -rf "$all"
