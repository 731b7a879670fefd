#!/usr/bin/env bash
# Packs what bench/comfyui/gpu.sh needs on a GPU machine that has torch but no network and no
# cargo, into device-run/bench/ (git-ignored): the `mgc` Python package as a wheel (built here, or
# MGC_WHEEL naming one already built), the wheels ComfyUI, ComfyUI-GGUF and the node pack import
# that a plain torch machine may lack (for Python 3.12), and the three checkouts the benchmark
# drives, named by MGC_COMFYUI, MGC_COMFYUI_MULTIGPU and MGC_COMFYUI_GGUF (without `.git`; each
# commit is kept beside its archive: from its `.git`, or MGC_COMFYUI_COMMIT and the like). No model
# travels: the benchmark writes its models there.
#
#   MGC_COMFYUI=... MGC_COMFYUI_MULTIGPU=... MGC_COMFYUI_GGUF=... scripts/prepare-bench.sh
#   copy the repository with device-run/bench/ to the GPU machine, then from its root:
#   bash bench/comfyui/gpu.sh OUT_DIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
for var in MGC_COMFYUI MGC_COMFYUI_MULTIGPU MGC_COMFYUI_GGUF; do
    if [ -z "${!var:-}" ] || [ ! -d "${!var}" ]; then
        echo "error: set $var to its checkout (ComfyUI, ComfyUI-MultiGPU, ComfyUI-GGUF)" >&2
        exit 2
    fi
done
bash scripts/setup-python.sh
prep=device-run/bench
rm -rf "$prep" && mkdir -p "$prep/wheels"
if [ -n "${MGC_WHEEL:-}" ]; then
    cp "$MGC_WHEEL" "$prep/wheels/"
else
    # The compiler as the Python package (abi3: any Python >= 3.10).
    .venv-mgc/bin/maturin build --quiet --release --strip --locked -m python/Cargo.toml -o "$prep/wheels"
fi
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$prep/wheels" jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 \
    gguf==0.19.0 av==19.0.2 torchsde==0.2.6 trampoline==0.1.2
pack() { # CHECKOUT NAME COMMIT: the checkout as NAME.tgz, its commit in NAME.commit (COMMIT where
    # given, for a checkout without `.git`)
    tar czf "$prep/$2.tgz" --exclude=.git --exclude=tests --exclude=tests-unit --exclude=__pycache__ \
        --exclude=script_examples --exclude=assets --exclude=example_workflows \
        -C "$(dirname "$1")" "$(basename "$1")" --transform "s|^$(basename "$1")|$2|"
    if [ -n "$3" ]; then
        echo "$3" > "$prep/$2.commit"
    elif [ -e "$1/.git" ]; then
        git -C "$1" rev-parse --short HEAD > "$prep/$2.commit"
    else
        rm -f "$prep/$2.commit"
    fi
}
pack "$MGC_COMFYUI" ComfyUI "${MGC_COMFYUI_COMMIT:-}"
pack "$MGC_COMFYUI_MULTIGPU" ComfyUI-MultiGPU "${MGC_COMFYUI_MULTIGPU_COMMIT:-}"
pack "$MGC_COMFYUI_GGUF" ComfyUI-GGUF "${MGC_COMFYUI_GGUF_COMMIT:-}"
git rev-parse --short HEAD > "$prep/mgc.commit"
du -sh "$prep"
echo "$prep/ is ready: run \`bash bench/comfyui/gpu.sh OUT_DIR\` on the GPU machine, from the repository root"
