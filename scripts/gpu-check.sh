#!/usr/bin/env bash
# The runtime's GPU check, in one go, for a machine with a GPU and torch 2.11 installed (no cargo):
# probe the machine, then run a model twice its GPU budget, streamed with prefetch, and record the
# step against its lower bound and the copy bandwidth against the probed peak.
#   scripts/prepare-gpu-check.sh        # here: builds the binaries into device-run/
#   (on the GPU machine) bash device-run/gpu-check.sh OUT_DIR
# Without a GPU it runs the same on the CPU, so the script itself can be tried anywhere.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-${OUT:-$here/out}}"
mkdir -p "$out"
torch_lib="$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null || true)"
export LD_LIBRARY_PATH="${torch_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mgc="$here/mgc"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$mgc" probe -o "$work/profile.toml" --format json > "$out/probe.json"
cp "$work/profile.toml" "$out/profile.toml"

if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    compute="cuda:0"; allocation="cuda:0,1400mb;cpu,*"; tokens=4096
else
    # No GPU: the same shape of run on the CPU, the rest streamed from the file.
    compute="cpu"; allocation="cpu,1400mb;disk,*"; tokens=64
fi
# Wan 2.1 1.3B (2.8 GB of BF16 weights, real random values) on a budget of half of it.
"$mgc" synth-model "$here/inventories/wan2.1_t2v_1.3B_bf16.json" -o "$work/wan.safetensors" --random > /dev/null
cat > "$work/wan.toml" <<TOML
profile = "profile.toml"

[[model]]
name = "wan"
file = "wan.safetensors"
compute = "$compute"
allocation = "$allocation"

[workload]
tokens = $tokens

[schedule]
prefetch = "auto"
TOML
"$mgc" compile "$work/wan.toml" -o "$work/wan.plan.json" > "$out/explain.txt"
"$mgc" run "$work/wan.plan.json" --steps 6 --format json > "$out/run.json"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
run = json.load(open(f"{out}/run.json"))
plan_step = run["predicted_step_seconds"]
lines = [
    f"compute: {run['devices'][0]['name']}",
    f"step measured {run['measured_step_seconds']:.4f} s, predicted {plan_step:.4f} s, ratio {run['measured_step_seconds'] / plan_step:.2f}",
    f"copies hidden {run['hidden_copy_fraction']:.0%} (predicted {run['hidden_copy_fraction_predicted']:.0%})",
]
for link in run["links"]:
    lines.append(f"link {link['from']} -> {link['to']}: {link['gbps']:.2f} GB/s over {link['bytes']} bytes")
probe = json.load(open(f"{out}/probe.json"))
for f in probe["figures"]:
    if "->" in f["what"] or "matmul BF16" == f["what"][-11:]:
        lines.append(f"probe {f['what']}: {f['value']:.2f} {f['unit']}")
open(f"{out}/summary.txt", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
