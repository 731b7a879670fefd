#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh needs into device-run/ (git-ignored): the release binaries, the
# inventory it synthesises a model from, and the script itself.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup-python.sh
cargo build --release --locked -p mgc -p mgc-runtime
rm -rf device-run && mkdir -p device-run/inventories
cp target/release/mgc target/release/mgc-run scripts/gpu-check.sh device-run/
cp tests/fixtures/models/wan2.1_t2v_1.3B_bf16.json device-run/inventories/
echo "device-run/ is ready: run \`bash device-run/gpu-check.sh OUT_DIR\` on the GPU machine"
