#!/usr/bin/env bash
# The GPU checks, in one go, for a machine with a GPU and torch 2.11 installed (no cargo there):
#   scripts/prepare-gpu-check.sh                 # here: builds everything into device-run/
#   (on the GPU machine, in the repository root) bash device-run/gpu-check.sh OUT_DIR
# 1. the runtime's tests on CUDA (every plan and copy engine computes the same bits; GGUF blocks
#    dequantized on the GPU as the reference reader does, and GGUF models under plans);
# 2. the node pack's core on CUDA (pytest: side-stream prefetch, outputs equal the plain model's,
#    the `mgc` logger timing the side stream's copies with CUDA events),
#    and, when prepared with a ComfyUI checkout, the nodes inside ComfyUI computing on the GPU;
# 3. `mgc probe`, then Wan 2.1 1.3B (2.8 GB of real random BF16 weights) on a GPU budget of half
#    its size: all resident, streamed from RAM with the copy stream, the same with libtorch's
#    copies, and streamed from the file; step time against the plan's lower bound, copy bandwidth
#    against the probed peak, checksums equal.
# Without a GPU, step 3 runs the same shape of work on the CPU, so the script can be tried anywhere.
# Each step records its result under OUT_DIR and the script goes on; it exits non-zero if any failed.
# 4. (`kernels`) bench/kernels.py: products on a run's data against ones and zeros, attention as
#    `mgc run` computes it against fused attention, an elementwise pass and a norm, side by side.
# MGC_GPU_CHECK="tests core probe kernels wan" (the default: all) picks the steps to run; MGC_PROBE_TIMEOUT
# (seconds, default 300) bounds the probe.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
out="${1:-${OUT:-$here/out}}"
mkdir -p "$out"
torch_lib="$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null || true)"
export LD_LIBRARY_PATH="${torch_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mgc="$here/mgc"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
step() { echo "== $1 ($(date +%T))" | tee -a "$out/log.txt"; }
parts=" ${MGC_GPU_CHECK:-tests core probe kernels wan} "
part() { [[ "$parts" == *" $1 "* ]]; }

{ nvidia-smi --query-gpu=name,memory.total,pcie.link.gen.max,pcie.link.width.max --format=csv 2>&1 || echo "no nvidia-smi"; } > "$out/gpu.txt"
cat "$out/gpu.txt"

# Python packages the tests need beyond torch and pytest, where this Python lacks them.
site="$work/site${PYTHONPATH:+:$PYTHONPATH}"
py="${PYTHON:-python3}"
if [ -d "$here/wheels" ] && ! "$py" -c 'import jsonschema, av, torchsde, gguf, mgc' 2>/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" "$here"/wheels/*.whl \
        >> "$out/log.txt" 2>&1
fi

part tests && step "runtime tests"
part tests && for t in run gguf; do
    if MGC_RUN="$here/mgc-run" MGC_PYTHON="$py" PYTHONPATH="$site" CARGO_MANIFEST_DIR="$repo/cli" \
        "$here/$t-tests" --test-threads 1 --nocapture > "$out/runtime-tests-$t.txt" 2>&1; then
        echo "runtime tests ($t) passed" | tee -a "$out/log.txt"
    else
        echo "runtime tests ($t) FAILED" | tee -a "$out/log.txt"; failed=1
    fi
    grep -E "^test |streams\)|torch\)|skipped" "$out/runtime-tests-$t.txt" | tee -a "$out/log.txt"
done

part core && step "node pack core"
part core && if (cd "$repo" && PYTHONPATH="$site" "$py" -m pytest -q -rs -p no:cacheprovider comfyui/tests/test_core.py comfyui/tests/test_telemetry.py) \
    > "$out/pytest.txt" 2>&1; then
    echo "node pack tests passed" | tee -a "$out/log.txt"
else
    echo "node pack tests FAILED" | tee -a "$out/log.txt"; failed=1
fi
part core && tail -n 5 "$out/pytest.txt" | tee -a "$out/log.txt"

if part core && [ -f "$here/comfyui.tgz" ]; then
    step "node pack inside ComfyUI"
    tar xzf "$here/comfyui.tgz" -C "$work"
    gguf_nodes=""
    if [ -f "$here/comfyui-gguf.tgz" ]; then
        tar xzf "$here/comfyui-gguf.tgz" -C "$work"; gguf_nodes="$work/ComfyUI-GGUF"
    fi
    device="cpu"
    "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null && device="cuda:0"
    if (cd "$repo" && PYTHONPATH="$site" MGC_COMFYUI="$work/ComfyUI" MGC_COMFYUI_GGUF="$gguf_nodes" \
        MGC_COMFYUI_DEVICE="$device" MGC_TINY="$work/no-fixtures" \
        "$py" -m pytest -q -rs -p no:cacheprovider comfyui/tests/test_comfyui.py) > "$out/pytest-comfyui.txt" 2>&1; then
        echo "node pack tests inside ComfyUI ($device) passed" | tee -a "$out/log.txt"
    else
        echo "node pack tests inside ComfyUI ($device) FAILED" | tee -a "$out/log.txt"; failed=1
    fi
    tail -n 5 "$out/pytest-comfyui.txt" | tee -a "$out/log.txt"
fi

if part probe; then
    step "probe"
    timeout "${MGC_PROBE_TIMEOUT:-300}" "$mgc" probe -o "$work/profile.toml" --format json > "$out/probe.json" \
        2>> "$out/log.txt" || failed=1
    cp "$work/profile.toml" "$out/profile.toml" 2>/dev/null
fi
if part kernels; then
    step "kernels"
    (cd "$repo" && PYTHONPATH="$site" timeout 120 "$py" -m bench.kernels --json "$out/kernels.json") \
        > "$out/kernels.txt" 2>&1 || { echo "kernels FAILED" | tee -a "$out/log.txt"; failed=1; }
    cat "$out/kernels.txt"
fi
part wan || { echo "failed=$failed" | tee -a "$out/log.txt"; exit "$failed"; }

step "wan 1.3B"
[ -f "$work/profile.toml" ] || cp "$out/profile.toml" "$work/profile.toml" 2>/dev/null
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    compute="cuda:0"; budget="cuda:0,1400mb"; spill="cpu"; tokens=4096
else
    compute="cpu"; budget="cpu,1400mb"; spill="disk"; tokens=64
fi
"$mgc" synth-model "$here/inventories/wan2.1_t2v_1.3B_bf16.json" -o "$work/wan.safetensors" --random > /dev/null || failed=1
plan() { # name allocation
    cat > "$work/$1.toml" <<TOML
profile = "profile.toml"

[[model]]
name = "wan"
file = "wan.safetensors"
compute = "$compute"
allocation = "$2"

[workload]
tokens = $tokens

[schedule]
prefetch = "auto"
TOML
    "$mgc" compile "$work/$1.toml" -o "$work/$1.plan.json" > "$out/explain-$1.txt" 2>&1 || failed=1
    cp "$work/$1.plan.json" "$out/" 2>/dev/null
}
plan resident "$compute,*"
plan ram "$budget;$spill,*"
plan file "$budget;disk,*"
"$mgc" run "$work/ram.plan.json" --steps 20 > "$out/run-ram-human.txt" 2>&1 || failed=1
for run in "resident streams" "ram streams" "ram torch" "file streams"; do
    set -- $run
    "$mgc" run "$work/$1.plan.json" --steps 20 --copies "$2" --format json > "$out/run-$1-$2.json" 2>> "$out/log.txt" \
        || { echo "run $1 $2 FAILED" | tee -a "$out/log.txt"; failed=1; }
done
python3 - "$out" <<'PY' | tee "$out/summary.txt"
import json, os, sys
out = sys.argv[1]
probe = json.load(open(f"{out}/probe.json")) if os.path.exists(f"{out}/probe.json") else {"figures": []}
for f in probe["figures"]:
    print(f"probe {f['what']}: {f['value']:.2f} {f['unit']}")
sums = set()
for name in ["resident-streams", "ram-streams", "ram-torch", "file-streams"]:
    path = f"{out}/run-{name}.json"
    try:
        run = json.load(open(path))
        plan = json.load(open(f"{out}/{name.split('-')[0]}.plan.json"))
    except Exception as e:
        print(f"{name}: no report ({e})")
        continue
    m, p = run["measured_step_seconds"], run["predicted_step_seconds"]
    bound = plan["predicted"]["lower_bound_seconds"]
    print(f"{name}: step {m*1e3:.2f} ms, predicted {p*1e3:.2f} ms (ratio {m/p:.2f}), lower bound {bound*1e3:.2f} ms "
          f"(step/bound {m/bound:.2f}), copies hidden {run['hidden_copy_fraction']:.0%} "
          f"(predicted {run['hidden_copy_fraction_predicted']:.0%}), load {run['load_seconds']:.2f} s")
    for link in run["links"]:
        print(f"  link {link['from']} -> {link['to']}: {link['gbps']:.2f} GB/s, {link['bytes']} bytes")
    for d in run["devices"]:
        print(f"  {d['name']}: peak measured {d['peak_bytes_measured']}, predicted {d['peak_bytes_predicted']}")
    sums.add(run["models"][0]["checksum"])
print(f"checksums equal across runs: {len(sums) == 1} ({len(sums)} distinct)")
PY
echo "failed=$failed" | tee -a "$out/log.txt"
exit "$failed"
