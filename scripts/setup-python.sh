#!/usr/bin/env bash
# Set up mgc's Python environment: torch 2.11.0 (the libtorch the runtime links against, see
# the README) and the test tools (pytest, gguf for writing real GGUF fixtures).
#
# The `mgc` Python package is this clone's own build, so it lives in `.venv-mgc`, a small
# environment of this clone layered over the shared one (a `.pth` file adds the shared
# site-packages) that also holds maturin, which builds the package (`scripts/test.sh` does).
#
# The environment lives in a shared place keyed by the torch version, so that a fresh clone on
# the same machine reuses it (a full torch install is ~2.7 GB of download); `.venv` in the
# repository is a link to it. Idempotent: does nothing when the right versions are present.
set -euo pipefail

TORCH_VERSION=2.11.0
GGUF_VERSION=0.19.0
JSONSCHEMA_VERSION=4.26.0
MATURIN_VERSION=1.16.0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MGC_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mgc/venv-torch-${TORCH_VERSION}}"
python="${PYTHON:-python3}"

have() {
    "$venv/bin/python" - "$@" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
torch_v, gguf_v, jsonschema_v = sys.argv[1], sys.argv[2], sys.argv[3]
ok = (version("torch").split("+")[0] == torch_v and version("gguf") == gguf_v and version("pytest")
      and version("jsonschema") == jsonschema_v)
sys.exit(0 if ok else 1)
PY
}

if ! have "$TORCH_VERSION" "$GGUF_VERSION" "$JSONSCHEMA_VERSION"; then
    echo "setup: installing torch ${TORCH_VERSION}, gguf ${GGUF_VERSION}, pytest into ${venv} (first time only)" >&2
    mkdir -p "$(dirname "$venv")"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "torch==${TORCH_VERSION}" "gguf==${GGUF_VERSION}" "jsonschema==${JSONSCHEMA_VERSION}" "pytest>=8" numpy
    have "$TORCH_VERSION" "$GGUF_VERSION" "$JSONSCHEMA_VERSION" || { echo "setup: torch ${TORCH_VERSION} did not install into ${venv}" >&2; exit 2; }
fi

# `.venv` in the repository points at the shared environment.
if [ ! -e "$here/.venv" ] || [ -L "$here/.venv" ]; then
    ln -sfn "$venv" "$here/.venv"
fi
echo "setup: python environment ready ($("$here/.venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))" >&2

# `.venv-mgc`: this clone's environment over the shared one, with maturin.
local_venv="$here/.venv-mgc"
shared_site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
if [ ! -x "$local_venv/bin/python" ]; then
    "$venv/bin/python" -m venv "$local_venv"
fi
local_site="$("$local_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
[ "$(cat "$local_site/mgc-shared.pth" 2>/dev/null)" = "$shared_site" ] || echo "$shared_site" >"$local_site/mgc-shared.pth"
if [ "$("$local_venv/bin/maturin" --version 2>/dev/null)" != "maturin ${MATURIN_VERSION}" ]; then
    echo "setup: installing maturin ${MATURIN_VERSION} into ${local_venv}" >&2
    "$local_venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin==${MATURIN_VERSION}"
fi
