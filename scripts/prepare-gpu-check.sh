#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh needs into device-run/ (git-ignored): the release binaries, the
# runtime's test binary, the inventory it synthesises a model from, the Python wheels the node
# pack's tests need beyond torch and pytest (for Python 3.12; the `mgc` package among them), and the script itself.
# With MGC_COMFYUI (a ComfyUI checkout) and optionally MGC_COMFYUI_GGUF (a ComfyUI-GGUF checkout)
# set, those are packed too, with the wheels ComfyUI imports that a plain torch machine may lack,
# so that the node pack's ComfyUI tests run on the GPU.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup-python.sh
cargo build --release --locked -p mgc --features torch
test_binary() { # PACKAGE TEST: the release build of one integration test (`mgc`'s `run` runs mgc-run)
    cargo test --release --locked -p "$1" --features torch --test "$2" --no-run --message-format=json 2>/dev/null \
        | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$2"
}
tests="$(test_binary mgc run)"
gguf_tests="$(test_binary mgc-runtime gguf)"
rm -rf device-run && mkdir -p device-run/inventories device-run/wheels
cp target/release/mgc target/release/mgc-run scripts/gpu-check.sh device-run/
cp "$tests" device-run/run-tests
cp "$gguf_tests" device-run/gguf-tests
# Without their line tables the binaries travel in a fraction of the space.
strip --strip-debug device-run/mgc device-run/mgc-run device-run/run-tests device-run/gguf-tests
cp tests/fixtures/models/wan2.1_t2v_1.3B_bf16.json device-run/inventories/
# The compiler as the Python package the node pack imports (abi3: any Python >= 3.10).
.venv-mgc/bin/maturin build --quiet --release --locked -m python/Cargo.toml -o device-run/wheels
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d device-run/wheels jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 \
    gguf==0.19.0
if [ -n "${MGC_COMFYUI:-}" ]; then
    tar czf device-run/comfyui.tgz --exclude=.git --exclude=tests --exclude=tests-unit --exclude=__pycache__ \
        --exclude=script_examples -C "$(dirname "$MGC_COMFYUI")" "$(basename "$MGC_COMFYUI")" \
        --transform "s|^$(basename "$MGC_COMFYUI")|ComfyUI|"
    if [ -n "${MGC_COMFYUI_GGUF:-}" ]; then
        tar czf device-run/comfyui-gguf.tgz --exclude=.git -C "$(dirname "$MGC_COMFYUI_GGUF")" \
            "$(basename "$MGC_COMFYUI_GGUF")" --transform "s|^$(basename "$MGC_COMFYUI_GGUF")|ComfyUI-GGUF|"
    fi
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d device-run/wheels av==19.0.2 torchsde==0.2.6 trampoline==0.1.2
fi
du -sh device-run
echo "device-run/ is ready: run \`bash device-run/gpu-check.sh OUT_DIR\` on the GPU machine, from the repository root"
