#!/usr/bin/env bash
# The main job: build mgc, make the example models (header-only files it generates itself), read
# one of them, and check every example workflow on this machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup-python.sh
cargo build --release --locked -p mgc
mgc="$here/target/release/mgc"
bash scripts/make-example-models.sh "$mgc"

echo "== mgc inspect examples/models/flux1-dev.safetensors"
"$mgc" inspect examples/models/flux1-dev.safetensors
for workflow in examples/*.toml; do
    echo
    echo "== mgc check $workflow"
    "$mgc" check "$workflow"
done
echo
echo "== mgc check --allocation 'cuda:0,2.5gb;cuda:1,3g;cpu,*'"
"$mgc" check --allocation 'cuda:0,2.5gb;cuda:1,3g;cpu,*'
