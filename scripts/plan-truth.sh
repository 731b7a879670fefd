#!/usr/bin/env bash
# The plan-truth benchmark: how far this machine's runs are from what their plans predict. Probes
# the machine, then compiles and runs every workflow it can run here (the small real models on
# the CPU: all resident, half or most or all read from the model file every step) with the
# probed profile, and prints measured/predicted for the step and for each device's peak. A plan
# must never predict a peak below what the run measures; the step should be within 0.9-1.1.
# The last column, "machine": the CPU's matmul figure as `mgc run` times it right after the
# steps, over the profile's (1.00: the machine as the probe found it).
# Then `mgc sweep` of each model from nothing to all of it on the CPU (the rest on disk), and
# `mgc run` of the plan compiled at each of its budgets: the sweep's predicted step against the
# measured one, which should agree within 10%.
# Each run takes as many steps as its plan predicts fill SECONDS (10 at least): a shared machine
# runs fast and slow for seconds at a time, and a run of two seconds measures one spell of it.
# Usage: plan-truth.sh [MGC] [SECONDS] (MGC defaults to the release build, SECONDS to 12; writes
# under target/).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mgc="${1:-$here/target/release/mgc}"
seconds="${2:-12}"
# Steps that fill $seconds at the predicted step of the plan $1, 10 at least.
steps_for() {
    python3 - "$1" "$seconds" <<'PY'
import json, math, sys
step = json.load(open(sys.argv[1]))["predicted"]["step_seconds"]
print(max(10, math.ceil(float(sys.argv[2]) / step)) if step > 0 else 10)
PY
}
work="$here/target/plan-truth"
mkdir -p "$work"
cd "$work"
for model in tiny_flux tiny_wan21; do
    [ -s "$model.safetensors" ] ||
        "$mgc" synth-model "$here/tests/fixtures/models/$model.json" -o "$model.safetensors" --random --seed 1 >/dev/null
done
"$mgc" probe -o profile.toml | grep -E 'warning|runtime memory' || true

printf '%-28s %10s %10s %8s   %10s %10s %8s   %8s\n' workflow "step ms" predicted ratio "peak MiB" predicted ratio machine
fail=0
for model in tiny_flux tiny_wan21; do
    for allocation in "cpu,*" "cpu,50%;disk,*" "cpu,20%;disk,*" "disk,*"; do
        name="$model-$(echo "$allocation" | tr -c 'a-z0-9\n' '-')"
        cat >"$name.toml" <<TOML
profile = "profile.toml"
[[device]]
name = "cpu"
memory = "4gb"
[[model]]
name = "$model"
file = "$model.safetensors"
compute = "cpu"
allocation = "$allocation"
[workload]
tokens = 256
[schedule]
prefetch = 1
TOML
        "$mgc" compile "$name.toml" -o "$name.plan.json" >/dev/null 2>&1 || continue
        "$mgc" run "$name.plan.json" --steps "$(steps_for "$name.plan.json")" --format json >"$name.run.json"
        python3 - "$name" "$name.run.json" <<'PY' || fail=1
import json, sys
name, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
step, predicted = r["measured_step_seconds"], r["predicted_step_seconds"]
cpu = next(d for d in r["devices"] if d["name"] == "cpu")
peak, peak_predicted = cpu["peak_bytes_measured"], cpu["peak_bytes_predicted"]
# The CPU's matmul figure timed right after the steps, over the profile's: how far the machine
# moved since the probe (a step ratio off by as much is the machine's, not the plan's).
machine = next(m for m in r["machine"] if m["device"] == "cpu")
drift = machine["measured_flops_per_second"] / machine["planned_flops_per_second"]
print(f"{name:<28} {step * 1e3:10.2f} {predicted * 1e3:10.2f} {step / predicted:8.2f}   "
      f"{peak / 2**20:10.2f} {peak_predicted / 2**20:10.2f} {peak / peak_predicted:8.3f}   {drift:8.2f}")
sys.exit(0 if peak <= peak_predicted else 1)
PY
    done
done

echo
printf '%-28s %10s %10s %10s %8s   %8s\n' sweep budget "step ms" "sweep ms" ratio machine
for model in tiny_flux tiny_wan21; do
    base="$model-cpu-50--disk--"
    "$mgc" sweep "$base.toml" --model "$model" --points 4 --format json >"$model.sweep.json"
    python3 - "$model.sweep.json" <<'PY' >"$model.budgets"
import json, sys
for p in json.load(open(sys.argv[1]))["points"]:
    print(p["budget_bytes"], p["step_seconds"])
PY
    while read -r budget predicted; do
        name="$model-sweep-$budget"
        allocation="cpu,${budget}b;disk,*"
        [ "$budget" = 0 ] && allocation="disk,*"
        sed "s/^allocation = .*/allocation = \"$allocation\"/" "$base.toml" >"$name.toml"
        "$mgc" compile "$name.toml" -o "$name.plan.json" >/dev/null
        "$mgc" run "$name.plan.json" --steps "$(steps_for "$name.plan.json")" --format json >"$name.run.json"
        python3 - "$model" "$budget" "$predicted" "$name.run.json" <<'PY'
import json, sys
model, budget, predicted, path = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
r = json.load(open(path))
step = r["measured_step_seconds"]
machine = next(m for m in r["machine"] if m["device"] == "cpu")
drift = machine["measured_flops_per_second"] / machine["planned_flops_per_second"]
print(f"{model:<28} {budget / 2**20:7.2f} MiB {step * 1e3:10.2f} {predicted * 1e3:10.2f} {step / predicted:8.2f}"
      f"   {drift:8.2f}")
PY
    done <"$model.budgets"
done
[ "$fail" = 0 ] || { echo "plan-truth: a measured peak is above its prediction" >&2; exit 1; }
