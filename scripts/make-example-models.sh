#!/usr/bin/env bash
# Makes the model files the examples use (examples/models.txt) as header-only safetensors files:
# real headers, sparse data, so a "23 GB" Flux costs ~100 KB of disk. Usage: make-example-models.sh MGC [DIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mgc="$1"
out="${2:-$here/examples/models}"
mkdir -p "$out"
grep -v '^#' "$here/examples/models.txt" | while read -r file inventory; do
    [ -n "$file" ] || continue
    [ -s "$out/$file" ] || "$mgc" synth-model "$here/tests/fixtures/models/$inventory.json" -o "$out/$file" >/dev/null
done
