"""What every evaluation shares, whatever it scores (a LoRA by rendering, evaluate.py; an edit by
its edited photo, edit_scores.py): reading the run folder, the subject photo, the report and where
it goes (RUN/eval/, swapped in whole; a side folder only if new, empty or an earlier evaluation),
and the summary it adds to run.json. No torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import SISOInputError, check_file, setting

EVAL_DIR = "eval"
METRICS_FILE = "metrics.json"


@dataclass
class EvalReport:
    """metrics.json's content plus where it was written."""

    record: dict
    output_dir: Path | None = None
    images: dict[tuple[int, int, str], Image.Image] = field(default_factory=dict)  # (prompt, seed, "lora"/"base")

    @property
    def summary(self) -> dict:
        return self.record["summary"]


def subject_photo_path(info, given: str | None = None) -> Path:
    """The photo to compare with: `given`, else the one the run's run.json names (no image is read,
    no torch). SISOInputError when there is none or it has moved."""
    path = given or (info.record.subject_image_path if info.record is not None else None)
    if not path:
        why = "has no run.json" if info.record is None else "names no subject photo in its run.json"
        raise SISOInputError(f"run {str(info.folder)!r} {why}: pass {setting('subject_image_path')} (the photo the LoRA was optimised on)")
    if not Path(path).exists():
        raise SISOInputError(f"subject photo {path!r} of run {str(info.folder)!r} does not exist any more: pass {setting('subject_image_path')}")
    return check_file(path, "subject photo", "give the path of a PNG/JPEG/WebP photo")


def subject_photo(info, given: str | None = None) -> Path:
    """`subject_photo_path`, read as a run reads it (SISOInputError for a photo that is not one)."""
    from ..io.images import load_subject_image

    return Path(load_subject_image(subject_photo_path(info, given)).path)


def read_run(run_dir: str | os.PathLike):
    """The run's LoRA and record (io.run_record.LoraInfo); SISOInputError if it has no LoRA to score."""
    from ..io.run_record import RunRecord, lora_info

    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise SISOInputError(f"run folder {str(run_dir)!r} does not exist: give a folder siso-generate or a sweep wrote")
    if run_dir.is_dir() and not (run_dir / "run.json").exists() and not any(run_dir.glob("*.safetensors")):
        runs = sorted(p.parent for p in [*run_dir.glob("*/run.json"), *run_dir.glob("*/*/run.json")])
        if runs:
            raise SISOInputError(f"{str(run_dir)!r} holds {len(runs)} run{'s' if len(runs) != 1 else ''} but is not one: pass them, e.g. {runs[0].parent}/*/")
    if run_dir.is_dir() and (run_dir / "run.json").is_file():
        status = RunRecord.read(run_dir).status
        if status not in (None, "completed"):
            raise SISOInputError(f"run {str(run_dir)!r} did not complete (status {status}): there is no final LoRA to evaluate")
    return lora_info(run_dir)


def is_edit_run(info) -> bool:
    """Whether the run folder holds an edit (siso-edit, notebook 04), not a text-to-image LoRA."""
    return info.record is not None and info.record.task == "edit"


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """An evaluation folder may be new, empty, or an earlier evaluation (it holds metrics.json):
    anything else is the user's and is never replaced. Its parent must be writable. Absolute path."""
    from ..preflight import check_writable

    output_dir = Path(output_dir).absolute()
    if output_dir.exists() and not output_dir.is_dir():
        raise SISOInputError(f"{setting('output_dir')} {str(output_dir)!r} is a file: give a folder for the evaluation (it is created)")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not (output_dir / METRICS_FILE).is_file():
        raise SISOInputError(
            f"{setting('output_dir')} {str(output_dir)!r} holds other files and no earlier evaluation: give a new or empty folder "
            "(an evaluation replaces its folder as a whole)"
        )
    parent = next((folder for folder in output_dir.parents if folder.exists()), None)
    if parent is not None:
        check_writable(parent, f"the folder of {setting('output_dir')}")
    return output_dir


def attach_to_run_json(run_dir: Path, report: EvalReport) -> None:
    """Add the summary to run.json (atomically; other entries untouched). No run.json: nothing."""
    from ..io.run_record import RunRecord

    record = RunRecord.find(run_dir) if report.output_dir is not None else None
    if record is None:
        return
    entry = {
        "summary": report.summary,
        "metrics_file": str(report.output_dir / METRICS_FILE),
        "judges": report.record["judges"],
        "evaluated_at": report.record["evaluated_at"],
    }
    if report.record.get("task") == "edit":  # the edited photo was scored (edit_scores.py), no prompt rendered
        entry["task"] = "edit"
    else:
        entry.update(class_name=report.record["class_name"], prompts=len(report.record["prompts"]), seeds=report.record["seeds"])
    record.data["evaluation"] = entry
    record.write()
