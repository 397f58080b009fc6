"""Everything the "SISO Subject Edit" node does, without ComfyUI: checks, command, child process, result.

`run_edit_job(EditRequest, Hooks)` is one whole edit, the way `siso_runner.run_job` is one LoRA:

1. check the inputs with the generator's checks (interpreter, base model, IR and DINO paths,
   extra_args; the base model must be SDXL: SISO editing runs on SDXL-Turbo), and that there is a
   region to edit: a painted MASK, or `input_class` for the automatic Grounding-DINO + SAM mask;
2. write the scene and the subject (the first image of each IMAGE batch) and the MASK (ComfyUI's
   MASK: 1 = the region the subject goes into, e.g. painted in Load Image's mask editor; > 0.5
   counts) as temporary PNGs; a MASK with nothing in it (Load Image's 64x64 zeros for a photo
   without a painted mask) means "no mask";
3. run `siso-edit` (the bundled `siso_edit.py` launcher) in a fresh `<runs>/<time>-edit-<prompt>/`
   folder as a child process, exactly as the generator node runs siso-generate (`supervise`:
   output streamed, `SISO_PROGRESS` lines to `Hooks.on_progress`, cancel = SIGTERM to the group,
   then SIGKILL);
4. judge the exit code, `SISO_RESULT` and stderr into one line ("Success" or "Failed: <reason>"),
   keep copies of the inputs in the run folder (subject.png, scene_input.png, mask_input.png), and
   always delete the temporary files and a run folder the run left empty.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from . import siso_defaults
    from .siso_runner import (
        PACK_DIR, SUBJECT_NAME, Hooks, InputProblem, JobRequest, JobResult, SISOParams, _as_array, _first, _format_number,
        _unique_dirs, check_inputs, diagnose, failed, image_to_png, launch, remove_if_empty, slug, summary_lines,
    )
except ImportError:  # imported as a top-level module (tests, tools)
    import siso_defaults  # type: ignore
    from siso_runner import (  # type: ignore
        PACK_DIR, SUBJECT_NAME, Hooks, InputProblem, JobRequest, JobResult, SISOParams, _as_array, _first, _format_number,
        _unique_dirs, check_inputs, diagnose, failed, image_to_png, launch, remove_if_empty, slug, summary_lines,
    )

EDIT_LAUNCHER = PACK_DIR / "siso_edit.py"
SCENE_NAME = "scene_input.png"  # the scene as the run saw it (first of a batch), kept in the run folder
MASK_NAME = "mask_input.png"  # the MASK as a scene-sized black/white PNG, kept in the run folder
MASK_THRESHOLD = 0.5  # a MASK value above this marks the region to edit
EDIT_RUNS_PREFIX = "edit"

_E = siso_defaults.EDIT_DEFAULTS


@dataclass
class EditParams:
    """The siso-edit arguments the node exposes (defaults: SISOEditConfig's, via siso_defaults)."""

    prompt: str = _E["prompt"]  # the subject's prompt, "a photo of a <class>"
    input_class: str = ""  # the scene object the subject replaces (inversion prompt; the automatic mask)
    base_model_path: str = _E["pretrained_model_name_or_path"]
    ir_features_path: str = ""
    dino_model_name: str = _E["dino_model_name"]
    num_train_epochs: int = _E["num_train_epochs"]
    learning_rate: float = _E["learning_rate"]
    bg_mse_loss_weight: float = _E["bg_mse_loss_weight"]
    inversion_max_step: float = _E["inversion_max_step"]
    dino_features_weight: float = _E["dino_features_weight"]
    ir_features_weight: float = _E["ir_features_weight"]
    seed: int = _E["seed"]
    resolution: int = _E["resolution"]
    rank: int = _E["rank"]
    early_stopping_max_count: int = _E["early_stopping_max_count"]
    early_stopping_threshold_percentage: float = _E["early_stopping_threshold_percentage"]
    train_text_encoder: bool = _E["train_text_encoder"]
    device: str = _E["device"]
    mixed_precision: str = _E["precision"]
    mode: str = _E["mode"]
    extra_args: str = ""


@dataclass
class EditRequest:
    scene: Any  # IMAGE [B, H, W, C] floats in 0..1: the photo to edit
    subject: Any  # IMAGE: the ONE photo of the subject
    params: EditParams
    runs_root: str  # each edit gets a new <time>-edit-<prompt> folder here
    mask: Any = None  # MASK [B, H, W] (1 = the region to edit) or None
    python_executable: str = ""  # empty: the recorded separate environment, else ComfyUI's python
    script_path: str = ""  # empty: the bundled siso_edit.py launcher
    search_dirs: dict[str, list[str]] = field(default_factory=dict)
    temp_root: str | None = None
    terminate_grace_s: float = 10.0
    poll_interval_s: float = 0.1


@dataclass
class EditJobResult(JobResult):
    """JobResult of an edit: `result_image` is the edited scene; no LoRA is placed for ComfyUI's loaders."""

    before_after: str = ""

    def report(self) -> str:
        """A few human lines: the status, the edited picture, the run folder, how the run went."""
        lines = [self.status]
        if self.result_image:
            lines.append(f"edited image: {self.result_image}")
        if self.run_dir:
            lines.append(f"run folder (before_after.png, mask.png, scene.png, LoRA, loss_curve.png, run.json): {self.run_dir}")
        return "\n".join(lines + summary_lines(self.result, self.progress, self.seconds, self.notes))


def mask_to_png(mask: Any, width: int, height: int, path: str) -> list[str] | None:
    """ComfyUI's MASK as a black/white PNG of the scene's size (white = the region to edit); notes, or
    None when the MASK marks nothing (then the region is found from input_class)."""
    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    if mask is None:
        return None
    array = _as_array(mask)
    if array.ndim not in (2, 3):
        raise InputProblem(f"mask has shape {list(array.shape)}: expected ComfyUI's MASK [B, H, W]; connect the scene's Load Image MASK")
    array, notes = _first(array, "mask", "mask", 2)
    if not np.isfinite(array).all():
        raise InputProblem("mask contains NaN or infinite values")
    region = array > MASK_THRESHOLD
    if array.size == 0 or not region.any():
        return None
    if tuple(array.shape) != (height, width):
        raise InputProblem(
            f"mask is {array.shape[1]}x{array.shape[0]} pixels but scene_image is {width}x{height}: paint the mask on the "
            "scene's own Load Image (mask editor) and connect its MASK, or leave mask unconnected"
        )
    if region.all():
        raise InputProblem("mask covers the whole scene, so nothing of it would be kept: paint only where the subject goes")
    Image.fromarray(region.astype(np.uint8) * 255, mode="L").save(path, format="PNG")
    notes.append(f"mask: {region.mean():.0%} of the scene (white in {MASK_NAME})")
    return notes


def check_edit_inputs(request: EditRequest) -> tuple[str, str, SISOParams]:
    """The generator's checks on the shared settings, then the edit's own; (python, script, resolved params)."""
    p = request.params
    shared = SISOParams(
        prompt=p.prompt, base_model_path=p.base_model_path, ir_features_path=p.ir_features_path or "",
        dino_model_name=p.dino_model_name, model_family="auto", extra_args=p.extra_args or "",
    )
    job = JobRequest(image=None, params=shared, loras_root=request.runs_root, python_executable=request.python_executable,
                     siso_script_path=request.script_path or str(EDIT_LAUNCHER), search_dirs=request.search_dirs)
    python, script, _flavour, resolved = check_inputs(job)
    if resolved.model_family != "sdxl":
        names = siso_defaults.FAMILY_NAMES
        raise InputProblem(
            f"base_model_path {p.base_model_path!r} is a {names.get(resolved.model_family, resolved.model_family)} model: "
            f"SISO editing runs on SDXL(-Turbo): give an SDXL model, e.g. {siso_defaults.recipe('sdxl')['pretrained_model_name_or_path']}"
        )
    return python, script, resolved


def build_edit_command(python: str, script: str, scene: str, subject: str, mask: str | None, params: EditParams,
                       resolved: SISOParams, output_dir: str) -> list[str]:
    """siso-edit's argv (`resolved`: the checked model paths)."""
    import shlex  # noqa: PLC0415

    command = [
        python, "-u", script,
        "--input_image_path", scene,
        "--subject_image_path", subject,
        "--prompt", params.prompt,
        "--pretrained_model_name_or_path", resolved.base_model_path,
        "--dino_model_name", resolved.dino_model_name,
        "--output_dir", output_dir,
        "--num_train_epochs", str(int(params.num_train_epochs)),
        "--learning_rate", repr(float(params.learning_rate)),
        "--bg_mse_loss_weight", repr(float(params.bg_mse_loss_weight)),
        "--inversion_max_step", repr(float(params.inversion_max_step)),
        "--dino_features_weight", repr(float(params.dino_features_weight)),
        "--ir_features_weight", repr(float(params.ir_features_weight)),
        "--seed", str(int(params.seed)),
        "--resolution", str(int(params.resolution)),
        "--rank", str(int(params.rank)),
        "--early_stopping_max_count", str(int(params.early_stopping_max_count)),
        "--early_stopping_threshold_percentage", _format_number(params.early_stopping_threshold_percentage),
        "--train_text_encoder" if params.train_text_encoder else "--no-train_text_encoder",
        "--device", params.device or "auto",
        "--mixed_precision", params.mixed_precision or "auto",
        "--mode", params.mode or "default",
        "--quiet",
    ]
    if resolved.ir_features_path:
        command += ["--ir_features_path", resolved.ir_features_path]
    if params.input_class.strip():
        command += ["--input_class", params.input_class.strip()]
    if mask:
        command += ["--mask", mask]
    return command + shlex.split(params.extra_args or "", posix=os.name != "nt")


def run_edit_job(request: EditRequest, hooks: Hooks | None = None) -> EditJobResult:
    """Check, run, judge, clean up. Never raises for a bad input or a failed run: see EditJobResult.status."""
    hooks = hooks or Hooks()
    started = time.monotonic()
    job = EditJobResult(status="Failed: not started")
    temp_dir = run_dir = None
    try:
        python, script, resolved = check_edit_inputs(request)
        params = request.params
        temp_dir = tempfile.mkdtemp(prefix="siso-comfyui-edit-", dir=request.temp_root)
        scene, subject, mask = (os.path.join(temp_dir, name) for name in (SCENE_NAME, SUBJECT_NAME, MASK_NAME))
        job.notes.extend(image_to_png(request.scene, scene, name="scene_image"))
        job.notes.extend(image_to_png(request.subject, subject))
        from PIL import Image  # noqa: PLC0415

        with Image.open(scene) as written:
            width, height = written.size
        mask_notes = mask_to_png(request.mask, width, height, mask)
        if mask_notes is None:
            mask = None
            if not params.input_class.strip():
                raise InputProblem(
                    "no region to edit: paint it in the scene's Load Image (mask editor) and connect its MASK to mask, "
                    "or give input_class (the scene object the subject replaces) to find it automatically"
                )
            job.notes.append(f"no painted mask: Grounding-DINO + SAM look for {params.input_class.strip()!r} in the scene")
        else:
            job.notes.extend(mask_notes)
        if not resolved.ir_features_path:
            job.notes.append("no ir_features_path: optimised with DINO features only (the paper uses DINO + IR)")
        root = Path(request.runs_root)
        name = _unique_dirs([root], f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{EDIT_RUNS_PREFIX}-{slug(params.prompt)}")
        run_dir = root / name
        job.run_dir = str(run_dir)
        command = build_edit_command(python, script, scene, subject, mask, params, resolved, str(run_dir))
        job.command = command
        outcome = launch(command, python, str(run_dir), hooks, request.terminate_grace_s, request.poll_interval_s)
        job.returncode, job.cancelled = outcome.returncode, outcome.cancelled
        job.progress, job.result = outcome.progress, outcome.result
        image = outcome.result.get("result_image") or str(run_dir / "result.png")
        job.result_image = image if os.path.isfile(image) else ""
        strip = outcome.result.get("before_after") or str(run_dir / "before_after.png")
        job.before_after = strip if os.path.isfile(strip) else ""
        if any(run_dir.iterdir()):
            _keep_inputs(run_dir, (subject, SUBJECT_NAME), (scene, SCENE_NAME), (mask, MASK_NAME))
        if outcome.cancelled:
            job.status = "Cancelled"
            job.notes.insert(0, f"cancelled after {outcome.seconds:.1f} s" + (", SIGKILL needed" if outcome.killed else ""))
            if job.result_image:
                job.notes.append(f"the best edit so far: {job.result_image}")
        elif outcome.returncode == 0 and job.result_image:
            job.status = "Success"
        elif outcome.returncode == 0:
            job.status = failed(f"siso-edit finished (exit code 0) but wrote no edited image in {run_dir}")
        else:
            job.status = failed(diagnose(outcome.returncode, outcome.stderr_tail, outcome.result, outcome.stdout_tail, python))
            if job.result_image:
                job.notes.append(f"the best edit before the failure was saved: {job.result_image}")
    except InputProblem as problem:
        job.status = failed(str(problem))
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        if run_dir is not None and remove_if_empty(run_dir):
            job.run_dir = ""
        job.seconds = time.monotonic() - started
    return job


def _keep_inputs(run_dir: Path, *files: tuple[str | None, str]) -> None:
    """Copies of the inputs the run used beside its run.json (never replacing a file the run wrote)."""
    for source, name in files:
        target = run_dir / name
        if source and os.path.isfile(source) and not target.exists():
            try:
                shutil.copyfile(source, target)
            except OSError:
                pass
