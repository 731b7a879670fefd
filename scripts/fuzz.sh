#!/usr/bin/env bash
# Fuzzes every parser with cargo-fuzz (libFuzzer): allocation strings, workflow files (parse,
# resolve, compile), safetensors and GGUF headers, plans. Seeds come from the test fixtures.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 600 s, every target)
# Needs `cargo install cargo-fuzz`; runs on the stable toolchain through RUSTC_BOOTSTRAP.
# Each target ends with a line of libFuzzer's figures in fuzz/logs/TARGET.log.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(allocation workflow safetensors gguf plan)
export RUSTC_BOOTSTRAP=1

cargo build --release --locked -p mgc
mgc="$here/target/release/mgc"
seeds="$here/fuzz/seeds"
rm -rf "$seeds"
mkdir -p "$seeds"/{allocation,workflow,safetensors,gguf,plan} fuzz/logs

# Allocation strings: the snapshot corpus, a file each.
i=0
grep -v '^#' cli/tests/corpus/allocations.txt | while IFS= read -r line; do
    i=$((i + 1)); printf '%s' "$line" > "$seeds/allocation/$i"
done
# Workflows: the broken corpus and the examples.
cp cli/tests/workflows/*.toml examples/*.toml "$seeds/workflow/"
# safetensors: headers of small header-only models (their data cut off).
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for inventory in tiny_flux clip_l flux_ae wan_2.1_vae; do
    "$mgc" synth-model "tests/fixtures/models/$inventory.json" -o "$tmp/$inventory.safetensors" >/dev/null
    python3 - "$tmp/$inventory.safetensors" "$seeds/safetensors/$inventory" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read(8)
n = struct.unpack("<Q", data)[0]
with open(sys.argv[1], "rb") as f, open(sys.argv[2], "wb") as out:
    out.write(f.read(8 + n))
PY
done
# GGUF: small files from the reference writer.
bash scripts/setup-python.sh >/dev/null 2>&1
.venv/bin/python tests/gguf/make_gguf.py "$tmp/gguf" >/dev/null
cp "$tmp/gguf/aligned-64.gguf" "$tmp/gguf/every-type.gguf" "$seeds/gguf/"
# Plans: the tiny example's.
bash scripts/make-example-models.sh "$mgc" "$tmp/models" >/dev/null
cp examples/tiny-cpu.toml "$tmp/"
(cd "$tmp" && "$mgc" compile tiny-cpu.toml -o "$seeds/plan/tiny.plan.json" >/dev/null)

declare -A max_len=([allocation]=256 [workflow]=8192 [safetensors]=65536 [gguf]=131072 [plan]=131072)
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    echo "== fuzzing $target for ${seconds}s"
    (cd fuzz && cargo fuzz run -O "$target" "corpus/$target" "../fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=512 -timeout=10 -max_len="${max_len[$target]}" \
        -print_final_stats=1) > "fuzz/logs/$target.log" 2>&1
    grep -E "^#[0-9]+.*(DONE|pulse)" "fuzz/logs/$target.log" | tail -n 1
    grep -E "stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" "fuzz/logs/$target.log" || true
done
