#!/usr/bin/env bash
# The main job: build mgc, make the example models (header-only files it generates itself from
# tensor inventories), read one, then check, compile and explain every example workflow. Plans
# and their pictures go to examples/plans/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup-python.sh
cargo build --release --locked -p mgc
mgc="$here/target/release/mgc"
bash scripts/make-example-models.sh "$mgc"
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
echo "== mgc check --allocation 'cuda:0,2.5gb;cuda:1,3g;cpu,*'"
"$mgc" check --allocation 'cuda:0,2.5gb;cuda:1,3g;cpu,*'
