"""Where does a SISO iteration spend its time? Phase timings, a torch.profiler table, and a few
speed variants measured in one process on the same models, all of the eager iteration (no CUDA
graph: `bench_step.py` compares the graph with it).

    python benchmarks/profile_step.py [--size full|tiny] [--mode default] [--text-encoder on|off]

Variants are applied cumulatively: baseline -> cudnn.benchmark -> channels_last (UNet, VAE)
-> torch.compile(UNet). Prints JSON lines (`PROFILE {...}`) and the profiler tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="full", choices=("tiny", "full"))
    parser.add_argument("--mode", default="default")
    parser.add_argument("--text-encoder", default="on", choices=("on", "off"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--variants", default="baseline,cudnn_benchmark,channels_last,compile")
    args = parser.parse_args()

    import torch

    from siso_lib.config import SISOConfig
    from siso_lib.devices import pick_device, synchronize
    from siso_lib.features.dino import DinoFeatures, preprocess_spec_for
    from siso_lib.io.images import load_subject_image
    from siso_lib.features.ir import IRFeatures, IRNetwork
    from siso_lib.optimizer import SISOOptimizer
    from siso_lib.runtime import RuntimeSettings
    from siso_lib.offline.tiny_models import IRS, build_dino, build_sdxl_pipeline

    device = pick_device("auto")
    resolution = 512 if args.size == "full" else 64
    # the eager iteration's phases: under a CUDA graph (bench_step.py's default case) there are none to time
    config = SISOConfig(resolution=resolution, num_train_epochs=10_000, early_stopping_max_count=10_000,
                        mode=args.mode, train_text_encoder=args.text_encoder == "on", cuda_graphs=False)
    settings = RuntimeSettings.resolve(config, device)
    build_device = device if args.size == "full" else "cpu"
    pipe = build_sdxl_pipeline(args.size, device=build_device, dtype=settings.dtype)
    dino_model, _ = build_dino(args.size, device=build_device)
    with torch.device(build_device):
        ir = IRFeatures(IRNetwork(**IRS[args.size]))
    optimizer = SISOOptimizer(config, load_subject_image(REPO / "data" / "cat.png"), pipe=pipe,
                              dino=DinoFeatures(dino_model, preprocess_spec_for(dino_model)), ir=ir,
                              device=device, profile_phases=True)
    for _ in range(2):
        optimizer.step()

    def measure(name: str) -> None:
        first = time.perf_counter()
        optimizer.step()
        first = time.perf_counter() - first
        rows = [optimizer.step() for _ in range(args.steps)]
        phases = [optimizer.history[-k]["phases"] for k in range(args.steps, 0, -1)]
        median_phases = {key: round(statistics.median(p[key] for p in phases), 4) for key in phases[0]}
        record = {"variant": name, "first_step_s": round(first, 3),
                  "median_s_per_it": round(statistics.median(r.step_seconds for r in rows), 4),
                  "phases": median_phases, "loss": rows[-1].losses["total"]}
        print("PROFILE " + json.dumps(record), flush=True)

    variants = args.variants.split(",")
    measure("baseline")
    if device.type == "cuda" and "baseline" in variants:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            optimizer.step()
            synchronize(device)
        table = prof.key_averages()
        print(table.table(sort_by="self_cpu_time_total", row_limit=18))
        print(table.table(sort_by="self_cuda_time_total", row_limit=18))
        launches = sum(e.count for e in table if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
        print(f"PROFILE {json.dumps({'kernel_launches_per_step': launches})}")
    if "cudnn_benchmark" in variants:
        torch.backends.cudnn.benchmark = True
        measure("cudnn_benchmark")
    if "channels_last" in variants:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        measure("cudnn_benchmark+channels_last")
    if "compile" in variants:
        pipe.unet.compile()
        measure("cudnn_benchmark+channels_last+compile_unet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
