"""Evaluation: does a LoRA keep the subject (DINO, CLIP-I, IR), follow other prompts (CLIP-T), and
vary across seeds (diversity)? The paper's Table 1 measures these on DreamBench.

    from siso_lib.evaluation import Evaluator, EvalSettings, Judges
    evaluator = Evaluator(Judges.from_names(ir_features_path="ir_features.pth"))
    report = evaluator.evaluate("outputs/runs/<run>", EvalSettings(seeds=range(4)))
    report.summary   # {"lora": {"dino": ..}, "base": {..}, "delta": {..}}

Command line: `siso-eval RUN_FOLDER` (cli.py). Modules: prompts (templates, no torch), metrics
(the math), judges (the scoring networks), evaluate (render, score, write), grid (the picture).
Names load on first use, so the command line checks its input before torch is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "EvalReport": "evaluate",
    "EvalSettings": "evaluate",
    "Evaluator": "evaluate",
    "read_run": "evaluate",
    "Judges": "judges",
    "GENERIC_TEMPLATES": "prompts",
    "evaluation_prompts": "prompts",
    "fill_template": "prompts",
    "guess_class_name": "prompts",
    "read_prompt_file": "prompts",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from .evaluate import EvalReport, EvalSettings, Evaluator, read_run
    from .judges import Judges
    from .prompts import GENERIC_TEMPLATES, evaluation_prompts, fill_template, guess_class_name, read_prompt_file


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'siso_lib.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
