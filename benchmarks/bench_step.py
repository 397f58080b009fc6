"""Time one SISO iteration and record its memory, per model family, mode and text-encoder LoRA.

    python benchmarks/bench_step.py                  # SDXL; GPU: full-size models, CPU: tiny ones
    python benchmarks/bench_step.py --size full --resolution 512 --steps 5 --warmup 2
    python benchmarks/bench_step.py --model_family sdxl,flux,sana,flux2_klein   # all four families
    python benchmarks/bench_step.py --model_family flux --denoising 1/all,4/all,4/1

Models are built from configs with random weights (no hub): on a GPU the real architectures
(SDXL-Turbo UNet/VAE/CLIP-L/CLIP-bigG; FLUX.1-schnell's 12 B transformer, T5-XXL, CLIP-L and
VAE; Sana_1600M_512px with Gemma-2-2B and DC-AE; DINOv2-L/14 at 518 px and IR ViT-H/14 at
290 px for the loss), on a CPU the tiny test models. Frozen weights are built directly in the
dtype they will have (on the GPU for full size): the mode's dtype, except FLUX at full size,
which runs with precision bf16 in every mode (the authors' FLUX command passes
`--mixed_precision bf16`; fp32 weights would be 67 GB), so its "reference" case is the authors'
FLUX setup (bf16 model, fp32 unfrozen judges, T5 re-encoded every iteration and kept on the
GPU). The LoRA weights are fp32 everywhere.

Denoising: each family runs its recipe (SDXL 1 step; Sana 20 steps, gradients through the last
3) unless `--denoising` says otherwise; FLUX runs 1 step, 4 steps with gradients through all,
and 4 steps with gradients through the last only. `--denoising` takes `STEPS/GRAD` entries
(GRAD = steps with gradients, counted from the last; `all` or 0 = every step; `recipe` = the
family's), optionally prefixed `family=`: `flux=1/all,flux=4/1,sana=recipe`.

Timing: median wall time of `--steps` iterations after `--warmup` ones, each ending in a device
synchronisation. On CUDA the SDXL default mode replays each iteration as a CUDA graph after two
eager iterations and a capturing one, so the 3 warm-up iterations cover the capture; the case
"default-eager" is the same mode without graphs (`--no-cuda_graphs`; SDXL only, as graphs are).
Memory: peak `torch.cuda.max_memory_allocated` over setup and steps (GPU), what stays allocated
after setup (frozen weights, LoRA, cached embeddings), and peak resident set size of the process
(`ru_maxrss`). Each case runs in its own process, so peaks do not leak between cases and an
out-of-memory error costs only its own case (recorded with the peak it reached).

Writes `benchmarks/results/<tag>.json` and `.md` after every case (so a run cut short keeps what
it measured) and prints the table.
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

FAMILIES = ("sdxl", "flux", "sana", "flux2_klein")
MODES = ("reference", "default", "default-eager", "low-memory")
EAGER_SUFFIX = "-eager"  # a mode name with this suffix runs that mode with cuda_graphs=False
RECIPE = "recipe"  # a denoising spec meaning "the family's recipe" (num_inference_steps / num_grad_steps None)
# the denoising variants measured when --denoising is not given
DEFAULT_DENOISING = {"sdxl": (RECIPE,), "flux": ("1/all", "4/all", "4/1"), "sana": (RECIPE,), "flux2_klein": (RECIPE,)}
# text-encoder LoRA cases for --text-encoder default / both (Sana has no text-encoder LoRA in SISO)
TEXT_ENCODER_CASES = {
    "default": {"sdxl": ("on", "off"), "flux": ("on",), "sana": ("off",), "flux2_klein": ("off",)},
    "both": {"sdxl": ("on", "off"), "flux": ("on", "off"), "sana": ("off",), "flux2_klein": ("off",)},
    "on": {"sdxl": ("on",), "flux": ("on",), "sana": (), "flux2_klein": ()},
    "off": {"sdxl": ("off",), "flux": ("off",), "sana": ("off",), "flux2_klein": ("off",)},
}
# SDXL's case order (most informative first, in case the time budget runs out), as before families
SDXL_ORDER = (
    ("default", "on"), ("reference", "on"), ("default-eager", "on"), ("low-memory", "on"), ("low-memory", "off"),
    ("default", "off"), ("reference", "off"), ("default-eager", "off"),
)
# the other families: per denoising variant, the three memory modes (CUDA graphs are SDXL-only)
OTHER_MODE_ORDER = ("default", "low-memory", "reference")


def parse_denoising(spec: str) -> tuple[int, int] | None:
    """'4/1' -> (4, 1); '4/all' or '4/0' -> (4, 0); 'recipe' -> None. ValueError otherwise."""
    if spec == RECIPE:
        return None
    steps, _, grad = spec.partition("/")
    try:
        steps, grad = int(steps), 0 if grad in ("all", "") else int(grad)
    except ValueError:
        steps = grad = -1
    if steps < 1 or not 0 <= grad <= steps:
        raise ValueError(f"denoising {spec!r}: give STEPS/GRAD with 1 <= STEPS and 0 <= GRAD <= STEPS (GRAD 0 or 'all' = every step)")
    return steps, grad


def denoising_label(steps: int | None, grad: int | None) -> str:
    """(4, 0) -> '4 (grad all)', (4, 1) -> '4 (grad last 1)', (1, 1) -> '1 (grad all)'."""
    if steps is None:
        return "recipe"
    if grad in (0, None) or grad >= steps:
        return f"{steps} (grad all)"
    return f"{steps} (grad last {grad})"


def denoising_for(spec_list: str | None, family: str) -> list[str]:
    """One family's denoising variants: the `family=` entries naming it and the unprefixed ones, else its default."""
    chosen = []
    for entry in (e.strip() for e in (spec_list or "").split(",") if e.strip()):
        name, sep, spec = entry.partition("=")
        if not sep:
            name, spec = family, entry
        if name not in FAMILIES:
            raise ValueError(f"denoising entry {entry!r}: {name!r} is not one of {', '.join(FAMILIES)}")
        parse_denoising(spec)
        if name == family:
            chosen.append(spec)
    return chosen or list(DEFAULT_DENOISING[family])


def steps_of(family: str, spec: str) -> tuple[int, int]:
    """(num_inference_steps, num_grad_steps) of a denoising spec, the recipe's for 'recipe'."""
    from siso_lib.config import FAMILY_RECIPES  # light: no torch

    parsed = parse_denoising(spec)
    if parsed is None:
        recipe = FAMILY_RECIPES[family]
        return recipe["num_inference_steps"], recipe["num_grad_steps"]
    return parsed


def cases_for(families: list[str], modes: list[str], text_encoder: str, denoising: str | None) -> list[dict]:
    """Every (family, mode, text encoder, denoising) case, most informative first within a family."""
    cases = []
    for family in families:
        te_values = TEXT_ENCODER_CASES[text_encoder][family]
        variants = denoising_for(denoising, family)
        if family == "sdxl":
            order = [(m, t, d) for d in variants for m, t in SDXL_ORDER]
        else:
            order = [(m, t, d) for d in variants for t in ("on", "off") for m in OTHER_MODE_ORDER]
        for mode, te, spec in order:
            if mode in modes and te in te_values:
                cases.append({"family": family, "mode": mode, "text_encoder": te, "denoising": spec})
    return cases


def describe_machine() -> dict:
    """What the numbers were measured on: CPU model and cores, memory, load, GPU if any."""
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": None,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": None,
        "load_average_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                       "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda}
    return info


def machine_line(machine: dict) -> str:
    parts = [f"{machine.get('cpu_model') or platform.machine()}, {machine.get('usable_cpus')} usable CPUs",
             f"{machine.get('torch_threads')} torch thread(s) per case", f"{machine.get('memory_gib')} GiB RAM"]
    if machine.get("gpu"):
        gpu = machine["gpu"]
        parts.insert(0, f"{gpu['name']} ({gpu['memory_gib']} GiB, CUDA {gpu['cuda']})")
    load = machine.get("load_average_start"), machine.get("load_average_end")
    if load[0] is not None:
        parts.append(f"load average (1/5/15 min) {load[0]} at the start" + (f", {load[1]} at the end" if load[1] else ""))
    return "; ".join(parts)


def precision_for(choice: str, family: str, size: str) -> str:
    """The run's precision: as given, except 'auto' for full-size FLUX, which is bf16 in every mode
    (the authors' FLUX command passes --mixed_precision bf16; fp32 weights would be 67 GB)."""
    return "bf16" if choice == "auto" and family in ("flux", "flux2_klein") and size == "full" else choice


def weights_dtype_for(choice: str, settings) -> "torch.dtype":
    """The dtype the frozen pipeline weights are built in: the run's (auto) or the one given."""
    import torch

    names = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    return names.get(choice, settings.dtype)


def worker(args: argparse.Namespace) -> dict:
    """Run one case in this process and return its measurements (an `error` on out of memory)."""
    import torch

    from siso_lib.config import SISOConfig
    from siso_lib.devices import dtype_name, is_out_of_memory, pick_device, synchronize
    from siso_lib.features.dino import DinoFeatures, preprocess_spec_for
    from siso_lib.io.images import load_subject_image
    from siso_lib.features.ir import IRFeatures, IRNetwork
    from siso_lib.optimizer import SISOOptimizer
    from siso_lib.runtime import RuntimeSettings
    from siso_lib.offline import tiny_models
    from siso_lib.offline.tiny_klein import build_flux2_klein_pipeline

    family = args.model_family
    device = pick_device(args.device)
    denoising = parse_denoising(args.denoising or RECIPE)
    overrides = {} if denoising is None else {"num_inference_steps": denoising[0], "num_grad_steps": denoising[1]}
    config = SISOConfig(
        prompt="a photo of a cat",
        model_family=family,
        resolution=args.resolution,
        num_train_epochs=args.warmup + args.steps,
        early_stopping_max_count=10_000,
        device=str(device),
        mode=args.mode.removesuffix(EAGER_SUFFIX),
        train_text_encoder=args.text_encoder == "on",
        precision=precision_for(args.precision, family, args.size),
        compile=args.compile,
        cuda_graphs=not args.mode.endswith(EAGER_SUFFIX),
        quantize=getattr(args, "quantize", "none"),
        **overrides,
    )
    config.validate()
    settings = RuntimeSettings.resolve(config, device)
    weights_dtype = weights_dtype_for(args.weights_dtype, settings)
    is_cuda = device.type == "cuda"
    gib = lambda n: n / 2**30  # noqa: E731
    row = {
        "model_family": family,
        "mode": args.mode,
        "quantize": getattr(args, "quantize", "none"),
        "text_encoder_lora": args.text_encoder == "on",
        "num_inference_steps": config.num_inference_steps,
        "num_grad_steps": config.num_grad_steps,
        "size": args.size,
        "resolution": args.resolution,
        "device": device_name(device),
        "weights_dtype": dtype_name(weights_dtype),
        "settings": settings.describe(),
    }
    if is_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    phase = "setup"
    step_seconds: list[float] = []
    cpu_seconds: list[float] = []  # process CPU time per iteration: steadier than wall time on a busy CPU
    started = time.perf_counter()
    try:
        # build in the dtype the run will use, on the CPU for tiny models, straight on the GPU otherwise
        build_device = device if args.size == "full" else "cpu"
        builder = {"sdxl": tiny_models.build_sdxl_pipeline, "flux": tiny_models.build_flux_pipeline,
                   "sana": tiny_models.build_sana_pipeline, "flux2_klein": build_flux2_klein_pipeline}[family]
        pipe = builder(args.size, device=build_device, dtype=weights_dtype)
        pipe.set_progress_bar_config(disable=True)
        dino_model, _ = tiny_models.build_dino(args.size, device=build_device)
        dino = DinoFeatures(dino_model, preprocess_spec_for(dino_model))
        with torch.device(build_device):
            ir = IRFeatures(IRNetwork(**tiny_models.IRS[args.size]))
        subject = load_subject_image(REPO / "data" / "cat.png")
        optimizer = SISOOptimizer(config, subject, pipe=pipe, dino=dino, ir=ir, device=device)
        synchronize(device)
        row["setup_seconds"] = time.perf_counter() - started
        row["setup_peak_gpu_gib"] = gib(torch.cuda.max_memory_allocated(device)) if is_cuda else None
        row["after_setup_gpu_gib"] = gib(torch.cuda.memory_allocated(device)) if is_cuda else None
        row["lora_parameters"] = sum(p.numel() for p in optimizer.params)
        for index in range(args.warmup + args.steps):
            phase = f"iteration {index + 1}"
            cpu_started = time.process_time()
            event = optimizer.step()
            cpu_seconds.append(time.process_time() - cpu_started)
            step_seconds.append(event.step_seconds)
    except (torch.OutOfMemoryError, RuntimeError, MemoryError) as failure:
        if not is_out_of_memory(failure):
            raise
        row["error"] = f"out of memory during {phase}" + (
            f" (peak {gib(torch.cuda.max_memory_allocated(device)):.1f} GiB allocated)" if is_cuda else ""
        )
        row["peak_gpu_gib"] = gib(torch.cuda.max_memory_allocated(device)) if is_cuda else None
        row["step_seconds"] = [round(s, 4) for s in step_seconds]
        return row
    timed = step_seconds[args.warmup:] or step_seconds
    row.update({
        **{key: value for key, value in optimizer.describe_runtime().items() if key.startswith("cuda_graphs_")},
        "median_s_per_it": statistics.median(timed),
        "min_s_per_it": min(timed),
        "median_cpu_s_per_it": statistics.median(cpu_seconds[args.warmup:] or cpu_seconds),
        "step_seconds": [round(s, 4) for s in step_seconds],
        "step_cpu_seconds": [round(s, 4) for s in cpu_seconds],
        "peak_gpu_gib": gib(torch.cuda.max_memory_allocated(device)) if is_cuda else None,
        "peak_reserved_gpu_gib": gib(torch.cuda.max_memory_reserved(device)) if is_cuda else None,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "final_loss": event.losses["total"],
    })
    return row


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def failed_row(case: dict, error: str) -> dict:
    steps_grad = steps_of(case["family"], case["denoising"])
    return {"model_family": case["family"], "mode": case["mode"], "text_encoder_lora": case["text_encoder"] == "on",
            "num_inference_steps": steps_grad[0], "num_grad_steps": steps_grad[1], "error": error}


def run_case(args: argparse.Namespace, case: dict, timeout: float) -> dict:
    command = [
        sys.executable, __file__, "--worker", "--mode", case["mode"], "--text-encoder", case["text_encoder"],
        "--model_family", case["family"], "--denoising", case["denoising"], "--weights-dtype", args.weights_dtype,
        "--size", args.size, "--resolution", str(args.resolution), "--steps", str(args.steps),
        "--warmup", str(args.warmup), "--device", args.device, "--precision", args.precision, "--quantize", getattr(args, "quantize", "none"),
    ] + (["--compile"] if args.compile else []) + (["--threads", str(args.threads)] if args.threads else [])
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return failed_row(case, f"timed out after {timeout:.0f} s")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH ")]
    if not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return failed_row(case, " | ".join(tail)[-400:] or f"exit code {proc.returncode}")
    return json.loads(lines[-1][len("BENCH "):])


def fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown_table(rows: list[dict]) -> str:
    """SDXL-only results keep their original table; with other families, the extended one."""
    if all(row.get("model_family", "sdxl") == "sdxl" and row.get("num_inference_steps") in (None, 1) for row in rows):
        return sdxl_table(rows)
    return families_table(rows)


def sdxl_table(rows: list[dict]) -> str:
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


def families_table(rows: list[dict]) -> str:
    lines = [
        "| family | mode | text-encoder LoRA | denoising steps | median s/it | min s/it | median CPU-s/it | speed-up vs reference | "
        "peak GPU GiB | GPU after setup GiB | peak RSS GiB | weights | compute dtype | checkpointing | CUDA graph |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def key(row):
        return row.get("model_family", "sdxl"), row["text_encoder_lora"], row.get("num_inference_steps"), row.get("num_grad_steps")

    def cost(row):  # on a CPU the process CPU time (steadier on a shared machine), on a GPU the wall time
        cpu = row.get("median_cpu_s_per_it")
        return cpu if cpu and str(row.get("device", "")).startswith("cpu") else row["median_s_per_it"]

    reference = {key(r): cost(r) for r in rows if r.get("mode") == "reference" and "error" not in r}
    for row in rows:
        head = (f"| {row.get('model_family', 'sdxl')} | {row['mode']} | {'on' if row['text_encoder_lora'] else 'off'} | "
                f"{denoising_label(row.get('num_inference_steps'), row.get('num_grad_steps'))} |")
        if "error" in row:
            peak = f" (peak {row['peak_gpu_gib']:.2f} GiB)" if row.get("peak_gpu_gib") and "peak" not in row["error"] else ""
            lines.append(f"{head} failed: {row['error']}{peak} | | | | | | | | | | |")
            continue
        base = reference.get(key(row))
        speedup = f"{base / cost(row):.2f}x" if base else "n/a"
        lines.append(
            f"{head} {row['median_s_per_it']:.4f} | {row['min_s_per_it']:.4f} | {fmt(row.get('median_cpu_s_per_it'), 4)} | "
            f"{speedup} | {fmt(row['peak_gpu_gib'])} | {fmt(row.get('after_setup_gpu_gib'))} | "
            f"{row['peak_rss_gib']:.2f} | {row.get('weights_dtype', row['settings']['dtype'])} | {row['settings']['dtype']} | "
            f"{row['settings']['gradient_checkpointing']} | {'replayed' if row.get('cuda_graphs_captured') else 'no'} |"
        )
    return "\n".join(lines)


def write_report(out: Path, tag: str, report: dict) -> str:
    """Write <tag>.json and <tag>.md (each case as it comes, so a run cut short keeps its cases); return the markdown."""
    rows = report["cases"]
    families = sorted({r.get("model_family", "sdxl") for r in rows}, key=FAMILIES.index) or ["sdxl"]
    header = (f"# SISO iteration benchmark: {report['device']}, {report['size']} models, {report['resolution']} px, "
              f"torch {report['torch']}" + ("" if families == ["sdxl"] else f", {', '.join(families)}") + "\n\n")
    note = (f"\n\nMedian of {report['steps']} timed iterations after {report['warmup']} warm-up ones, each case in its own "
            f"process{'' if report.get('complete', True) else ' (run cut short: cases so far)'}. Machine: "
            f"{machine_line(report['machine'])}.\n" if "machine" in report else "\n")
    text = header + markdown_table(rows) + note
    out.mkdir(parents=True, exist_ok=True)
    for name, content in ((f"{tag}.json", json.dumps(report, indent=2) + "\n"), (f"{tag}.md", text)):
        partial = out / f".{name}.partial"  # written whole, then renamed: a killed run never leaves half a file
        partial.write_text(content)
        partial.replace(out / name)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", choices=("auto", "tiny", "full"), default="auto")
    parser.add_argument("--resolution", type=int, default=None, help="default: 512 (full) or 64 (tiny)")
    parser.add_argument("--model_family", "--model-family", "--families", dest="model_family", default="sdxl",
                        help="comma-separated families (sdxl, flux, sana, flux2_klein) or 'all'; default sdxl")
    parser.add_argument("--modes", default=",".join(MODES), help="default-eager is measured for SDXL only (CUDA graphs)")
    parser.add_argument("--text-encoder", default="default", choices=tuple(TEXT_ENCODER_CASES),
                        help="default: on and off for SDXL, the recipe's for FLUX (on) and Sana (off)")
    parser.add_argument("--denoising", default=None,
                        help="STEPS/GRAD variants, e.g. 'flux=1/all,flux=4/all,flux=4/1,sana=recipe' (see the module doc)")
    parser.add_argument("--weights-dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="dtype of the frozen weights; auto = the run's (the mode's and --precision's)")
    parser.add_argument("--quantize", default="none", choices=("none", "int8", "fp8"),
                        help="frozen denoiser weights (quantized on the device after the build)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations (3 covers a CUDA graph capture)")
    parser.add_argument("--precision", default="auto",
                        help="as --mixed_precision; auto = the mode's, except bf16 for full-size FLUX in every mode")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per case (torch.set_num_threads); on a busy machine 1 gives steadier CPU timings")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--budget-seconds", type=float, default=420, help="skip cases that would start after this")
    parser.add_argument("--hard-limit-seconds", type=float, default=None,
                        help="wall-clock limit of the whole run: no case runs past it (killed, recorded as timed out)")
    parser.add_argument("--min-case-seconds", type=float, default=30,
                        help="with --hard-limit-seconds: do not start a case with less than this left")
    parser.add_argument("--dry-run", action="store_true", help="list the cases and exit (nothing is built)")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--tag", default=None, help="result file name (default: from the device and families)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="default", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    families = list(FAMILIES) if args.model_family == "all" else [f.strip() for f in args.model_family.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        parser.error(f"--model_family {args.model_family!r}: use sdxl, flux, sana, flux2_klein (comma-separated) or all")
    try:
        cases = cases_for(families, args.modes.split(","), args.text_encoder, args.denoising)
    except ValueError as error:
        parser.error(str(error))

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    on_gpu = torch.cuda.is_available() and args.device in ("auto", "cuda") or args.device.startswith("cuda")
    if args.size == "auto":
        args.size = "full" if on_gpu else "tiny"
    if args.resolution is None:
        args.resolution = 512 if args.size == "full" else 64
    if args.worker:
        print("BENCH " + json.dumps(worker(args)), flush=True)
        return 0
    if args.dry_run:
        for case in cases:
            steps_grad = steps_of(case["family"], case["denoising"])
            print(f"{case['family']:5s} {case['mode']:13s} TE {case['text_encoder']:3s} denoising {denoising_label(*steps_grad)}")
        print(f"{len(cases)} cases, {args.size} models, {args.resolution} px")
        return 0

    from siso_lib.devices import pick_device

    device = device_name(pick_device(args.device))
    machine = describe_machine()
    if args.tag is None:
        base = "gpu-" + device.replace(" ", "_") if args.size == "full" else "cpu-tiny"
        args.tag = base if families == ["sdxl"] else base + "-" + "-".join(families)
    started = time.perf_counter()
    rows: list[dict] = []
    report = {
        "device": device, "size": args.size, "resolution": args.resolution, "steps": args.steps, "warmup": args.warmup,
        "torch": torch.__version__, "total_seconds": 0.0, "machine": machine, "model_families": families,
        "complete": False, "cases": rows,
    }

    def save() -> str:
        report["total_seconds"] = round(time.perf_counter() - started, 1)
        machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
        return write_report(Path(args.out), args.tag, report)

    for case in cases:
        spent = time.perf_counter() - started
        left = None if args.hard_limit_seconds is None else args.hard_limit_seconds - spent
        if spent > args.budget_seconds:
            row = failed_row(case, "skipped: time budget spent")
        elif left is not None and left < args.min_case_seconds:
            row = failed_row(case, f"skipped: {max(left, 0):.0f} s left of the hard limit")
        else:
            timeout = max(60.0, args.budget_seconds + 120 - spent)
            row = run_case(args, case, timeout=timeout if left is None else min(timeout, left))
        rows.append(row)
        status = row.get("error") or (
            f"{row['median_s_per_it']:.4f} s/it, peak GPU {fmt(row['peak_gpu_gib'])} GiB, RSS {row['peak_rss_gib']:.2f} GiB"
        )
        steps_grad = steps_of(case["family"], case["denoising"])
        print(f"[{time.perf_counter() - started:6.1f} s] {case['family']:5s} {case['mode']:13s} TE {case['text_encoder']:3s} "
              f"{denoising_label(*steps_grad):18s}: {status}", flush=True)
        save()
    report["complete"] = True
    print(save())
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
