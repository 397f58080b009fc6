#!/usr/bin/env bash
# The whole GPU check in one short job (device time is scarce): install the carried wheels of the
# tested versions into the machine's Python (no network there), smoke-test on tiny models, then
# run the full-size benchmark. Prepare the wheels first on a machine with PyPI access:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#     -d .gpu_wheels diffusers==0.42.1 transformers==5.5.4 peft==0.21.2 open_clip_torch==3.3.0 \
#     kornia==0.9.0 kornia_rs==0.2.0 timm==1.0.31 tokenizers==0.22.2 ftfy==6.3.1 wcwidth==0.9.4 \
#     pytest==8.4.2 pluggy iniconfig pygments packaging
set -uo pipefail
OUT=${OUT:-/tmp/siso-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
if [ -d .gpu_wheels ]; then
  $PY -m pip install --quiet --no-deps --no-index .gpu_wheels/*.whl 2>&1 | tail -3
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY - <<'PY'
import torch, diffusers, transformers, peft, timm, open_clip, kornia
print("torch", torch.__version__, "diffusers", diffusers.__version__, "transformers", transformers.__version__,
      "peft", peft.__version__, "timm", timm.__version__, "open_clip", open_clip.__version__, "kornia", kornia.__version__)
PY
echo "== CUDA graph: a tiny run replayed as a graph follows the eager one"
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_cuda_graphs.py 2>&1 | tail -5
echo "== smoke: tiny models on the GPU"
timeout 120 $PY benchmarks/bench_step.py --size tiny --steps 2 --warmup 3 --modes default,low-memory \
  --text-encoder on --out "$OUT" --tag gpu-smoke 2>&1 | tail -5 || { echo "smoke failed"; exit 1; }
echo "== full-size benchmark"
$PY benchmarks/bench_step.py --size full --resolution 512 --steps 5 --warmup 3 \
  --budget-seconds "${BUDGET:-300}" 2>&1 | tee "$OUT/bench.log"
cp benchmarks/results/gpu-* "$OUT/" 2>/dev/null || true
