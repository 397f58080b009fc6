#!/usr/bin/env bash
# Install what SISO needs for the ComfyUI node pack (Linux / macOS).
#
#   ./install.sh                 into ComfyUI's Python: $PYTHON if set, else python3 / python on PATH
#                                (run it with ComfyUI's venv activated). The installed torch,
#                                torchvision and torchaudio are pinned while installing, so they stay.
#   ./install.sh --venv DIR      a SEPARATE environment for SISO in DIR (recommended when ComfyUI's
#                                packages conflict); then set the node's python_executable to the
#                                python it prints. Add --torch-index-url URL for a specific CUDA build.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
VENV=""
TORCH_INDEX=""
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="$2"; shift 2 ;;
    --torch-index-url) TORCH_INDEX="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then command -v "$candidate"; return; fi
  done
  echo "install.sh: no python found: set PYTHON=/path/to/ComfyUI/venv/bin/python" >&2
  exit 1
}

PY="$(pick_python)"

if [ -n "$VENV" ]; then
  "$PY" -m venv "$VENV"
  VPY="$VENV/bin/python"
  "$VPY" -m pip install --upgrade pip
  if [ -n "$TORCH_INDEX" ]; then
    "$VPY" -m pip install torch torchvision --index-url "$TORCH_INDEX"
  else
    "$VPY" -m pip install torch torchvision
  fi
  if [ -f "$HERE/../siso_lib/generate.py" ] && [ -f "$HERE/../pyproject.toml" ]; then
    "$VPY" -m pip install -e "$HERE/.."          # this pack lives in a siso-lab checkout: install the library
  else
    "$VPY" -m pip install -r "$HERE/requirements.txt"
  fi
  echo
  echo "SISO environment ready. In the SISO LoRA Generator node set python_executable to:"
  echo "  $(cd "$VENV" && pwd -P)/bin/python"
  exit 0
fi

PINS="$(mktemp)"
trap 'rm -f "$PINS"' EXIT
"$PY" - "$PINS" <<'PYCODE'
import importlib.metadata as metadata, sys
pins = []
for name in ("torch", "torchvision", "torchaudio"):
    try:
        pins.append(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        if name == "torch":
            sys.exit("install.sh: torch is not installed in this Python: is it ComfyUI's? (set PYTHON=...)")
open(sys.argv[1], "w").write("\n".join(pins) + "\n")
print("keeping " + ", ".join(pins))
PYCODE
"$PY" -m pip install -r "$HERE/requirements.txt" -c "$PINS"
echo "Done. Restart ComfyUI. (Download ir_features.pth by hand: see README.md.)"
