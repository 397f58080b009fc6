#!/usr/bin/env bash
# Install siso-lab for the SISO ComfyUI nodes (Linux / macOS). Runs install.py with ComfyUI's Python:
# $PYTHON if set, else python3 / python on PATH (run it with ComfyUI's venv activated).
#
#   ./install.sh                 into ComfyUI's Python. pip's plan is checked first: if it would change a
#                                package that is already installed, nothing is installed, the changes are
#                                listed and the --venv command is printed (--allow-changes goes ahead).
#                                torch, torchvision and torchaudio are never changed.
#   ./install.sh --venv DIR      a SEPARATE environment for SISO in DIR; the node uses it whenever its
#                                python_executable is empty. Add --torch-index-url URL for a CUDA build.
#   ./install.sh --dry-run       only list what would be installed or changed.
# More: ./install.sh --help (install.py's options).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"  # not -P: a pack symlinked into custom_nodes/ keeps that path (install.py finds ComfyUI's user folder by it)

pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then command -v "$candidate"; return; fi
  done
  echo "install.sh: no python found: set PYTHON=/path/to/ComfyUI/venv/bin/python" >&2
  exit 1
}

PY="$(pick_python)"
exec "$PY" "$HERE/install.py" "$@"
