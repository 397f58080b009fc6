"""One whole run of each node, without ComfyUI: check, start the child, judge, clean up.

`run_job` is the "SISO LoRA Generator": the subject (the first image of an IMAGE batch, its
transparency flattened onto white) as subject.png in a new run folder, siso-generate (or the
authors' script) writing into that folder, and after a success the file ComfyUI's LoraLoader
applies fully placed under models/loras (see folders.py). `run_edit_job` is the "SISO Subject
Edit": the scene, subject and MASK as PNGs in a new run folder, siso-edit writing into it. The
inputs stay in the run folder and run.json records their paths there, so `siso-eval RUN` finds
the photo by itself. Neither raises for a bad input or a failed run: the result's `status` is
one line, "Success", "Failed: <reason>" or "Cancelled". A run folder that ends up holding only
the inputs (nothing ran, or the run wrote nothing) is removed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import defaults, images, upstream
from .checks import check_edit_model, check_inputs
from .child import Hooks, launch
from .commands import build_command, build_edit_command
from .diagnose import diagnose
from .folders import (
    EDIT_RUNS_PREFIX, MASK_NAME, SCENE_NAME, SUBJECT_NAME, Folders, choose_folders, default_runs_root, discard_if_only_inputs,
    find_lora_files, listing_folder, place_copy, place_file, run_name, unique_dir,
)
from .messages import InputProblem, failed, one_line, summary_lines
from .pack import EDIT_LAUNCHER, LAUNCHER, recorded_python
from .params import EditParams, SISOParams, recipe_notes
from .progress import OutputReader

PREVIEW_NAME = "preview.jpg"  # in the run folder while it runs: each iteration's image (--preview_file), shown on the node
NO_IR_NOTE = "no ir_features_path: optimised with DINO features only (the paper uses DINO + IR)"
NO_COMFY_MODEL_NOTE = ("this ComfyUI has no {name} model (ComfyUI 0.3.64 has none; later releases have FLUX.2), so its "
                       "LoraLoader cannot apply this LoRA here: use it with diffusers (load_lora_weights), or in a ComfyUI "
                       "that renders {name}")
FAMILY_FILE_NOTES = {
    "flux": " (diffusers-format LoRA, which ComfyUI's LoraLoader reads as it is; no Kohya file)",
    "flux2_klein": " (diffusers-format LoRA, no Kohya file; whether a ComfyUI with FLUX.2 maps all its keys is not checked)",
}


@dataclass
class JobRequest:
    image: Any  # IMAGE: torch tensor or numpy array, [B, H, W, C] (or [H, W, C]) floats in 0..1
    params: SISOParams
    loras_root: str  # ComfyUI's models/loras (or any folder): where runs go by default
    weights_output_dir: str = ""  # empty: <loras_root>/siso; relative: under loras_root
    runs_root: str = ""  # where a run's other files go when its LoRA goes under a loras folder (see folders.py)
    loras_folders: list[str] = field(default_factory=list)  # every folder LoraLoader lists (default: [loras_root])
    mask: Any = None  # MASK ([B, H, W], 1 = transparent, as Load Image gives it) or None
    unique_subfolder: bool = True  # a new <time>-<prompt> folder per run inside weights_output_dir
    python_executable: str = ""  # empty: the recorded separate environment, else this process's interpreter
    siso_script_path: str = ""  # empty: the bundled siso-generate launcher
    search_dirs: dict[str, list[str]] = field(default_factory=dict)  # "ir"/"base_model"/"dino" -> folders for relative names
    env: dict[str, str] = field(default_factory=dict)  # variables the child gets besides ComfyUI's (host.child_environment)
    comfy_families: tuple[str, ...] | None = None  # families the running ComfyUI has a model for (None: not known)
    terminate_grace_s: float = 10.0
    poll_interval_s: float = 0.1


@dataclass
class EditRequest:
    scene: Any  # IMAGE [B, H, W, C] floats in 0..1: the photo to edit
    subject: Any  # IMAGE: the ONE photo of the subject
    params: EditParams
    runs_root: str  # each edit gets a new <time>-edit-<prompt> folder here
    mask: Any = None  # MASK [B, H, W] (1 = the region to edit) or None
    python_executable: str = ""
    script_path: str = ""  # empty: the bundled siso_edit.py launcher
    search_dirs: dict[str, list[str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    terminate_grace_s: float = 10.0
    poll_interval_s: float = 0.1


@dataclass
class JobResult:
    status: str  # "Success", "Failed: <reason>" or "Cancelled"
    lora_path: str = ""  # the file ComfyUI applies fully (SDXL: Kohya keys; FLUX.1, FLUX.2 klein: the diffusers file), after a success
    diffusers_path: str = ""
    kohya_path: str = ""
    run_dir: str = ""
    result_image: str = ""
    returncode: int | None = None
    cancelled: bool = False
    seconds: float = 0.0
    progress: dict = field(default_factory=dict)  # the last progress record
    result: dict = field(default_factory=dict)  # the SISO_RESULT object, if any
    notes: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    loras_root: str = ""
    family: str = ""  # one of defaults.NODE_FAMILIES once the inputs were checked

    @property
    def ok(self) -> bool:
        return self.status == "Success"

    @property
    def lora_name(self) -> str:
        """The name ComfyUI's LoraLoader lists for lora_path ('' if it is outside loras_root)."""
        if not self.lora_path or not self.loras_root:
            return ""
        try:
            return Path(self.lora_path).resolve().relative_to(Path(self.loras_root).resolve()).as_posix()
        except ValueError:
            return ""

    def where_lines(self) -> list[str]:
        """Where the LoRA and the run folder are."""
        lines = []
        if self.lora_path:
            lines.append(f"LoRA: {self.lora_path}")
            if self.lora_name:
                lines.append(f"LoraLoader name: {self.lora_name}")
        if self.family:
            lines.append(f"model family: {defaults.FAMILY_NAMES.get(self.family, self.family)}" + FAMILY_FILE_NOTES.get(self.family, ""))
        if self.run_dir:
            what = " (diffusers-format LoRA, result.png, loss_curve.png, run.json)" if self.diffusers_path else ""
            lines.append(f"run folder{what}: {self.run_dir}")
        return lines

    def report(self) -> str:
        """A few human lines: the status, where things are, how the run went."""
        return "\n".join([self.status, *self.where_lines(), *summary_lines(self.result, self.progress, self.seconds, self.notes)])


@dataclass
class EditJobResult(JobResult):
    """JobResult of an edit: `result_image` is the edited scene; no LoRA is placed for ComfyUI's loaders."""

    before_after: str = ""

    def where_lines(self) -> list[str]:
        lines = [f"edited image: {self.result_image}"] if self.result_image else []
        if self.run_dir:
            lines.append(f"run folder (before_after.png, mask.png, scene.png, LoRA, loss_curve.png, run.json): {self.run_dir}")
        return lines


def remove_preview(run_dir: Path) -> None:
    """The live preview is the node's alone (the run's own pictures are result.png and the rest): gone after the run."""
    for path in [run_dir / PREVIEW_NAME, *run_dir.glob(f".{PREVIEW_NAME}.*.partial")]:  # and a write the child left
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def _cancelled(job: JobResult, seconds: float, killed: bool) -> None:
    job.status = "Cancelled"
    job.notes.insert(0, f"cancelled after {seconds:.1f} s" + (", SIGKILL needed" if killed else ""))


def run_job(request: JobRequest, hooks: Hooks | None = None) -> JobResult:
    """The generator's run: check, run, judge, place the LoRA, clean up (see the module docstring)."""
    hooks = hooks or Hooks()
    started = time.monotonic()
    job = JobResult(status="Failed: not started", loras_root=request.loras_root)
    folders: Folders | None = None
    try:
        python, script, flavour, params = check_inputs(request.params, request.python_executable, request.siso_script_path,
                                                       str(LAUNCHER), request.search_dirs)
        job.family = params.model_family
        job.notes.extend(recipe_notes(params))
        if job.family not in (request.comfy_families or (job.family,)):
            job.notes.append(NO_COMFY_MODEL_NOTE.format(name=defaults.FAMILY_NAMES[job.family]))
        if not request.python_executable.strip() and python == recorded_python():
            job.notes.append(f"python: {python} (the separate environment install.py --venv made)")
        folders = choose_folders(
            request.loras_root, request.runs_root or default_runs_root(request.loras_root), request.weights_output_dir,
            request.unique_subfolder, params.prompt, loras_folders=request.loras_folders or None,
        )
        run_dir = folders.run_dir
        job.run_dir = str(run_dir)
        # the subject as the run sees it, written where it stays: run.json records this path (siso-eval RUN reads it)
        image_path = str(run_dir / SUBJECT_NAME)
        job.notes.extend(images.image_to_png(request.image, image_path, request.mask))
        if not params.ir_features_path:
            job.notes.append(NO_IR_NOTE)
        preview = str(run_dir / PREVIEW_NAME) if flavour == "siso-lab" else ""  # the authors' scripts write none
        job.command = build_command(python, script, flavour, image_path, params, str(run_dir), str(run_dir), preview)
        reader = upstream.TqdmReader if flavour == "upstream" else OutputReader
        outcome = launch(job.command, python, str(run_dir), hooks, request.terminate_grace_s, request.poll_interval_s, reader,
                         env=request.env)
        job.returncode, job.cancelled = outcome.returncode, outcome.cancelled
        job.progress, job.result = outcome.progress, outcome.result
        diffusers, kohya = find_lora_files(run_dir, outcome.result)
        diffusers_only = params.model_family not in defaults.KOHYA_FAMILIES  # FLUX.1, FLUX.2 klein: the diffusers file as it is
        if diffusers_only:
            kohya = ""  # ComfyUI maps the diffusers FLUX keys itself; Kohya naming is SDXL's
        elif diffusers and not kohya:  # a script that writes only the diffusers file (the authors')
            kohya, note = upstream.add_kohya_copy(diffusers)
            job.notes.append(note)
        image = outcome.result.get("result_image") or str(run_dir / "result.png")
        job.result_image = image if os.path.isfile(image) else ""
        succeeded = not outcome.cancelled and outcome.returncode == 0 and bool(kohya or diffusers)
        comfy_file = diffusers if diffusers_only else kohya  # the file ComfyUI's LoraLoader applies fully
        if succeeded and comfy_file and folders.split:
            try:
                if diffusers_only:  # the diffusers file stays in the run folder too (run.json, load_lora_weights(folder))
                    comfy_file = place_copy(comfy_file, folders.lora_dir)
                else:
                    comfy_file = kohya = place_file(kohya, folders.lora_dir)
            except OSError as error:
                job.notes.append(f"the LoRA stays in the run folder ({one_line(str(error))})")
        listed = listing_folder(comfy_file, request.loras_folders) if comfy_file and request.loras_folders else None
        if listed is not None:
            job.loras_root = str(listed)  # the LoraLoader name is relative to the folder that lists it
        job.diffusers_path, job.kohya_path = diffusers, kohya
        lora = comfy_file or diffusers
        if outcome.cancelled:
            _cancelled(job, outcome.seconds, outcome.killed)
            if lora:
                job.notes.append(f"best LoRA so far (not in the Load LoRA list; SISO Load LoRA takes its path): {lora}")
        elif succeeded:
            job.status = "Success"
            job.lora_path = lora
        elif outcome.returncode == 0:
            job.status = failed(
                f"the script finished (exit code 0) but wrote no LoRA file in {run_dir}: is siso_script_path a SISO "
                "generation script that honours --weights_output_dir and --save_weights?"
            )
        else:
            job.status = failed(diagnose(outcome.returncode, outcome.stderr_tail, outcome.result, python=python, flavour=flavour))
            if lora:
                job.notes.append(f"the best LoRA before the failure was saved (not in the Load LoRA list): {lora}")
    except InputProblem as problem:
        job.status = failed(str(problem))
    finally:
        if folders is not None:
            remove_preview(folders.run_dir)
        if folders is not None and discard_if_only_inputs(folders.run_dir, (SUBJECT_NAME,), folders.created):
            job.run_dir = ""
        job.seconds = time.monotonic() - started
    return job


def check_edit_inputs(request: EditRequest) -> tuple[str, str, SISOParams]:
    """The generator's checks on the shared settings, then the edit's own; (python, script, resolved params)."""
    p = request.params
    shared = SISOParams(prompt=p.prompt, base_model_path=p.base_model_path, ir_features_path=p.ir_features_path or "",
                        dino_model_name=p.dino_model_name, model_family="auto", extra_args=p.extra_args or "")
    python, script, _flavour, resolved = check_inputs(shared, request.python_executable, request.script_path,
                                                      str(EDIT_LAUNCHER), request.search_dirs)
    check_edit_model(resolved.model_family, p.base_model_path)
    return python, script, resolved


def run_edit_job(request: EditRequest, hooks: Hooks | None = None) -> EditJobResult:
    """The edit's run: check, run siso-edit, judge, keep the inputs beside run.json, clean up."""
    hooks = hooks or Hooks()
    started = time.monotonic()
    job = EditJobResult(status="Failed: not started")
    run_dir = None
    try:
        python, script, resolved = check_edit_inputs(request)
        params = request.params
        root = Path(request.runs_root)
        run_dir = root / unique_dir([root], run_name(params.prompt, prefix=EDIT_RUNS_PREFIX))
        job.run_dir = str(run_dir)
        # the inputs as the edit sees them, written where they stay: run.json records these paths
        scene, subject, mask = (str(run_dir / name) for name in (SCENE_NAME, SUBJECT_NAME, MASK_NAME))
        job.notes.extend(images.image_to_png(request.scene, scene, name="scene_image"))
        job.notes.extend(images.image_to_png(request.subject, subject))
        mask_notes = images.region_to_png(request.mask, *images.png_size(scene), mask)
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
            job.notes.append(NO_IR_NOTE)
        job.command = build_edit_command(python, script, scene, subject, mask, params, resolved, str(run_dir),
                                         str(run_dir / PREVIEW_NAME))
        outcome = launch(job.command, python, str(run_dir), hooks, request.terminate_grace_s, request.poll_interval_s,
                         env=request.env)
        job.returncode, job.cancelled = outcome.returncode, outcome.cancelled
        job.progress, job.result = outcome.progress, outcome.result
        image = outcome.result.get("result_image") or str(run_dir / "result.png")
        job.result_image = image if os.path.isfile(image) else ""
        strip = outcome.result.get("before_after") or str(run_dir / "before_after.png")
        job.before_after = strip if os.path.isfile(strip) else ""
        if outcome.cancelled:
            _cancelled(job, outcome.seconds, outcome.killed)
            if job.result_image:
                job.notes.append(f"the best edit so far: {job.result_image}")
        elif outcome.returncode == 0 and job.result_image:
            job.status = "Success"
        elif outcome.returncode == 0:
            job.status = failed(f"siso-edit finished (exit code 0) but wrote no edited image in {run_dir}")
        else:
            job.status = failed(diagnose(outcome.returncode, outcome.stderr_tail, outcome.result, python=python))
            if job.result_image:
                job.notes.append(f"the best edit before the failure was saved: {job.result_image}")
    except InputProblem as problem:
        job.status = failed(str(problem))
    finally:
        if run_dir is not None:
            remove_preview(run_dir)
        if run_dir is not None and discard_if_only_inputs(run_dir, (SCENE_NAME, SUBJECT_NAME, MASK_NAME), True):
            job.run_dir = ""
        job.seconds = time.monotonic() - started
    return job
