#!/usr/bin/env bash
# Everything scripts/gpu-all.sh needs on a GPU machine (torch there, no network, no cargo), in
# device-run/ (git-ignored), within the 64 MiB that a copy of the repository may carry there:
# the release binaries and the runtime's test binaries (prepare-gpu-check.sh), the benchmark's
# checkouts and wheels with the `mgc` package built stripped (prepare-bench.sh), one set of wheels
# for every part.
#   MGC_COMFYUI=... MGC_COMFYUI_MULTIGPU=... MGC_COMFYUI_GGUF=... [MGC_COMFYUI_COMMIT=...] \
#       scripts/prepare-gpu-all.sh
#   then, on the GPU machine, from the repository root: bash scripts/gpu-all.sh OUT [SECONDS]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
( unset MGC_COMFYUI MGC_COMFYUI_GGUF; bash scripts/prepare-gpu-check.sh )
bash scripts/prepare-bench.sh
rm -rf device-run/wheels  # gpu-all.sh installs device-run/bench/wheels for every part
tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1)
carried=$(du -sb device-run | cut -f1)
total=$((tree + carried))
echo "the repository ($tree bytes) and device-run/ ($carried bytes): $total bytes of the 67108864 that may travel"
if [ "$total" -gt 67108864 ]; then
    echo "error: too large to travel; leave something out of device-run/" >&2
    exit 1
fi
