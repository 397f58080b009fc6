#!/usr/bin/env bash
# The whole GPU check in one short job (device time is scarce): install the carried wheels of the
# tested versions into the machine's Python (no network there), smoke-test on tiny models, then
# run the full-size benchmarks, each model built from its config with random weights:
#   1. SDXL-Turbo: the modes, with the default mode's CUDA graph beside the eager iteration (first, as before)
#   2. FLUX.1-schnell at 512 px: bf16 weights built on the GPU, fp32 LoRA; default / low-memory /
#      reference at 1 step, 4 steps with gradients through all, 4 steps with gradients through the last
#   3. FLUX.2 [klein] 4B at 512 px: its recipe (4 steps, gradients through the last) in the three modes
#   4. Sana_1600M_512px: its recipe (20 steps, CFG, gradients through the last 3) in the three modes
#   5. FLUX low-memory with int8 weights, then the memory model's prediction beside every measured peak
# Each case runs in its own process (an out-of-memory error costs only that case, recorded with the
# peak it reached) and every result file is rewritten in $OUT after each case, so a run cut short
# keeps what it measured. Each job gets a share of TOTAL seconds (default 580: the device allows 600
# per command): the SDXL job ends by TOTAL - 240, FLUX by TOTAL - 75, klein by TOTAL - 40, Sana by
# TOTAL - 5; a later job gets whatever an earlier one leaves.
# Prepare the wheels first on a machine with PyPI access:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#     -d .gpu_wheels diffusers==0.42.1 transformers==5.25.0 peft==0.22.0 open_clip_torch==3.3.0 \
#     kornia==0.9.0 kornia_rs==0.2.0 timm==1.0.31 tokenizers==0.23.3 huggingface_hub==2.5.0 httpx2 httpcore2 truststore kernels tomlkit ftfy==6.3.1 wcwidth==0.9.4 \
#     pytest==8.4.2 pluggy iniconfig pygments packaging pydantic==2.14.4 pydantic_core==2.50.5 annotated-types \
#     typing-inspection filelock
# A check of this script without a GPU (tiny models on the CPU, one iteration per case, default mode):
#   CHECK=1 OUT=/tmp/gpu-run-check bash benchmarks/gpu_run.sh
set -uo pipefail
OUT=${OUT:-/tmp/siso-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
TOTAL=${TOTAL:-580}
CHECK=${CHECK:-0}
if [ "$CHECK" = 1 ]; then
  SIZE=(--size tiny --device cpu); SDXL_RUN=(--steps 1 --warmup 1 --modes default); OTHER_RUN=(--steps 1 --warmup 1 --modes default)
else
  SIZE=(--size full --resolution 512); SDXL_RUN=(--steps 5 --warmup 3); OTHER_RUN=(--steps 3 --warmup 2)
fi
# seconds left before the script-time mark $1 (SECONDS counts from the script's start), at least 1
left() { local n=$(( $1 - SECONDS )); [ "$n" -gt 1 ] && echo "$n" || echo 1; }

if [ -d .gpu_wheels ]; then
  $PY -m pip install --quiet --no-deps --no-index .gpu_wheels/*.whl 2>&1 | tail -3
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY - <<'PY'
import torch, diffusers, transformers, peft, timm, open_clip, kornia
print("torch", torch.__version__, "diffusers", diffusers.__version__, "transformers", transformers.__version__,
      "peft", peft.__version__, "timm", timm.__version__, "open_clip", open_clip.__version__, "kornia", kornia.__version__)
PY

# ---- 1. SDXL: modes and the CUDA graph (the first job, unchanged but for its time limit and $OUT)
SDXL_END=$(( TOTAL - 240 ))
echo "== CUDA graph: a tiny run replayed as a graph follows the eager one"
if [ "$CHECK" != 1 ]; then
  timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_cuda_graphs.py 2>&1 | tail -5
fi
echo "== smoke: tiny models on the GPU"
if timeout 120 $PY benchmarks/bench_step.py --size tiny --steps 2 --warmup 3 --modes default,low-memory \
     --text-encoder on --out "$OUT" --tag gpu-smoke 2>&1 | tail -5; then
  echo "== full-size benchmark (SDXL), until $SDXL_END s"
  timeout --kill-after=10 "$(( $(left $SDXL_END) + 30 ))" $PY benchmarks/bench_step.py "${SIZE[@]}" "${SDXL_RUN[@]}" \
    --budget-seconds "${BUDGET:-300}" --hard-limit-seconds "$(left $SDXL_END)" --out "$OUT" 2>&1 | tee "$OUT/bench.log"
else
  echo "smoke failed: no full-size SDXL benchmark"
fi

# ---- 2. FLUX.1-schnell at 512 px: the memory modes, 1 step and 4 steps (gradients through all / the last)
FLUX_END=$(( TOTAL - 75 ))
echo "== FLUX.1-schnell (bf16 weights, fp32 LoRA), until $FLUX_END s"
timeout --kill-after=10 "$(( $(left $FLUX_END) + 30 ))" $PY benchmarks/bench_step.py "${SIZE[@]}" "${OTHER_RUN[@]}" \
  --model_family flux --denoising 1/all,4/all,4/1 --budget-seconds "$(left $FLUX_END)" \
  --hard-limit-seconds "$(left $FLUX_END)" --min-case-seconds 40 --out "$OUT" 2>&1 | tee "$OUT/bench-flux.log"

# ---- 3. FLUX.2 [klein] 4B at 512 px: its recipe (4 steps, gradients through the last) in the three modes
KLEIN_END=$(( TOTAL - 40 ))
echo "== FLUX.2 klein 4B (bf16 weights, fp32 LoRA, 4 steps, gradients through the last), until $KLEIN_END s"
timeout --kill-after=10 "$(( $(left $KLEIN_END) + 30 ))" $PY benchmarks/bench_step.py "${SIZE[@]}" "${OTHER_RUN[@]}" \
  --model_family flux2_klein --budget-seconds "$(left $KLEIN_END)" --hard-limit-seconds "$(left $KLEIN_END)" \
  --min-case-seconds 30 --out "$OUT" 2>&1 | tee "$OUT/bench-klein.log"

# ---- 4. Sana_1600M_512px: its recipe in the three modes
SANA_END=$(( TOTAL - 5 ))
echo "== Sana 1600M (recipe: 20 steps, CFG 4.5, gradients through the last 3), until $SANA_END s"
timeout --kill-after=10 "$(( $(left $SANA_END) + 30 ))" $PY benchmarks/bench_step.py "${SIZE[@]}" "${OTHER_RUN[@]}" \
  --model_family sana --budget-seconds "$(left $SANA_END)" --hard-limit-seconds "$(left $SANA_END)" \
  --min-case-seconds 30 --out "$OUT" 2>&1 | tee "$OUT/bench-sana.log"
# ---- 5. the memory model (siso_lib/memory.py) beside every peak measured above, and FLUX with int8
#         weights in low-memory mode (the model's choice for a 24 GB card) if time is left
if [ "$CHECK" != 1 ] && [ $(( TOTAL - SECONDS )) -gt 60 ]; then
  timeout 60 $PY benchmarks/bench_step.py "${SIZE[@]}" --steps 2 --warmup 1 --modes low-memory --quantize int8 \
    --model_family flux --budget-seconds 50 --hard-limit-seconds 55 --tag gpu-flux-int8 --out "$OUT" 2>&1 | tail -3
fi
echo "== memory model vs measured"
$PY benchmarks/compare_memory.py "$OUT"/*.json --out "$OUT/memory-vs-measured.md" 2>&1 | tail -40
echo "== done in $SECONDS s; results in $OUT"
ls "$OUT"
