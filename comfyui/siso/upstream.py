"""The authors'-script flavour: a siso_script_path other than siso-lab's, kept in one place.

The authors' `siso_generation_sdxl.py` (and any script with its argument list) accepts only the
upstream arguments, prints a tqdm bar instead of SISO_PROGRESS lines, needs the IR weights, runs
in its own pinned environment, and writes only the diffusers-format LoRA, whose SDXL UNet keys
ComfyUI ignores: the node gives it those arguments, reads progress from tqdm's `n/total`
counter, names that environment when a module is missing, and makes the Kohya copy itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .folders import KOHYA_NAME
from .messages import InputProblem, one_line
from .progress import OutputReader, parse_line

TQDM_COUNTER = re.compile(r"(?:^|\s|\|)(\d+)/(\d+)\s*\[")


def script_flavour(script: str | os.PathLike) -> str:
    """'siso-lab' for this project's scripts (they mention siso_lib and accept every option), 'upstream' for any other."""
    try:
        with open(script, "rb") as handle:
            head = handle.read(65536)
    except OSError:
        return "upstream"
    return "siso-lab" if b"siso_lib" in head else "upstream"


def check_inputs(ir_features_path: str, ir_features_weight: float) -> None:
    """InputProblem for settings the authors' script cannot run with."""
    if not ir_features_path and ir_features_weight > 0:
        raise InputProblem(
            "ir_features_path is empty: the authors' script needs the IR weights (ir_features.pth); "
            "only the bundled siso-generate runs DINO-only"
        )


def arguments(train_text_encoder: bool, mixed_precision: str) -> list[str]:
    """The rest of the authors' documented command (their argparse defaults differ from it)."""
    command = ["--lr_scheduler", "constant", "--lr_warmup_steps", "0", "--train_batch_size", "1"]
    if train_text_encoder:
        command.append("--train_text_encoder")
    precision = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}.get(mixed_precision)
    if precision:
        command += ["--mixed_precision", precision]
    return command


def parse_tqdm(text: str) -> dict | None:
    """step/total from a tqdm redraw ('Steps:  12%|##  | 6/50 [00:03<...')."""
    matches = TQDM_COUNTER.findall(text)
    if not matches:
        return None
    step, total = (int(x) for x in matches[-1])
    if total <= 0 or step > total:
        return None
    return {"step": step, "total": total}


class TqdmReader(OutputReader):
    """OutputReader that also takes progress from tqdm counters on stderr, until a SISO_PROGRESS line (with a loss) came."""

    def redraw(self, text: str) -> None:
        record = parse_tqdm(text)
        if record is not None and record["step"] > self.progress.get("step", 0) and "loss" not in self.progress:
            self.update(record)

    def stderr_line(self, text: str) -> None:
        if parse_line(text) is None:
            self.redraw(text)


def missing_module(module: str, where: str) -> str:
    """Why the authors' script failed on an import (`where`: ' (<python>)' or '')."""
    return (f"the Python that runs the script{where} has no module '{module}': set python_executable to "
            "the environment the authors' script is installed in")


def add_kohya_copy(diffusers: str) -> tuple[str, str]:
    """A Kohya-key copy beside a diffusers-format SDXL LoRA: (its path or '' if it failed, a note for the report)."""
    from .lora_keys import convert_file

    kohya = str(Path(diffusers).parent / KOHYA_NAME)
    try:
        convert_file(diffusers, kohya)
    except Exception as error:  # noqa: BLE001 - any unreadable file: the run keeps its diffusers file
        return "", f"could not convert the LoRA to Kohya keys ({one_line(str(error))}): ComfyUI may apply only part of it"
    return kohya, f"converted the diffusers LoRA to Kohya keys for ComfyUI: {KOHYA_NAME}"
