#!/usr/bin/env bash
# The ComfyUI benchmark on a GPU machine, in one go (torch installed there; no network, no cargo):
#   scripts/prepare-bench.sh                      # here: packs device-run/bench/
#   (on the GPU machine, from the repository root) bash bench/comfyui/gpu.sh OUT_DIR [BUDGET_SECONDS]
# Installs the packed wheels into a folder of its own, unpacks ComfyUI, ComfyUI-MultiGPU and
# ComfyUI-GGUF, then runs bench/comfyui/run.py on the GPU models (Flux-dev Q8_0 GGUF, Wan 2.1 1.3B,
# Flux-dev BF16, written there with random weights) for every system and amount offloaded, within
# BUDGET_SECONDS (default 420; the runs left are listed as not run). Everything lands in OUT_DIR:
# results.json, results.md, the curves, gpu.txt, log.txt and each worker's log under jobs/.
# Without a GPU it runs the tiny models on the CPU instead, so the script can be tried anywhere.
# MGC_BENCH_MODELS names the models (default: the `gpu` set); MGC_BENCH_PROFILE a profile written
# by `mgc probe` on this machine, for mgc's predictions.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
prep="$repo/device-run/bench"
out="$(mkdir -p "${1:-$repo/bench-results}" && cd "${1:-$repo/bench-results}" && pwd)"
budget="${2:-420}"
py="${PYTHON:-python3}"
# The models (about 40 GB) and the unpacked checkouts, on the repository's disk rather than a
# /tmp that may be memory.
work="${MGC_BENCH_WORK:-$repo/bench-work}"
mkdir -p "$out/jobs" "$work"
cd "$repo"
if [ ! -d "$prep" ]; then
    echo "error: $prep is missing: run scripts/prepare-bench.sh first, and copy it with the repository" >&2
    exit 2
fi
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.max,pcie.link.width.max --format=csv \
        > "$out/gpu.txt" 2>&1
else
    echo "no nvidia-smi" > "$out/gpu.txt"
fi
cat "$out/gpu.txt"

# The packed wheels, where this Python lacks what they hold.
if ! "$py" -c 'import jsonschema, av, torchsde, trampoline, gguf, mgc' 2>/dev/null; then
    site="$work/site"
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$prep"/wheels/*.whl \
        > "$out/pip.txt" 2>&1 || { echo "error: the wheels did not install (see pip.txt)" >&2; exit 1; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
for name in ComfyUI ComfyUI-MultiGPU ComfyUI-GGUF; do
    tar xzf "$prep/$name.tgz" -C "$work"
done
commit() { cat "$prep/$1.commit" 2>/dev/null; }
export MGC_COMFYUI_COMMIT="$(commit ComfyUI)" MGC_COMFYUI_MULTIGPU_COMMIT="$(commit ComfyUI-MultiGPU)"
export MGC_COMFYUI_GGUF_COMMIT="$(commit ComfyUI-GGUF)" MGC_COMMIT="$(commit mgc)"

models="${MGC_BENCH_MODELS:-gpu}"
steps=4
if ! "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "no GPU: the tiny models on the CPU"
    models="${MGC_BENCH_MODELS:-tiny}"
    steps=3
fi
PYTHONUNBUFFERED=1 "$py" bench/comfyui/run.py --comfyui "$work/ComfyUI" --multigpu "$work/ComfyUI-MultiGPU" \
    --gguf "$work/ComfyUI-GGUF" --models "$models" --steps "$steps" --work "$work" --out "$out" \
    --budget-seconds "$budget" ${MGC_BENCH_PROFILE:+--profile "$MGC_BENCH_PROFILE"} --trace 2>&1 | tee "$out/log.txt"
status=${PIPESTATUS[0]}
cp "$work"/jobs/*.log "$work"/jobs/*.trace.json "$out/jobs/" 2>/dev/null
[ -f "$out/results.md" ] && cat "$out/results.md"
echo "status=$status"
exit "$status"
