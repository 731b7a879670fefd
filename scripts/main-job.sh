#!/usr/bin/env bash
# The main job: build mgc and its runtime, make the example models (header-only files generated
# from tensor inventories, and a small model with real random weights), then check, compile and
# explain every example, measure this machine, and run the tiny CPU example with libtorch,
# measured against predicted. Plans and pictures go to examples/plans/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup-python.sh
cargo build --release --locked -p mgc --features torch
mgc="$here/target/release/mgc"
bash scripts/make-example-models.sh "$mgc"
# The tiny example runs for real: its model gets real (seeded random) weights.
"$mgc" synth-model tests/fixtures/models/tiny_flux.json -o examples/models/tiny_flux.safetensors --random --seed 1
mkdir -p examples/plans

echo "== mgc inspect examples/models/flux1-dev.safetensors"
"$mgc" inspect examples/models/flux1-dev.safetensors
for workflow in examples/*.toml; do
    name="$(basename "$workflow" .toml)"
    echo
    echo "== mgc check $workflow"
    "$mgc" check "$workflow"
    echo
    echo "== mgc compile $workflow -o examples/plans/$name.plan.json"
    "$mgc" compile "$workflow" -o "examples/plans/$name.plan.json"
    "$mgc" explain "examples/plans/$name.plan.json" --svg "examples/plans/$name.svg" | tail -n 1
done
echo
echo "== mgc explain examples/wan22-high-low-noise.toml --stage budgets"
"$mgc" explain examples/wan22-high-low-noise.toml --stage budgets
echo
echo "== mgc sweep examples/flux-dev-two-gpus.toml --model flux --svg examples/plans/flux-sweep.svg"
"$mgc" sweep examples/flux-dev-two-gpus.toml --model flux --svg examples/plans/flux-sweep.svg
echo
echo "== mgc check --allocation 'cuda:0,2.5gb;cuda:1,3g;cpu,*'"
"$mgc" check --allocation 'cuda:0,2.5gb;cuda:1,3g;cpu,*'

echo
echo "== mgc probe -o examples/plans/this-machine.toml"
"$mgc" probe -o examples/plans/this-machine.toml
# The tiny example again, with this machine's measured figures, then run.
cat > examples/plans/tiny-cpu-probed.toml <<'TOML'
# The tiny CPU example, planned with this machine's measured figures (`mgc probe`).
profile = "this-machine.toml"

[[device]]
name = "cpu"
memory = "4gb"

[[model]]
name = "tiny-flux"
file = "../models/tiny_flux.safetensors"
compute = "cpu"
allocation = "cpu,50%;disk,*"

[workload]
tokens = 256

[schedule]
prefetch = 1
TOML
echo
echo "== mgc compile examples/plans/tiny-cpu-probed.toml"
"$mgc" compile examples/plans/tiny-cpu-probed.toml -o examples/plans/tiny-cpu-probed.plan.json | head -n 8
echo
echo "== mgc run examples/plans/tiny-cpu-probed.plan.json --steps 40"
# 40 steps, some 16 seconds: a shared machine runs fast and slow for seconds at a time, and the
# probe's figures are means over some 20 seconds of such spells.
"$mgc" run examples/plans/tiny-cpu-probed.plan.json --steps 40
