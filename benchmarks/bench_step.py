"""Time one SISO iteration and record its memory, per mode, with text-encoder LoRA on and off.

    python benchmarks/bench_step.py                  # GPU: full-size models; CPU: tiny ones
    python benchmarks/bench_step.py --size full --resolution 512 --steps 5 --warmup 2

Models are built from configs with random weights (no hub): on a GPU the real architectures
(SDXL-Turbo UNet/VAE/CLIP-L/CLIP-bigG, DINOv2-L/14 at 518 px, IR ViT-H/14 at 290 px), on a CPU
the tiny test models. Timing: median wall time of `--steps` iterations after `--warmup` ones,
each ending in a device synchronisation. On CUDA the default mode replays each iteration as a
CUDA graph after two eager iterations and a capturing one, so the 3 warm-up iterations cover
the capture; the case "default, eager" is the same mode without graphs (`--no-cuda_graphs`). Memory: peak `torch.cuda.max_memory_allocated` over
setup and steps (GPU), and peak resident set size of the process (`ru_maxrss`). Each
(mode, text encoder) case runs in its own process, so peaks do not leak between cases.

Writes `benchmarks/results/<tag>.json` and `.md` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

MODES = ("reference", "default", "default-eager", "low-memory")
EAGER_SUFFIX = "-eager"  # a mode name with this suffix runs that mode with cuda_graphs=False


def worker(args: argparse.Namespace) -> dict:
    """Run one (mode, text encoder) case in this process and return its measurements."""
    import torch

    from siso_lib.config import SISOConfig
    from siso_lib.devices import pick_device, pick_dtype, synchronize
    from siso_lib.dino import DinoFeatures, preprocess_spec_for
    from siso_lib.images import load_subject_image
    from siso_lib.ir_features import IRFeatures, IRNetwork
    from siso_lib.optimizer import RuntimeSettings, SISOOptimizer
    from siso_lib.test_assets import IRS, build_dino, build_sdxl_pipeline

    device = pick_device(args.device)
    config = SISOConfig(
        prompt="a photo of a cat",
        resolution=args.resolution,
        num_train_epochs=args.warmup + args.steps,
        early_stopping_max_count=10_000,
        device=str(device),
        mode=args.mode.removesuffix(EAGER_SUFFIX),
        train_text_encoder=args.text_encoder == "on",
        precision=args.precision,
        compile=args.compile,
        cuda_graphs=not args.mode.endswith(EAGER_SUFFIX),
    )
    settings = RuntimeSettings.resolve(config, device)
    is_cuda = device.type == "cuda"
    if is_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    # build in the dtype the mode will use, on the CPU for tiny models, straight on the GPU otherwise
    build_device = device if args.size == "full" else "cpu"
    pipe = build_sdxl_pipeline(args.size, device=build_device, dtype=settings.dtype)
    dino_model, _ = build_dino(args.size, device=build_device)
    dino = DinoFeatures(dino_model, preprocess_spec_for(dino_model))
    with torch.device(build_device):
        ir = IRFeatures(IRNetwork(**IRS[args.size]))
    subject = load_subject_image(REPO / "data" / "cat.png")
    optimizer = SISOOptimizer(config, subject, pipe=pipe, dino=dino, ir=ir, device=device)
    synchronize(device)
    setup_seconds = time.perf_counter() - started
    setup_peak = torch.cuda.max_memory_allocated(device) if is_cuda else None
    step_seconds = []
    for _ in range(args.warmup + args.steps):
        event = optimizer.step()
        step_seconds.append(event.step_seconds)
    timed = step_seconds[args.warmup:]
    return {
        "mode": args.mode,
        "text_encoder_lora": args.text_encoder == "on",
        "size": args.size,
        "resolution": args.resolution,
        "device": device_name(device),
        "settings": settings.describe(),
        **{key: value for key, value in optimizer.describe_runtime().items() if key.startswith("cuda_graphs_")},
        "median_s_per_it": statistics.median(timed),
        "min_s_per_it": min(timed),
        "step_seconds": [round(s, 4) for s in step_seconds],
        "peak_gpu_gib": (torch.cuda.max_memory_allocated(device) / 2**30) if is_cuda else None,
        "setup_peak_gpu_gib": (setup_peak / 2**30) if is_cuda else None,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "setup_seconds": setup_seconds,
        "final_loss": event.losses["total"],
    }


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def run_case(args: argparse.Namespace, mode: str, text_encoder: str, timeout: float) -> dict:
    command = [
        sys.executable, __file__, "--worker", "--mode", mode, "--text-encoder", text_encoder,
        "--size", args.size, "--resolution", str(args.resolution), "--steps", str(args.steps),
        "--warmup", str(args.warmup), "--device", args.device, "--precision", args.precision,
    ] + (["--compile"] if args.compile else [])
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"mode": mode, "text_encoder_lora": text_encoder == "on", "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"mode": mode, "text_encoder_lora": text_encoder == "on", "error": " | ".join(tail)[-400:]}
    return json.loads(lines[-1][len("BENCH "):])


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| mode | text-encoder LoRA | median s/it | speed-up vs reference | peak GPU GiB | peak RSS GiB | dtype | checkpointing | CUDA graph |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    reference = {r["text_encoder_lora"]: r["median_s_per_it"] for r in rows if r.get("mode") == "reference" and "error" not in r}
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['mode']} | {'on' if row['text_encoder_lora'] else 'off'} | failed: {row['error']} | | | | | | |")
            continue
        base = reference.get(row["text_encoder_lora"])
        speedup = f"{base / row['median_s_per_it']:.2f}x" if base else "n/a"
        gpu = f"{row['peak_gpu_gib']:.2f}" if row["peak_gpu_gib"] is not None else "n/a"
        lines.append(
            f"| {row['mode']} | {'on' if row['text_encoder_lora'] else 'off'} | {row['median_s_per_it']:.4f} | {speedup} | "
            f"{gpu} | {row['peak_rss_gib']:.2f} | {row['settings']['dtype']} | {row['settings']['gradient_checkpointing']} | "
            f"{'replayed' if row.get('cuda_graphs_captured') else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", choices=("auto", "tiny", "full"), default="auto")
    parser.add_argument("--resolution", type=int, default=None, help="default: 512 (full) or 64 (tiny)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--text-encoder", default="both", choices=("both", "on", "off"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations (3 covers a CUDA graph capture)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--budget-seconds", type=float, default=420, help="skip cases that would start after this")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--tag", default=None, help="result file name (default: from the device)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="default", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    on_gpu = torch.cuda.is_available() and args.device in ("auto", "cuda") or args.device.startswith("cuda")
    if args.size == "auto":
        args.size = "full" if on_gpu else "tiny"
    if args.resolution is None:
        args.resolution = 512 if args.size == "full" else 64
    if args.worker:
        print("BENCH " + json.dumps(worker(args)), flush=True)
        return 0

    # most informative cases first, in case the time budget runs out
    te_values = {"both": ("on", "off"), "on": ("on",), "off": ("off",)}[args.text_encoder]
    order = [
        ("default", "on"), ("reference", "on"), ("default-eager", "on"), ("low-memory", "on"), ("low-memory", "off"),
        ("default", "off"), ("reference", "off"), ("default-eager", "off"),
    ]
    modes = args.modes.split(",")
    cases = [(m, t) for m, t in order if m in modes and t in te_values]
    started = time.perf_counter()
    rows = []
    for mode, text_encoder in cases:
        spent = time.perf_counter() - started
        if spent > args.budget_seconds:
            rows.append({"mode": mode, "text_encoder_lora": text_encoder == "on", "error": "skipped: time budget spent"})
            continue
        row = run_case(args, mode, text_encoder, timeout=max(60.0, args.budget_seconds + 120 - spent))
        rows.append(row)
        status = row.get("error") or f"{row['median_s_per_it']:.4f} s/it, peak GPU {row['peak_gpu_gib']} GiB, RSS {row['peak_rss_gib']:.2f} GiB"
        print(f"[{time.perf_counter() - started:6.1f} s] {mode:10s} TE {text_encoder:3s}: {status}", flush=True)
    device = next((r["device"] for r in rows if "device" in r), "unknown")
    tag = args.tag or ("gpu-" + device.replace(" ", "_") if args.size == "full" else "cpu-tiny")
    report = {
        "device": device,
        "size": args.size,
        "resolution": args.resolution,
        "steps": args.steps,
        "warmup": args.warmup,
        "torch": torch.__version__,
        "total_seconds": round(time.perf_counter() - started, 1),
        "cases": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows)
    (out / f"{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    header = f"# SISO iteration benchmark: {device}, {args.size} models, {args.resolution} px, torch {torch.__version__}\n\n"
    (out / f"{tag}.md").write_text(header + table + "\n")
    print(header + table)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
