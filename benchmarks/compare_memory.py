"""The memory model's prediction (siso_lib/memory.py) beside every peak a GPU benchmark measured.

    python benchmarks/compare_memory.py RESULTS.json [...] [--out memory-vs-measured.md]

Reads bench_step.py result files (full-size cases only) and prints, per case, the measured
`torch.cuda.max_memory_allocated` peak, the prediction and the error; gpu_run.sh runs it last so
that the first GPU machine lent validates the model for every family it reaches.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siso_lib import memory  # noqa: E402


def rows(paths: list[str]) -> list[dict]:
    found = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        if data.get("size") != "full":
            continue
        for case in data.get("cases", []):
            if case.get("peak_gpu_gib") is None or case.get("error"):
                continue
            mode = case["mode"].removesuffix("-eager")
            family = case.get("model_family", "sdxl")
            try:
                predicted = memory.predict(family, mode, case["resolution"], case["text_encoder_lora"],
                                           quantize=case.get("quantize", "none"), num_grad_steps=case.get("num_grad_steps"),
                                           flow="bench")
            except memory.NoPrediction:  # no bench-flow row: the command's flow (no setup spike)
                try:
                    predicted = memory.predict(family, mode, case["resolution"], case["text_encoder_lora"],
                                               quantize=case.get("quantize", "none"), num_grad_steps=case.get("num_grad_steps"))
                except memory.NoPrediction:
                    continue
            found.append({"family": family, "mode": mode, "quantize": case.get("quantize", "none"),
                          "text_encoder_lora": case["text_encoder_lora"], "resolution": case["resolution"],
                          "steps": f"{case.get('num_inference_steps')}/{case.get('num_grad_steps')}",
                          "measured_gib": round(case["peak_gpu_gib"], 2), "predicted_gib": round(predicted.peak_bytes / memory.GIB, 2),
                          "error": round(predicted.peak_bytes / memory.GIB / case["peak_gpu_gib"] - 1, 4), "device": case.get("device")})
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    found = rows(args.results)
    lines = ["| family | mode | weights | text-encoder LoRA | px | steps/grad | measured GiB | predicted GiB | error |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['family']} | {r['mode']} | {r['quantize']} | {'on' if r['text_encoder_lora'] else 'off'} | {r['resolution']} | "
              f"{r['steps']} | {r['measured_gib']} | {r['predicted_gib']} | {r['error']:+.1%} |" for r in found]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(f"# Memory model vs measured peaks ({found[0]['device'] if found else 'no cases'})\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
