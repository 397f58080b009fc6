"""How FLUX.2 [klein]'s denoising steps and the steps with gradients shape a SISO run (tiny model, CPU).

For each (num_inference_steps, num_grad_steps) it runs SISO on the tiny random-weight klein from the
same LoRA initialisation and prints: the gradient norm of the LoRA before clipping (iteration 2,
once the zero-initialised B has moved, and the median over the run), the total loss at iterations
1, 5, 10 and the last, the best loss, and wall seconds per iteration (noisy on a busy machine). It informs the family's recipe
(docs/families.md); on random weights it shows how gradients flow, not image quality.

    python benchmarks/klein_grad_steps.py                      # prints the table, writes results/klein-grad-steps.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = ((1, 1), (4, 1), (4, 2), (4, 0))  # (steps, steps with gradients; 0 = all)


def run_case(assets: dict, steps: int, grad_steps: int, iterations: int, learning_rate: float) -> dict:
    import torch

    from siso_lib.io.images import load_subject_image
    from siso_lib.io.locations import example_photo
    from siso_lib.offline import offline_config
    from siso_lib.optimizer import SISOOptimizer

    norms: list[float] = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm, *args, **kwargs):
        norm = clip(parameters, max_norm, *args, **kwargs)
        norms.append(float(norm))
        return norm

    config = offline_config(assets, model_family="flux2_klein", num_inference_steps=steps, num_grad_steps=grad_steps,
                            num_train_epochs=iterations, learning_rate=learning_rate, early_stopping_max_count=iterations)
    torch.nn.utils.clip_grad_norm_ = recording_clip
    try:
        optimizer = SISOOptimizer(config, load_subject_image(example_photo("cat.png")))
        started = time.perf_counter()
        result = optimizer.run()
        seconds = (time.perf_counter() - started) / max(result.steps_run, 1)
    finally:
        torch.nn.utils.clip_grad_norm_ = clip
    losses = [row["total"] for row in result.history]
    return {
        "steps": steps, "grad_steps": grad_steps or steps, "norm_2": norms[1] if len(norms) > 1 else float("nan"),
        "norm_median": statistics.median(norms[1:]) if len(norms) > 1 else float("nan"),
        "loss": {i: losses[i - 1] for i in (1, 5, 10, len(losses)) if i <= len(losses)}, "best": min(losses),
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--learning_rate", type=float, default=5e-3, help="the offline default (the tiny models need a large one)")
    parser.add_argument("--output", default=str(HERE / "results" / "klein-grad-steps.md"))
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from siso_lib.offline import ensure_test_assets

    torch.set_num_threads(1)
    assets = ensure_test_assets(families=("flux2_klein",))
    rows = []
    for steps, grad_steps in CASES:
        row = run_case(assets, steps, grad_steps, args.iterations, args.learning_rate)
        rows.append(row)
        print(f"steps {steps} grad {row['grad_steps']}: |g| it2 {row['norm_2']:.3g}, median {row['norm_median']:.3g}; "
              f"loss {row['loss']}; best {row['best']:+.4f}; {row['seconds']:.3f} s/it", flush=True)
    lines = [
        "# FLUX.2 [klein]: denoising steps and steps with gradients (tiny random-weight model, CPU)",
        "",
        f"{platform.machine()}, {os.cpu_count()} cores, 1 torch thread, torch {torch.__version__}; "
        f"{args.iterations} iterations, lr {args.learning_rate:g}, 64 px, data/cat.png. Produced by benchmarks/klein_grad_steps.py.",
        "",
        "| steps | with gradients | LoRA grad norm, iteration 2 | median grad norm | loss it 1 | it 5 | it 10 | last | best | wall s / iteration |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        loss = row["loss"]
        cells = [f"{loss.get(i, float('nan')):+.4f}" for i in (1, 5, 10)] + [f"{list(loss.values())[-1]:+.4f}"]
        lines.append(f"| {row['steps']} | {row['grad_steps']} | {row['norm_2']:.3g} | {row['norm_median']:.3g} | "
                     + " | ".join(cells) + f" | {row['best']:+.4f} | {row['seconds']:.3f} |")
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
