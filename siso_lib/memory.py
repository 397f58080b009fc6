"""Predicted GPU memory of a SISO run, and the plan `--mode auto` follows.

The prediction is read from a table measured at full size without a GPU (`memory_table.json`,
written by `python -m siso_lib.offline.memory_probe`, which runs two real iterations of the
library with the meta device standing in for the GPU). Per family, task, mode and text-encoder
choice the table holds, at 512 and 1024 px:

    R   bytes resident after setup (weights on the device, LoRA, cached embeddings)
    P   the peak over setup and two iterations (the second one holds AdamW's state)
    W   the bytes of the denoiser's nn.Linear weights, their element and output-row counts
    N   the LoRA's parameter count at the recipe's rank r0, with the recipe's grad steps g0

and the prediction for resolution s, rank r, grad steps g and frozen-weight quantization q is

    A(s)  = P(s) - R(s), linear in the pixel count s^2 between (and beyond) the two sizes
            (a case measured at 512 px only: A(512) s^2 / 512^2)
    peak  = R(s) + A(s) * g / g0  +  16 B * N * (r / r0 - 1)  -  (W - W_q)

16 B per LoRA parameter: fp32 value, gradient and AdamW's two moments. W_q is the size of the
same weights quantized: int8 keeps one byte per weight plus a scale and zero point per output
row, fp8 one byte per weight plus a scale per row (torchao's weight-only layouts). Activations do
not change with q: the quantized linear keeps nothing for backward (quantization.py).

What the table cannot see - the CUDA context, cuBLAS workspaces, the caching allocator's
fragmentation - is the margin: a mode fits when peak * (1 + MARGIN_FRACTION) + MARGIN_BYTES is
at most the device's free memory. `--mode auto` takes the first that fits of AUTO_ORDER (fastest
first) and says so; no torch here, so `siso-generate --plan` answers in well under a second.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

TABLE_PATH = Path(__file__).with_name("memory_table.json")
GIB = 2**30
MARGIN_FRACTION = 0.10
MARGIN_BYTES = int(0.75 * GIB)
# fastest first: quantized weights cost a dequantisation per linear per step; reference is the
# authors' fp32 setup, chosen only when asked for
AUTO_ORDER = (("default", "none"), ("low-memory", "none"), ("default", "int8"), ("low-memory", "int8"))
PLAN_ORDER = (*AUTO_ORDER, ("default", "fp8"), ("low-memory", "fp8"), ("reference", "none"))
BYTES_PER_LORA_PARAMETER = 16


class NoPrediction(LookupError):
    """The table has no case for these settings (a family, task or mode it was never measured for)."""


@dataclass(frozen=True)
class Prediction:
    """One mode's predicted peak (bytes) and what it needs with the margin."""

    mode: str
    quantize: str
    peak_bytes: int
    resident_bytes: int

    @property
    def needed_bytes(self) -> int:
        return int(self.peak_bytes * (1 + MARGIN_FRACTION)) + MARGIN_BYTES

    @property
    def label(self) -> str:
        return self.mode if self.quantize == "none" else f"{self.mode} + {self.quantize} weights"

    def describe(self) -> dict:
        return {**asdict(self), "peak_gib": round(self.peak_bytes / GIB, 2), "needed_gib": round(self.needed_bytes / GIB, 2)}


@lru_cache(maxsize=4)
def read_table(path: str = str(TABLE_PATH)) -> dict:
    table = Path(path)
    return json.loads(table.read_text())["cases"] if table.exists() else {}


def _case(cases: dict, family: str, task: str, mode: str, text_encoder_lora: bool, resolution: int, flow: str = "cli") -> dict:
    key = f"{family}/{task}/{mode}/te-{'on' if text_encoder_lora else 'off'}/{resolution}" + ("/bench-flow" if flow == "bench" else "")
    if key not in cases and text_encoder_lora:  # families without a text-encoder LoRA were measured without one
        key = key.replace("/te-on/", "/te-off/")
    if key not in cases:
        raise NoPrediction(f"no memory measurement for {family} {task} in {mode} mode")
    return cases[key]


def quantized_linear_bytes(linear: dict, quantize: str) -> int:
    """Bytes of the denoiser's linear weights under `quantize` (table row 'denoiser_linear')."""
    if quantize == "none":
        return linear["weight_bytes"]
    per_row = {"int8": 4 + 1, "fp8": 4}[quantize]  # fp32 scale (+ int8 zero point) per output row
    return linear["weights"] + per_row * linear["out_features"]


def predict(family: str, mode: str, resolution: int, text_encoder_lora: bool = False, task: str = "generate",
            quantize: str = "none", rank: int | None = None, num_grad_steps: int | None = None,
            table: str = str(TABLE_PATH), flow: str = "cli") -> Prediction:
    """The predicted peak device memory of one run (the formula in the module docstring).

    flow "bench": the setup of benchmarks/bench_step.py (models built on the GPU, feature networks
    in fp32 first), measured for SDXL at 512 px only; it checks the model against those figures."""
    cases = read_table(table)
    low = _case(cases, family, task, mode, text_encoder_lora, 512, flow)
    try:
        high = _case(cases, family, task, mode, text_encoder_lora, 1024, flow)
    except NoPrediction:  # measured at 512 px only: activations proportional to the pixel count
        high = None

    def at_size(field: str) -> float:
        if high is None:
            return low[field]
        return low[field] + (high[field] - low[field]) * (resolution**2 - 512**2) / (1024**2 - 512**2)

    resident = at_size("resident_bytes")
    activations = max(at_size("setup_peak_bytes"), at_size("iteration_peak_bytes")) - resident
    if high is None:
        activations *= resolution**2 / 512**2
    steps = low["num_inference_steps"]
    grad_steps = num_grad_steps if num_grad_steps is not None else low["num_grad_steps"]
    activations = max(activations, 0.0) * _through(grad_steps, steps) / _through(low["num_grad_steps"], steps)
    lora = BYTES_PER_LORA_PARAMETER * low["lora_parameters"] * ((rank or low["rank"]) / low["rank"] - 1)
    saved = low["denoiser_linear"]["weight_bytes"] - quantized_linear_bytes(low["denoiser_linear"], quantize)
    return Prediction(mode, quantize, int(resident + activations + lora - saved), int(resident + lora - saved))


def _through(num_grad_steps: int, num_inference_steps: int) -> int:
    """How many denoising steps carry gradients (0, or more than there are: all of them)."""
    return num_inference_steps if not num_grad_steps or num_grad_steps > num_inference_steps else num_grad_steps


@dataclass
class Plan:
    """Every mode's prediction, and the one `--mode auto` takes for `free_bytes` (None: unknown):
    `choice`, the first of its order that fits, else `smallest` (run anyway, with a warning)."""

    predictions: list[Prediction]
    free_bytes: int | None
    choice: Prediction | None
    smallest: Prediction | None = None

    @property
    def auto(self) -> Prediction | None:
        return self.choice or self.smallest

    def describe(self) -> dict:
        return {
            "free_gib": None if self.free_bytes is None else round(self.free_bytes / GIB, 2),
            "margin": f"{MARGIN_FRACTION:.0%} + {MARGIN_BYTES / GIB:.2f} GiB",
            "fits": self.choice is not None,
            "choice": None if self.auto is None else self.auto.describe(),
            "predictions": [prediction.describe() for prediction in self.predictions],
        }


def plan(family: str, resolution: int, text_encoder_lora: bool = False, task: str = "generate", rank: int | None = None,
         num_grad_steps: int | None = None, free_bytes: int | None = None, table: str = str(TABLE_PATH),
         quantize: str = "auto") -> Plan:
    """Predict every mode of PLAN_ORDER; choose the first of AUTO_ORDER that fits `free_bytes`
    (`quantize` int8 / fp8 / none: only the options with that quantization; auto: any)."""
    predictions = []
    for mode, kind in PLAN_ORDER:
        try:
            predictions.append(predict(family, mode, resolution, text_encoder_lora, task, kind, rank, num_grad_steps, table))
        except NoPrediction:
            continue
    known = {(p.mode, p.quantize): p for p in predictions}
    order = [(mode, quantize if quantize != "auto" else kind) for mode, kind in AUTO_ORDER
             if quantize == "auto" or kind == "none"]
    allowed = [known[key] for key in dict.fromkeys(order) if key in known]
    if free_bytes is None or not allowed:
        return Plan(predictions, free_bytes, None)
    choice = next((p for p in allowed if p.needed_bytes <= free_bytes), None)
    smallest = None if choice else min(allowed, key=lambda p: p.peak_bytes)
    return Plan(predictions, free_bytes, choice, smallest)


def fitting_mode_hint(family: str, resolution: int, text_encoder_lora: bool, task: str, free_bytes: int | None,
                      current: tuple[str, str]) -> str | None:
    """After an out-of-memory: the slower mode the model predicts would fit, as flags (None: none known)."""
    try:
        options = plan(family, resolution, text_encoder_lora, task, free_bytes=free_bytes)
    except (OSError, ValueError):
        return None
    order = list(AUTO_ORDER)
    later = order[order.index(current) + 1:] if current in order else order
    for prediction in options.predictions:
        if (prediction.mode, prediction.quantize) in later and (free_bytes is None or prediction.needed_bytes <= free_bytes):
            return prediction.label
    return None


def nvidia_smi_free_bytes(index: int = 0) -> int | None:
    """Free memory of NVIDIA GPU `index` from nvidia-smi, without importing torch (None: no such GPU)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits", f"--id={index}"],
                             capture_output=True, text=True, timeout=10)
        return int(float(out.stdout.strip().splitlines()[0])) * 2**20 if out.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def format_plan(options: Plan, family: str, resolution: int, device_label: str) -> str:
    """The table `siso-generate --plan` prints."""
    lines = [f"predicted peak GPU memory, {family} at {resolution} px ({device_label}; margin {MARGIN_FRACTION:.0%} + "
             f"{MARGIN_BYTES / GIB:.2f} GiB):"]
    for p in options.predictions:
        fits = "" if options.free_bytes is None else ("  fits" if p.needed_bytes <= options.free_bytes else "  does not fit")
        lines.append(f"  {p.label:<26} {p.peak_bytes / GIB:6.1f} GiB   (needs {p.needed_bytes / GIB:5.1f} GiB){fits}")
    if resolution > 1024:
        lines.append("  (above 1024 px, the largest size measured: extrapolated linearly in the pixel count)")
    if options.choice is not None:
        lines.append(f"--mode auto would run: {options.choice.label}")
    elif options.smallest is not None:
        lines.append(f"--mode auto would run: {options.smallest.label}, the smallest, with a warning: nothing allowed is "
                     f"predicted to fit{_what_helps(options, family, resolution)}")
    return "\n".join(lines)


def _what_helps(options: Plan, family: str, resolution: int) -> str:
    """What would make a run fit when nothing allowed does: quantized weights, if --quantize none
    ruled them out and they fit; a smaller resolution, if it lowers this family's peak."""
    fitting = [p for p in options.predictions if options.free_bytes is not None and p.needed_bytes <= options.free_bytes]
    if any(p.quantize != "none" for p in fitting) and options.smallest.quantize == "none":
        return " (quantized weights would: --quantize auto or int8)"
    smallest = options.smallest
    try:
        smaller = predict(family, smallest.mode, max(resolution // 2, 256), quantize=smallest.quantize).peak_bytes
    except NoPrediction:
        return ""
    return " (a smaller --resolution would help)" if smaller < smallest.peak_bytes else ""


FAMILY_NAMES = {"sdxl": "SDXL-Turbo", "flux": "FLUX.1-schnell", "sana": "Sana 1600M", "flux2_klein": "FLUX.2 [klein] 4B"}
TABLE_COLUMNS = (("default", "none"), ("low-memory", "none"), ("default", "int8"), ("low-memory", "int8"), ("reference", "none"))


def markdown_table(resolution: int = 512, table: str = str(TABLE_PATH)) -> str:
    """The README's and docs/memory.md's table: predicted peak GiB per family and mode, each
    family with its recipe's text-encoder choice, plus SDXL editing."""
    from .config import FAMILY_RECIPES

    header = "| predicted peak GiB, " + f"{resolution} px | " + " | ".join(
        mode if q == "none" else f"{mode} + int8" for mode, q in TABLE_COLUMNS) + " |"
    lines = [header, "| --- |" + " --- |" * len(TABLE_COLUMNS)]
    rows = [(family, "generate", bool(FAMILY_RECIPES[family]["train_text_encoder"])) for family in FAMILY_NAMES]
    rows.append(("sdxl", "edit", False))
    for family, task, lora in rows:
        cells = []
        for mode, quantize in TABLE_COLUMNS:
            try:
                cells.append(f"{predict(family, mode, resolution, lora, task, quantize, table=table).peak_bytes / GIB:.1f}")
            except NoPrediction:
                cells.append("-")
        name = FAMILY_NAMES[family] + (" editing" if task == "edit" else "") + (" (text-encoder LoRA)" if lora else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
