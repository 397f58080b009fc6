"""Evaluation: does a LoRA keep the subject (DINO, CLIP-I, IR), follow other prompts (CLIP-T), vary
across seeds (our seed diversity) and avoid copying the photo (the paper's diversity, an MSE)? The
paper's Tables 1 and 2 measure these on DreamBench; an edit run is scored as its Table 3 does.

    from siso_lib.evaluation import Evaluator, EvalSettings, Judges
    evaluator = Evaluator(Judges.from_names(ir_features_path="ir_features.pth"))
    report = evaluator.evaluate("outputs/runs/<run>", EvalSettings(seeds=range(4)))
    report.summary   # {"lora": {"dino": ..}, "base": {..}, "delta": {..}}

Command line: `siso-eval RUN_FOLDER` (cli/evaluate.py). Modules: prompts (templates, no torch),
metrics (the math), judges (the scoring networks), reports (the run folder, the report, run.json;
no torch), evaluate (render, score, write), edit_scores (an edit run: its edited photo), grid
(the picture).
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
