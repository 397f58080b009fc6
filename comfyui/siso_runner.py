"""Everything the SISO nodes do, without ComfyUI: checks, command, child process, result.

`run_job(JobRequest, Hooks)` is the whole "SISO LoRA Generator" run:

1. check the inputs (interpreter, script, model and IR paths, image), tell the model family
   from the base model (SDXL or FLUX; Sana is refused: ComfyUI core cannot render it), fill the
   settings left to the family's recipe, and pick the folders (`Folders`: by default a new
   `<runs>/<time>-<prompt>/` for everything the script writes, and `<loras>/siso/<same name>/`
   for the one file ComfyUI's LoraLoader applies fully; never an earlier run's);
2. write the subject image (the first of an IMAGE batch, `[B, H, W, C]` floats in 0..1,
   transparency from the optional MASK flattened onto white) to a temporary PNG;
3. run the generation script as a child process in its own process group, with the chosen
   Python interpreter, streaming its output line by line (`Hooks.on_line`), turning its
   `SISO_PROGRESS {json}` lines (or, for the authors' script, tqdm's `n/total` counter) into
   `Hooks.on_progress`, and polling `Hooks.should_cancel` ten times a second: on cancel the
   whole group gets SIGTERM (siso-generate then writes the best LoRA so far), SIGKILL after
   `terminate_grace_s`;
4. read the exit code, the `SISO_RESULT {json}` line and stderr into a one-line status,
   "Success" or "Failed: <reason>" (out of memory, missing files, missing packages, ...), and
   check that a LoRA file really exists; after a success, put the file ComfyUI applies fully
   into the LoRA folder: for SDXL the Kohya file (moved; a Kohya copy is made when a script
   wrote only the diffusers file, whose UNet keys ComfyUI ignores), for FLUX the
   diffusers-format file itself (linked or copied: ComfyUI maps its keys natively, and there is
   no Kohya file);
5. always: kill what is left of the process group, delete the temporary image, remove the
   run folder again if the run left nothing in it.
"""

from __future__ import annotations

import codecs
import datetime as _dt
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

try:
    from . import siso_defaults
except ImportError:  # imported as a top-level module (tests, tools)
    import siso_defaults  # type: ignore

PROGRESS_PREFIX = "SISO_PROGRESS "
RESULT_PREFIX = "SISO_RESULT "
DIFFUSERS_NAME = "pytorch_lora_weights.safetensors"
KOHYA_NAME = "siso_lora_kohya.safetensors"
PACK_DIR = Path(__file__).resolve().parent
LAUNCHER = PACK_DIR / "siso_generate.py"
INSTALLER = PACK_DIR / "install.py"
SUBJECT_NAME = "subject.png"  # the subject image as the run saw it (flattened, first of a batch)
ENV_RECORD_NAME = "siso_env.json"  # written by `install.py --venv DIR`: {"python": ".../bin/python"}
RUNS_SUBFOLDER = "siso"
STATUS_MAX_CHARS = 2000  # the whole one-line message; only absurd ones are shortened (at a word boundary)
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf")
TQDM_COUNTER = re.compile(r"(?:^|\s|\|)(\d+)/(\d+)\s*\[")
IS_WINDOWS = os.name == "nt"


# ----------------------------------------------------------------------------- inputs


_D = siso_defaults.DEFAULTS


@dataclass
class SISOParams:
    """The script arguments the node exposes (names as in the authors' argument list).

    Defaults are siso-lab's (siso_defaults). `model_family` "auto" is read from the base model;
    the recipe fields (`siso_defaults.RECIPE_WIDGETS`) left None take the family's recipe.
    """

    prompt: str = _D["prompt"]
    base_model_path: str = _D["pretrained_model_name_or_path"]
    model_family: str = "auto"  # "auto" (from the base model), or one of siso_defaults.NODE_FAMILIES
    ir_features_path: str = ""
    dino_model_name: str = _D["dino_model_name"]
    num_train_epochs: int = _D["num_train_epochs"]
    learning_rate: float | None = None  # None: the family's recipe
    dino_features_weight: float = _D["dino_features_weight"]
    ir_features_weight: float = _D["ir_features_weight"]
    seed: int = _D["seed"]
    resolution: int = _D["resolution"]
    rank: int = _D["rank"]
    early_stopping_max_count: int | None = None  # None: the family's recipe
    early_stopping_threshold_percentage: float = _D["early_stopping_threshold_percentage"]
    num_inference_steps: int | None = None  # None: the family's recipe
    train_text_encoder: bool | None = None  # None: the family's recipe
    device: str = _D["device"]
    mixed_precision: str = _D["precision"]
    mode: str = _D["mode"]
    extra_args: str = ""
    from_recipe: tuple[str, ...] = ()  # filled by with_recipe: the fields that took the family's recipe


RECIPE_PARAMS = tuple(name for name in siso_defaults.RECIPE_WIDGETS if name != "base_model_path")


def with_recipe(params: SISOParams, family: str | None = None) -> SISOParams:
    """`params` with model_family set and every recipe field left None filled from that family's recipe."""
    family = family or (params.model_family if params.model_family in siso_defaults.RECIPES else siso_defaults.NODE_FAMILIES[0])
    recipe = siso_defaults.recipe(family)
    filled = {name: recipe[siso_defaults.RECIPE_WIDGETS[name]] for name in RECIPE_PARAMS if getattr(params, name) is None}
    return SISOParams(**{**params.__dict__, **filled, "model_family": family,
                         "from_recipe": tuple(params.from_recipe) + tuple(filled)})


@dataclass
class JobRequest:
    image: Any  # IMAGE: torch tensor or numpy array, [B, H, W, C] (or [H, W, C]) floats in 0..1
    params: SISOParams
    loras_root: str  # ComfyUI's models/loras (or any folder): where runs go by default
    weights_output_dir: str = ""  # empty: <loras_root>/siso; relative: under loras_root
    runs_root: str = ""  # where a run's other files go when its LoRA goes under a loras folder (see Folders)
    loras_folders: list[str] = field(default_factory=list)  # every folder LoraLoader lists (default: [loras_root])
    mask: Any = None  # MASK ([B, H, W], 1 = transparent, as Load Image gives it) or None
    unique_subfolder: bool = True  # a new <time>-<prompt> folder per run inside weights_output_dir
    python_executable: str = ""  # empty: this process's interpreter (sys.executable)
    siso_script_path: str = ""  # empty: the bundled siso-generate launcher
    search_dirs: dict[str, list[str]] = field(default_factory=dict)  # "ir"/"base_model"/"dino" -> folders for relative names
    temp_root: str | None = None  # where the temporary subject PNG goes (default: the system temp folder)
    terminate_grace_s: float = 10.0
    poll_interval_s: float = 0.1


@dataclass
class Hooks:
    on_line: Callable[[str, str], None] = lambda stream, text: None  # ("stdout"|"stderr", line)
    on_progress: Callable[[dict], None] = lambda record: None
    should_cancel: Callable[[], bool] = lambda: False
    on_start: Callable[[list[str], int], None] = lambda command, pid: None
    before_start: Callable[[], None] = lambda: None  # inputs are fine, the child is about to start


@dataclass
class JobResult:
    status: str  # "Success", "Failed: <reason>" or "Cancelled"
    lora_path: str = ""  # the file ComfyUI applies fully (SDXL: Kohya keys; FLUX: the diffusers file), after a success
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
    family: str = ""  # "sdxl" or "flux" once the inputs were checked

    @property
    def ok(self) -> bool:
        return self.status == "Success"

    @property
    def lora_name(self) -> str:
        """The name ComfyUI's LoraLoader lists for lora_path ('' if it is outside loras_root)."""
        if not self.lora_path or not self.loras_root:
            return ""
        try:
            relative = Path(self.lora_path).resolve().relative_to(Path(self.loras_root).resolve())
        except ValueError:
            return ""
        return relative.as_posix()

    def report(self) -> str:
        """A few human lines: the status, where the LoRA is, how the run went."""
        lines = [self.status]
        if self.lora_path:
            lines.append(f"LoRA: {self.lora_path}")
            if self.lora_name:
                lines.append(f"LoraLoader name: {self.lora_name}")
        if self.family:
            lines.append(f"model family: {siso_defaults.FAMILY_NAMES.get(self.family, self.family)}"
                         + (" (diffusers-format LoRA, which ComfyUI's LoraLoader reads as it is; no Kohya file)"
                            if self.family == "flux" else ""))
        if self.run_dir:
            what = " (diffusers-format LoRA, result.png, loss_curve.png, run.json)" if self.diffusers_path else ""
            lines.append(f"run folder{what}: {self.run_dir}")
        return "\n".join(lines + summary_lines(self.result, self.progress, self.seconds, self.notes))


def summary_lines(result: dict | None, progress: dict, seconds: float, notes: list[str]) -> list[str]:
    """How a run went, for the end of a report: best iteration and losses (or how far it ran), why it
    stopped, the time, then the notes."""
    lines = []
    record = result or {}
    if record.get("best_step"):
        steps = record.get("steps_run") or progress.get("step")
        losses = ", ".join(f"{k} {v:.4f}" for k, v in (record.get("best_losses") or {}).items() if isinstance(v, (int, float)))
        lines.append(f"best iteration {record['best_step']} of {steps}" + (f" ({losses})" if losses else ""))
    elif progress.get("step"):
        lines.append(f"ran {progress['step']} of {progress.get('total', '?')} iterations")
    if record.get("stop_reason"):
        lines.append(f"stopped: {record['stop_reason']}")
    lines.append(f"time: {seconds:.1f} s")
    return lines + list(notes)


class InputProblem(ValueError):
    """A bad input, reported as 'Failed: <message>' before anything is started."""


# ----------------------------------------------------------------------------- helpers


def one_line(text: str, limit: int = STATUS_MAX_CHARS) -> str:
    """`text` on one line. Longer than `limit`: cut at the last word boundary before it, then ' ...'.

    A message is never cut inside a word (a path, a hub id, a number); only a single "word"
    longer than half the limit is cut, and then the cut is marked the same way.
    """
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    room = max(limit - 4, 1)  # for " ..."
    cut = text.rfind(" ", 0, room + 1)
    if cut < room // 2:
        cut = room
    return text[:cut].rstrip() + " ..."


def failed(reason: str) -> str:
    return "Failed: " + one_line(reason)


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:limit].strip("-.") or "run"


def default_runs_root(loras_root: str) -> str:
    """Outside ComfyUI: a `siso_runs` folder beside the loras folder (never inside it)."""
    return str(Path(loras_root).resolve().parent / "siso_runs")


def recorded_env_file() -> Path:
    """Where `install.py --venv DIR` records the separate environment's python (SISO_ENV_FILE overrides)."""
    return Path(os.environ.get("SISO_ENV_FILE") or PACK_DIR / ENV_RECORD_NAME)


def recorded_python() -> str:
    """The python of the environment `install.py --venv` made, if it was made and still exists; else ''."""
    try:
        record = json.loads(recorded_env_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    python = record.get("python") if isinstance(record, dict) else None
    return python if isinstance(python, str) and os.path.isfile(python) else ""


def default_python() -> str:
    """An empty python_executable: the environment install.py --venv made, else ComfyUI's own python."""
    return recorded_python() or sys.executable or "python"


def _quote_arg(text: str) -> str:
    if IS_WINDOWS:
        return f'"{text}"' if (" " in text or not text) else text
    return shlex.quote(text)


def install_command(python: str, *args: str) -> str:
    """The one command that installs siso-lab (and its requirements) into `python`'s environment."""
    return " ".join(_quote_arg(part) for part in (python, str(INSTALLER), *args))


def script_flavour(script: str | os.PathLike) -> str:
    """'siso-lab' for this project's script (accepts every option), 'upstream' for any other.

    The authors' `siso_generation_sdxl.py` and its look-alikes accept only the upstream
    argument list; siso-lab's entry points mention `siso_lib`.
    """
    try:
        with open(script, "rb") as handle:
            head = handle.read(65536)
    except OSError:
        return "upstream"
    return "siso-lab" if b"siso_lib" in head else "upstream"


def _looks_local(value: str) -> bool:
    return (
        os.path.isabs(value)
        or value.startswith((".", "~"))
        or value.lower().endswith(SINGLE_FILE_SUFFIXES)
        or (IS_WINDOWS and re.match(r"^[A-Za-z]:", value) is not None)
    )


def resolve_path(value: str, search_dirs: list[str] | None = None) -> str:
    """`value` as given if it exists, else the first `search_dirs/value` that exists, else `value`."""
    value = os.path.expanduser(value.strip())
    if not value or os.path.isabs(value) or os.path.exists(value):
        return value
    for folder in search_dirs or []:
        candidate = os.path.join(folder, value)
        if os.path.exists(candidate):
            return candidate
    return value


def resolve_base_model(value: str, search_dirs: list[str] | None = None) -> str:
    """A hub id stays as it is; a local folder/file is resolved and must exist and be a diffusers folder."""
    value = value.strip()
    if not value:
        raise InputProblem(
            f"base_model_path is empty: give a hub id ({' or '.join(_family_models())}) or a local diffusers folder"
        )
    resolved = resolve_path(value, search_dirs)
    if os.path.isfile(resolved) or (not os.path.exists(resolved) and resolved.lower().endswith(SINGLE_FILE_SUFFIXES)):
        raise InputProblem(
            f"base_model_path {value!r} is a single-file checkpoint: SISO needs a diffusers folder "
            f"(model_index.json, unet/ or transformer/, vae/, ...) or a hub id such as {' or '.join(_family_models())}"
        )
    if os.path.isdir(resolved):
        if not os.path.isfile(os.path.join(resolved, "model_index.json")):
            raise InputProblem(
                f"base_model_path {value!r} is not a diffusers pipeline folder (no model_index.json): give a folder "
                f"saved with save_pretrained, e.g. a download of {' or '.join(_family_models())}"
            )
        return os.path.abspath(resolved)
    if _looks_local(value):
        raise InputProblem(f"base_model_path {value!r} does not exist: check the path (or give a hub id)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*", value):
        raise InputProblem(
            f"base_model_path {value!r} is neither an existing folder nor a hub id like {_family_models()[0]}"
        )
    return value


def _article(name: str) -> str:
    return "an" if name == "SDXL" else "a"  # as spoken: "an SDXL", "a FLUX.1"


def _family_models() -> list[str]:
    return [siso_defaults.recipe(family)["pretrained_model_name_or_path"] for family in siso_defaults.NODE_FAMILIES]


def resolve_family(requested: str, base_model: str) -> str:
    """The family a run uses: `requested`, or with "auto" the one the (resolved) base model is of."""
    requested = (requested or "auto").strip().lower()
    if requested not in ("auto", *siso_defaults.NODE_FAMILIES):
        offered = ", ".join(siso_defaults.NODE_FAMILIES)
        if requested == "sana":
            raise InputProblem(f"model_family sana is not offered in ComfyUI (ComfyUI core has no Sana model): use auto, {offered}")
        raise InputProblem(f"model_family {requested!r} is unknown: use auto, {offered}")
    try:
        detected = siso_defaults.detect_family(base_model)
    except siso_defaults.FamilyProblem as problem:
        raise InputProblem(str(problem)) from problem
    if requested != "auto" and requested != detected and siso_defaults.pipeline_class(base_model) is not None:
        names = siso_defaults.FAMILY_NAMES
        raise InputProblem(
            f"base_model_path {base_model!r} is {_article(names[detected])} {names[detected]} model but model_family is "
            f"{requested}: give {_article(names[requested])} {names[requested]} model, or model_family auto"
        )
    return detected if requested == "auto" else requested


def check_inputs(request: JobRequest) -> tuple[str, str, str, SISOParams]:
    """Resolve and check paths; return (python, script, flavour, params with resolved paths)."""
    params = request.params
    if not params.prompt or not params.prompt.strip():
        raise InputProblem("prompt is empty: give a short description of the subject, e.g. 'a photo of a cat'")
    python = request.python_executable.strip() or default_python()
    python = os.path.expanduser(python)
    if os.path.sep in python or (IS_WINDOWS and "/" in python):
        if not os.path.isfile(python):
            raise InputProblem(f"python_executable {python!r} does not exist: give the python of the environment SISO is installed in")
        if not IS_WINDOWS and not os.access(python, os.X_OK):
            raise InputProblem(f"python_executable {python!r} is not executable")
    elif shutil.which(python) is None:
        raise InputProblem(f"python_executable {python!r} is not on PATH: give its full path")
    script = os.path.expanduser(request.siso_script_path.strip()) or str(LAUNCHER)
    if not os.path.isfile(script):
        raise InputProblem(
            f"siso_script_path {script!r} does not exist: leave it empty for the bundled siso-generate, "
            "or give the path of siso_generation_sdxl.py"
        )
    flavour = script_flavour(script)
    search = request.search_dirs
    base = resolve_base_model(params.base_model_path, search.get("base_model"))
    ir = params.ir_features_path.strip()
    if ir:
        ir = resolve_path(ir, search.get("ir"))
        if not os.path.isfile(ir):
            raise InputProblem(
                f"ir_features_path {params.ir_features_path!r} does not exist: download ir_features.pth by hand "
                "(Kaggle dataset louieshao/guieweights0732, see the README) or leave it empty for DINO only"
            )
        ir = os.path.abspath(ir)
    elif flavour == "upstream" and params.ir_features_weight > 0:
        raise InputProblem(
            "ir_features_path is empty: the authors' script needs the IR weights (ir_features.pth); "
            "only the bundled siso-generate runs DINO-only"
        )
    dino = params.dino_model_name.strip()
    if not dino:
        raise InputProblem("dino_model_name is empty: use vit_large_patch14_dinov2.lvd142m or a local timm folder")
    dino_resolved = resolve_path(dino, search.get("dino"))
    if os.path.isdir(dino_resolved):
        dino = os.path.abspath(dino_resolved)
    elif _looks_local(dino):
        raise InputProblem(f"dino_model_name {dino!r} is a path that does not exist: give a timm name or a local timm folder")
    try:
        shlex.split(params.extra_args or "", posix=not IS_WINDOWS)  # build_command splits it again
    except ValueError as error:
        raise InputProblem(f"extra_args cannot be parsed ({error}): quote values with spaces") from error
    family = resolve_family(params.model_family, base)
    resolved = SISOParams(**{**params.__dict__, "base_model_path": base, "ir_features_path": ir, "dino_model_name": dino})
    return python, script, flavour, with_recipe(resolved, family)


def recipe_notes(params: SISOParams) -> list[str]:
    """A note for each setting that took its family's recipe with a value other than the widget's default."""
    notes = []
    for name in params.from_recipe:
        value = getattr(params, name)
        if not siso_defaults.is_widget_default(name, value):
            family = siso_defaults.FAMILY_NAMES.get(params.model_family, params.model_family)
            notes.append(f"{name} {value} ({family} recipe; the widget's default means 'the family's recipe')")
    return notes


def _format_number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def build_command(
    python: str,
    script: str,
    flavour: str,
    image_path: str,
    params: SISOParams,
    weights_dir: str,
    output_dir: str,
) -> list[str]:
    """The child's argv. Upstream-only scripts get only the authors' arguments.

    Recipe fields still None are filled from the family's recipe (check_inputs has done it for a job).
    """
    params = with_recipe(params)
    command = [
        python, "-u", script,
        "--subject_image_path", image_path,
        "--prompt", params.prompt,
        "--pretrained_model_name_or_path", params.base_model_path,
    ]
    if flavour == "siso-lab":
        command += ["--model_family", params.model_family]  # the family the node read (as --model_family auto reads it)
    command += [
        "--output_dir", output_dir,
        "--weights_output_dir", weights_dir,
        "--save_weights",
        "--num_train_epochs", str(int(params.num_train_epochs)),
        "--learning_rate", repr(float(params.learning_rate)),
        "--dino_features_weight", repr(float(params.dino_features_weight)),
        "--ir_features_weight", repr(float(params.ir_features_weight)),
        "--seed", str(int(params.seed)),
        "--resolution", str(int(params.resolution)),
        "--rank", str(int(params.rank)),
        "--early_stopping_max_count", str(int(params.early_stopping_max_count)),
        "--early_stopping_threshold_percentage", _format_number(params.early_stopping_threshold_percentage),
        "--num_inference_steps", str(int(params.num_inference_steps)),
        "--dino_model_name", params.dino_model_name,
    ]
    if params.ir_features_path:
        command += ["--ir_features_path", params.ir_features_path]
    if flavour == "siso-lab":
        command.append("--train_text_encoder" if params.train_text_encoder else "--no-train_text_encoder")
        command += ["--device", params.device or "auto", "--mixed_precision", params.mixed_precision or "auto"]
        command += ["--mode", params.mode or "default", "--quiet"]
    else:
        # the authors' documented command; their argparse defaults differ
        command += ["--lr_scheduler", "constant", "--lr_warmup_steps", "0", "--train_batch_size", "1"]
        if params.train_text_encoder:
            command.append("--train_text_encoder")
        precision = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}.get(params.mixed_precision)
        if precision:
            command += ["--mixed_precision", precision]
    command += shlex.split(params.extra_args or "", posix=not IS_WINDOWS)
    return command


def parse_progress(line: str) -> dict | None:
    """The JSON object of a `SISO_PROGRESS {...}` line, or None."""
    return _parse_prefixed(line, PROGRESS_PREFIX)


def parse_result(line: str) -> dict | None:
    return _parse_prefixed(line, RESULT_PREFIX)


def _parse_prefixed(line: str, prefix: str) -> dict | None:
    line = line.strip()
    if not line.startswith(prefix):
        return None
    try:
        value = json.loads(line[len(prefix):])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_tqdm(text: str) -> dict | None:
    """step/total from a tqdm redraw ('Steps:  12%|##  | 6/50 [00:03<...'), for scripts without SISO_PROGRESS."""
    matches = TQDM_COUNTER.findall(text)
    if not matches:
        return None
    step, total = (int(x) for x in matches[-1])
    if total <= 0 or step > total:
        return None
    return {"step": step, "total": total}


def format_progress(record: dict) -> str:
    """'step 3/50 loss -1.6134 (dino -0.80, ir -0.81) best -1.6500 @2' for the console and the node
    (an edit's lines add its background term)."""
    text = f"step {record.get('step', '?')}/{record.get('total', '?')}"
    if isinstance(record.get("loss"), (int, float)):
        text += f" loss {record['loss']:.4f}"
        parts = [f"{k} {record[k]:.4f}" for k in ("dino", "ir", "background") if isinstance(record.get(k), (int, float))]
        if parts:
            text += f" ({', '.join(parts)})"
    if isinstance(record.get("best_loss"), (int, float)):
        text += f" best {record['best_loss']:.4f} @{record.get('best_step', '?')}"
    return text


# ----------------------------------------------------------------------------- errors


OOM_PATTERNS = (
    "cuda out of memory", "outofmemoryerror", "out of memory", "mps backend out of memory",
    "hip out of memory", "cudnn_status_alloc_failed", "cublas_status_alloc_failed", "not enough memory",
    "defaultcpuallocator: can't allocate memory",
)
OOM_HINT = (
    "close other GPU programs (and keep unload_models on), or use mode low-memory, "
    "a lower resolution, or train_text_encoder off"
)


def diagnose(
    returncode: int | None,
    stderr_lines: list[str],
    result: dict | None = None,
    stdout_lines: list[str] | None = None,
    python: str = "",
    flavour: str = "siso-lab",
) -> str:
    """Why a run failed, as one line (without 'Failed: '); `python` is the interpreter that ran it."""
    result = result or {}
    text_lines = [line for line in stderr_lines if line.strip()]
    lowered = "\n".join(text_lines).lower()
    stop = result.get("stop_reason")
    if stop == "out_of_memory" or any(p in lowered for p in OOM_PATTERNS):
        detail = ""
        for line in reversed(text_lines):
            if "out of memory" in line.lower() and "tried to allocate" in line.lower():
                match = re.search(r"tried to allocate [0-9.]+ [KMGT]?i?B", line, re.IGNORECASE)
                detail = f" ({match.group(0)})" if match else ""
                break
        return f"out of GPU memory{detail}: {OOM_HINT}"
    if stop == "non_finite_loss":
        return f"the loss became NaN/infinite ({result.get('error') or 'non-finite loss'}): try mixed_precision fp32 or a lower learning_rate"
    if stop == "cuda_graph_mismatch":
        return "the CUDA graph replay disagreed with the same step run eagerly: put --no-cuda_graphs in extra_args"
    for line in reversed(text_lines):
        match = re.search(r"ModuleNotFoundError: No module named '([^']+)'", line) or re.search(
            r"No module named '([^']+)'", line
        )
        if match:
            module = match.group(1)
            where = f" ({python})" if python else ""
            if flavour == "upstream":
                return (
                    f"the Python that runs the script{where} has no module '{module}': set python_executable to "
                    "the environment the authors' script is installed in"
                )
            fix = f"run {install_command(python)}" if python else "run install.py with that Python"
            if module.split(".")[0] == "siso_lib":
                return f"siso-lab is not installed in the Python that runs SISO{where}: {fix}"
            return f"the Python that runs SISO{where} has no module '{module}': {fix}"
    for line in reversed(text_lines):
        if "ImportError" in line or "cannot import name" in line:
            return f"import error in the SISO environment: {one_line(line.split('ImportError:')[-1].strip())}"
    for line in reversed(text_lines):
        stripped = line.strip()
        if stripped.startswith("error: ") or re.match(r"^[\w.-]+: error: ", stripped):
            message = stripped.split("error: ", 1)[1]
            if message.startswith("unrecognized arguments"):
                return (
                    f"the script rejected arguments ({message}): is siso_script_path a SISO generation script "
                    "with the upstream argument list? (remove them from extra_args)"
                )
            return message
    for line in reversed(text_lines):
        match = re.search(r"(?:FileNotFoundError|No such file or directory)[^'\"]*['\"]([^'\"]+)['\"]", line)
        if match:
            return f"file not found: {match.group(1)}"
    if result.get("error"):
        return str(result["error"])
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of system RAM? the kernel's OOM killer sends SIGKILL)" if name == "SIGKILL" else ""
        return f"the SISO process was killed by {name}{hint}"
    if returncode in (130, 143):
        return "the SISO process was interrupted (SIGINT/SIGTERM from outside ComfyUI)"
    for line in reversed(text_lines):
        stripped = line.strip()
        if re.match(r"^[A-Z]\w*(Error|Exception)\b", stripped):
            return stripped
    if text_lines:
        return f"exit code {returncode}: {text_lines[-1].strip()}"
    return f"the script exited with code {returncode} and printed no error"


# ----------------------------------------------------------------------------- image


def _first(array, name: str, kind: str, ndim: int):
    """The first item of a batch ([B, ...] with `ndim` + 1 dims) or the array itself (`ndim` dims)."""
    notes = []
    if array.ndim == ndim + 1:
        if array.shape[0] == 0:
            raise InputProblem(f"{name} is an empty batch: connect a Load Image node")
        if array.shape[0] > 1:
            notes.append(f"{name} is a batch of {array.shape[0]}: SISO uses its first {kind} only")
        array = array[0]
    return array, notes


def _as_array(value):
    import numpy as np  # noqa: PLC0415

    return value.detach().cpu().float().numpy() if hasattr(value, "detach") else np.asarray(value, dtype=np.float32)


def mask_to_alpha(mask: Any, height: int, width: int):
    """ComfyUI's MASK (1 = transparent, as Load Image gives it) as uint8 alpha [H, W]; None if it is empty.

    An all-zero mask is an opaque photo: Load Image returns a 64x64 zero mask for files
    without transparency, whatever their size, so its shape is not checked then.
    """
    import numpy as np  # noqa: PLC0415

    if mask is None:
        return None
    array = _as_array(mask)
    if array.ndim not in (2, 3):
        raise InputProblem(
            f"subject_mask has shape {list(array.shape)}: expected ComfyUI's MASK [B, H, W]; connect Load Image's MASK output"
        )
    array, _ = _first(array, "subject_mask", "mask", 2)
    if not np.isfinite(array).all():
        raise InputProblem("subject_mask contains NaN or infinite values: connect Load Image's MASK output")
    if array.size == 0 or float(array.max()) <= 0.0:
        return None  # nothing is transparent
    if tuple(array.shape) != (height, width):
        raise InputProblem(
            f"subject_mask is {array.shape[1]}x{array.shape[0]} pixels but subject_image is {width}x{height}: "
            "connect the MASK output of the same Load Image node"
        )
    alpha = (1.0 - np.clip(array, 0.0, 1.0)) * 255.0 + 0.5
    alpha = alpha.astype(np.uint8)
    if int(alpha.max()) == 0:
        raise InputProblem(
            "subject_mask marks every pixel transparent, so no subject is left: connect the MASK of the subject's "
            "own Load Image (1 = transparent), or leave subject_mask unconnected"
        )
    return alpha


def image_to_png(image: Any, path: str, mask: Any = None, name: str = "subject_image") -> list[str]:
    """Write the first image of an IMAGE batch ([B,H,W,C] or [H,W,C], floats 0..1) as an RGB PNG.

    Transparency, from `mask` (ComfyUI's MASK: 1 = transparent, as Load Image outputs it for a
    cut-out PNG, whose IMAGE then has the alpha dropped) or from a 4th channel, is composited
    onto white exactly as siso-generate does when it reads a transparent file, so the same
    photo gives the same subject through ComfyUI and on the command line.

    Returns notes (e.g. that a batch was reduced to its first image). ComfyUI's IMAGE is
    channels-LAST: reading it as [C,H,W] would scramble the picture. `name` is the input the
    messages name (the edit node's scene_image goes through here too).
    """
    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    if image is None:
        raise InputProblem(f"{name} is missing: connect a Load Image node")
    array = _as_array(image)
    if array.ndim == 4 and array.shape[0] == 0:
        raise InputProblem(f"{name} is an empty batch: connect a Load Image node")
    array, notes = _first(array, name, "image", 3) if array.ndim == 4 else (array, [])
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise InputProblem(
            f"{name} has shape {list(getattr(image, 'shape', array.shape))}: expected ComfyUI's IMAGE [B, H, W, C] with C = 3"
        )
    height, width, channels = array.shape
    if min(height, width) < 32:
        raise InputProblem(f"{name} is {width}x{height} pixels: give a photo at least 32 pixels on each side")
    if not np.isfinite(array).all():
        raise InputProblem(f"{name} contains NaN or infinite values")
    pixels = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    alpha = mask_to_alpha(mask, height, width)
    source = "from subject_mask" if alpha is not None else "from its alpha channel"
    if channels == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    elif channels == 4:
        if alpha is None and int(pixels[:, :, 3].min()) < 255:
            alpha = pixels[:, :, 3]
        pixels = pixels[:, :, :3]
    if alpha is None:
        picture = Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")
    else:
        rgba = Image.fromarray(np.dstack([pixels, alpha]), mode="RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(white, rgba).convert("RGB")
        notes.append(f"{name}: transparency ({source}) flattened onto white, as siso-generate does for a transparent file")
    picture.save(path, format="PNG")
    return notes


def load_image_tensor(path: str):
    """A PNG as ComfyUI's IMAGE: torch float32 [1, H, W, 3] in 0..1."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    with Image.open(path) as picture:
        array = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array)[None]


# ----------------------------------------------------------------------------- output folder


@dataclass
class Folders:
    """Where a run's files go.

    `run_dir` gets everything the script writes (it is its --output_dir and --weights_output_dir):
    the diffusers-format LoRA, result.png, loss_curve.png, run.json, subject.png. `lora_dir` gets
    the one file ComfyUI's LoraLoader applies fully, and only once the run succeeded: for SDXL the
    Kohya-format LoRA, for FLUX a copy of the diffusers-format one. When the requested folder is under a folder LoraLoader lists (models/loras), the
    two differ, so that nothing LoraLoader would apply only partly appears in its list; anywhere
    else they are the same folder.
    """

    run_dir: Path
    lora_dir: Path
    created: bool  # run_dir was made by this job (removed again if the run leaves it empty)

    @property
    def split(self) -> bool:
        return self.run_dir != self.lora_dir


def listing_folder(path: str | os.PathLike, folders: list[str]) -> Path | None:
    """The folder of `folders` that holds `path` (or is it), else None."""
    real = Path(os.path.realpath(path))
    for folder in folders:
        root = Path(os.path.realpath(folder))
        if real == root or root in real.parents:
            return root
    return None


def _unique_dirs(parents: list[Path], base: str) -> str:
    """A name free under every parent; made (exclusively) under the first one."""
    for attempt in range(1000):
        name = base if attempt == 0 else f"{base}-{attempt}"
        if any((parent / name).exists() for parent in parents[1:]):
            continue
        try:
            (parents[0] / name).mkdir(parents=True, exist_ok=False)
            return name
        except FileExistsError:
            continue
        except OSError as error:
            raise InputProblem(f"cannot create a run folder under {str(parents[0])!r} ({error.strerror or error})") from error
    raise InputProblem(f"no free run folder name under {str(parents[0])!r}")


def _refuse_earlier_lora(folders: list[Path]) -> None:
    for folder in folders:
        for name in (DIFFUSERS_NAME, KOHYA_NAME):
            if (folder / name).exists():
                raise InputProblem(
                    f"weights_output_dir {str(folder)!r} already holds a LoRA ({name}) from an earlier run: "
                    "turn unique_subfolder on, or choose another folder"
                )


def choose_folders(
    loras_root: str,
    runs_root: str,
    requested: str,
    unique: bool,
    label: str,
    now: _dt.datetime | None = None,
    loras_folders: list[str] | None = None,
) -> Folders:
    """Pick (and create) the run folder; see `Folders`.

    Empty `requested`: the LoRA goes to `<loras_root>/siso/<YYYYmmdd-HHMMSS>-<label>/`, the rest to
    `<runs_root>/<same name>/`. A relative `requested` is taken under `loras_root`, an absolute one
    as it is. With `unique`, each run gets its own new sub-folder; without, the folder itself is
    used and must not hold an earlier LoRA. `loras_folders` are all folders LoraLoader lists
    (default: `loras_root`).
    """
    loras_folders = list(loras_folders or [loras_root])
    requested = os.path.expanduser(requested.strip())
    if not requested:
        target = Path(loras_root) / RUNS_SUBFOLDER
        unique = True
    elif os.path.isabs(requested):
        target = Path(requested)
    else:
        target = Path(loras_root) / requested
    base = f"{(now or _dt.datetime.now()).strftime('%Y%m%d-%H%M%S')}-{slug(label)}"
    listed = listing_folder(target, loras_folders)
    if listed is None:  # LoraLoader does not list this folder: keep everything together
        if unique:
            name = _unique_dirs([target], base)
            return Folders(target / name, target / name, True)
        _refuse_earlier_lora([target])
        return Folders(target, target, _make_folder(target, "weights_output_dir"))
    runs = Path(runs_root)
    if listing_folder(runs, loras_folders) is not None:
        raise InputProblem(
            f"SISO's run folder {str(runs)!r} is inside a LoRA folder, where Load LoRA would list the diffusers-format "
            "file it cannot fully apply: set SISO_RUNS_DIR to a folder outside models/loras"
        )
    if unique:
        name = _unique_dirs([runs, target], base)
        return Folders(runs / name, target / name, True)
    relative = Path(os.path.realpath(target)).relative_to(listed).as_posix()
    run_dir = runs / slug(relative.replace("/", "-"))
    _refuse_earlier_lora([target, run_dir])
    return Folders(run_dir, target, _make_folder(run_dir, "the run folder"))


def _make_folder(folder: Path, what: str) -> bool:
    """Create `folder` (and its parents); True if it did not exist. InputProblem if it cannot be made."""
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputProblem(f"cannot create {what} {str(folder)!r} ({error.strerror or error})") from error
    return created


def place_file(source: str, folder: Path) -> str:
    """Move `source` into `folder` (made if needed) under its own name, atomically; return the new path.

    Works across file systems (`place_copy`, then the old name is removed). An existing file of
    that name is never replaced: OSError.
    """
    target = place_copy(source, folder)
    os.unlink(source)
    return target


def place_copy(source: str, folder: Path) -> str:
    """A second name for `source` in `folder` (a hard link, else a copy made atomically); return it.

    An existing file of that name is never replaced: OSError.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / os.path.basename(source)
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    try:
        os.link(source, target)
        return str(target)
    except OSError:
        pass
    partial = folder / f".{os.path.basename(source)}.{os.getpid()}.partial"
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()
    return str(target)


def find_lora_files(folder: Path, result: dict | None) -> tuple[str, str]:
    """(diffusers path, kohya path) that exist, from SISO_RESULT or by their file names."""
    result = result or {}
    diffusers = result.get("lora_path") or str(folder / DIFFUSERS_NAME)
    kohya = result.get("kohya_path") or str(folder / KOHYA_NAME)
    return (diffusers if diffusers and os.path.isfile(diffusers) else "", kohya if kohya and os.path.isfile(kohya) else "")


def remove_if_empty(folder: Path) -> bool:
    try:
        folder.rmdir()
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- child process


class _StreamReader(threading.Thread):
    """Reads a pipe in chunks, splits on \\n and \\r (tqdm redraws), queues (stream, text, ended_by)."""

    def __init__(self, pipe, name: str, sink: queue.Queue):
        super().__init__(daemon=True, name=f"siso-{name}-reader")
        self.pipe, self.stream, self.sink = pipe, name, sink

    def run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        fd = self.pipe.fileno()
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                pending += decoder.decode(chunk)
                while True:
                    match = re.search(r"\r\n|\n|\r", pending)
                    if not match:
                        break
                    self.sink.put((self.stream, pending[: match.start()], match.group(0)))
                    pending = pending[match.end():]
        except OSError:
            pass
        finally:
            pending += decoder.decode(b"", final=True)
            if pending:
                self.sink.put((self.stream, pending, ""))
            self.sink.put((self.stream, None, None))
            try:
                self.pipe.close()
            except OSError:
                pass


def _exited_without_reaping(process: subprocess.Popen) -> bool:
    """True once the child has exited; on POSIX it stays a zombie so its group id cannot be reused yet."""
    if IS_WINDOWS or not hasattr(os, "waitid"):
        return process.poll() is not None
    if process.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    if IS_WINDOWS:
        if sig == signal.SIGTERM:
            try:
                process.send_signal(signal.CTRL_BREAK_EVENT)  # the group was created for this
            except (OSError, ValueError):
                process.terminate()
        else:
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
        return
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def start_child(command: list[str], env: dict[str, str], cwd: str | None = None) -> subprocess.Popen:
    kwargs: dict[str, Any] = {}
    if IS_WINDOWS:
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        kwargs["start_new_session"] = True  # own process group: cancel reaches every process it starts
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, **kwargs
    )


@dataclass
class ChildOutcome:
    returncode: int | None
    cancelled: bool
    progress: dict
    result: dict
    stderr_tail: list[str]
    stdout_tail: list[str]
    seconds: float
    killed: bool = False  # needed SIGKILL after the grace period


def supervise(
    process: subprocess.Popen,
    hooks: Hooks,
    terminate_grace_s: float = 10.0,
    poll_interval_s: float = 0.1,
    started: float | None = None,
) -> ChildOutcome:
    """Stream the child's output, report progress, honour cancel; the group is gone on return."""
    started = started or time.monotonic()
    sink: queue.Queue = queue.Queue()
    readers = [_StreamReader(process.stdout, "stdout", sink), _StreamReader(process.stderr, "stderr", sink)]
    for reader in readers:
        reader.start()
    progress: dict = {}
    result: dict = {}
    stderr_tail: list[str] = []
    stdout_tail: list[str] = []
    cancelled = killed = False
    open_streams = 2
    exited_at: float | None = None
    terminate_at: float | None = None

    def handle(stream: str, text: str, ended_by: str) -> None:
        nonlocal progress, result
        tail = stdout_tail if stream == "stdout" else stderr_tail
        if stream == "stdout":
            record = parse_progress(text)
            if record is not None:
                progress = record
                hooks.on_progress(record)
                hooks.on_line(stream, format_progress(record))
                return
            record = parse_result(text)
            if record is not None:
                result = record
                hooks.on_line(stream, f"finished: {record.get('status')} (stop reason: {record.get('stop_reason')})")
                return
        if ended_by == "\r":  # a progress-bar redraw: progress only, not a console line
            record = parse_tqdm(text)
            if record is not None and record.get("step", 0) > progress.get("step", 0) and "loss" not in progress:
                progress = record
                hooks.on_progress(record)
            return
        if stream == "stderr" and not parse_progress(text):
            record = parse_tqdm(text)
            if record is not None and "loss" not in progress and record.get("step", 0) > progress.get("step", 0):
                progress = record
                hooks.on_progress(record)
        if text.strip():
            tail.append(text)
            del tail[:-300]
            hooks.on_line(stream, text)

    try:
        while True:
            try:
                stream, text, ended_by = sink.get(timeout=poll_interval_s)
                if text is None:
                    open_streams -= 1
                else:
                    handle(stream, text, ended_by)
                while True:  # drain what is already there before looking at the clock again
                    try:
                        stream, text, ended_by = sink.get_nowait()
                    except queue.Empty:
                        break
                    if text is None:
                        open_streams -= 1
                    else:
                        handle(stream, text, ended_by)
            except queue.Empty:
                pass
            if exited_at is None and _exited_without_reaping(process):
                exited_at = time.monotonic()
            if exited_at is not None:
                # all output read, or a grandchild holds the pipes open: stop waiting after a second
                if open_streams <= 0 or time.monotonic() - exited_at > 1.0:
                    break
                continue
            if not cancelled and hooks.should_cancel():
                cancelled = True
                terminate_at = time.monotonic() + terminate_grace_s
                hooks.on_line("stderr", f"cancel requested: sending SIGTERM to the SISO process group (pid {process.pid})")
                _signal_group(process, signal.SIGTERM)
            if cancelled and terminate_at is not None and time.monotonic() > terminate_at and not killed:
                killed = True
                hooks.on_line("stderr", f"the SISO process did not stop within {terminate_grace_s:.0f} s: SIGKILL")
                _signal_group(process, signal.SIGKILL)
    finally:
        if not _exited_without_reaping(process):
            # leaving early (an exception in a hook, KeyboardInterrupt): never leave the child behind
            _signal_group(process, signal.SIGTERM)
            deadline = time.monotonic() + terminate_grace_s
            while time.monotonic() < deadline and not _exited_without_reaping(process):
                time.sleep(0.05)
        _signal_group(process, signal.SIGKILL)  # whatever is left of the group (the leader is a zombie now)
        returncode = process.wait()
        for reader in readers:
            reader.join(timeout=2.0)
        while True:  # lines that arrived after the loop ended
            try:
                stream, text, ended_by = sink.get_nowait()
            except queue.Empty:
                break
            if text is not None:
                handle(stream, text, ended_by)
    return ChildOutcome(
        returncode=returncode,
        cancelled=cancelled,
        progress=progress,
        result=result,
        stderr_tail=stderr_tail,
        stdout_tail=stdout_tail,
        seconds=time.monotonic() - started,
        killed=killed,
    )


# ----------------------------------------------------------------------------- the whole job


def child_environment(python: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["SISO_PARENT_PID"] = str(os.getpid())
    env.setdefault("TQDM_MININTERVAL", "1")
    if os.path.realpath(python) != os.path.realpath(sys.executable or ""):
        # a different environment: do not hand it ComfyUI's module search path
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
    return env


def launch(command: list[str], python: str, cwd: str, hooks: Hooks, terminate_grace_s: float = 10.0,
           poll_interval_s: float = 0.1) -> ChildOutcome:
    """Start the child once the inputs passed (`hooks.before_start` first) and supervise it to its end;
    InputProblem if it cannot be started."""
    hooks.before_start()
    try:
        process = start_child(command, child_environment(python), cwd=cwd)
    except OSError as error:
        raise InputProblem(f"cannot start {python!r}: {error.strerror or error}") from error
    hooks.on_start(command, process.pid)
    return supervise(process, hooks, terminate_grace_s, poll_interval_s)


def run_job(request: JobRequest, hooks: Hooks | None = None) -> JobResult:
    """Check, run, judge, clean up. Never raises for a bad input or a failed run: see JobResult.status."""
    hooks = hooks or Hooks()
    started = time.monotonic()
    job = JobResult(status="Failed: not started", loras_root=request.loras_root)
    temp_dir = None
    folders: Folders | None = None
    try:
        python, script, flavour, params = check_inputs(request)
        job.family = params.model_family
        job.notes.extend(recipe_notes(params))
        if not request.python_executable.strip() and python == recorded_python():
            job.notes.append(f"python: {python} (the separate environment install.py --venv made)")
        temp_dir = tempfile.mkdtemp(prefix="siso-comfyui-", dir=request.temp_root)
        image_path = os.path.join(temp_dir, SUBJECT_NAME)
        job.notes.extend(image_to_png(request.image, image_path, request.mask))
        folders = choose_folders(
            request.loras_root, request.runs_root or default_runs_root(request.loras_root), request.weights_output_dir,
            request.unique_subfolder, params.prompt, loras_folders=request.loras_folders or None,
        )
        run_dir = folders.run_dir
        job.run_dir = str(run_dir)
        if not params.ir_features_path:
            job.notes.append("no ir_features_path: optimised with DINO features only (the paper uses DINO + IR)")
        command = build_command(python, script, flavour, image_path, params, str(run_dir), str(run_dir))
        job.command = command
        outcome = launch(command, python, str(run_dir), hooks, request.terminate_grace_s, request.poll_interval_s)
        job.returncode, job.cancelled = outcome.returncode, outcome.cancelled
        job.progress, job.result = outcome.progress, outcome.result
        diffusers, kohya = find_lora_files(run_dir, outcome.result)
        flux = params.model_family == "flux"
        if flux:
            kohya = ""  # ComfyUI maps the diffusers FLUX keys itself; Kohya naming is SDXL's
        elif diffusers and not kohya:
            try:
                from .lora_keys import convert_file  # noqa: PLC0415
            except ImportError:  # imported as a top-level module (tests, tools)
                from lora_keys import convert_file  # type: ignore  # noqa: PLC0415
            try:
                kohya = str(Path(diffusers).parent / KOHYA_NAME)
                convert_file(diffusers, kohya)
                job.notes.append(f"converted the diffusers LoRA to Kohya keys for ComfyUI: {KOHYA_NAME}")
            except Exception as error:  # noqa: BLE001
                kohya = ""
                job.notes.append(f"could not convert the LoRA to Kohya keys ({one_line(str(error))}): ComfyUI may apply only part of it")
        if diffusers or kohya:
            _keep_subject(image_path, run_dir)
        image = outcome.result.get("result_image") or str(run_dir / "result.png")
        job.result_image = image if os.path.isfile(image) else ""
        succeeded = not outcome.cancelled and outcome.returncode == 0 and bool(kohya or diffusers)
        comfy_file = diffusers if flux else kohya  # the file ComfyUI's LoraLoader applies fully
        if succeeded and comfy_file and folders.split:
            try:
                if flux:  # the diffusers file stays in the run folder too (run.json, load_lora_weights(folder))
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
            job.status = "Cancelled"
            job.notes.insert(0, f"cancelled after {outcome.seconds:.1f} s" + (", SIGKILL needed" if outcome.killed else ""))
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
            job.status = failed(diagnose(outcome.returncode, outcome.stderr_tail, outcome.result, outcome.stdout_tail, python, flavour))
            if lora:
                job.notes.append(f"the best LoRA before the failure was saved (not in the Load LoRA list): {lora}")
    except InputProblem as problem:
        job.status = failed(str(problem))
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        if folders is not None and folders.created and remove_if_empty(folders.run_dir):
            job.run_dir = ""
        job.seconds = time.monotonic() - started
    return job


def _keep_subject(image_path: str, run_dir: Path) -> None:
    """A copy of the subject image the run used, beside its run.json (never replacing one)."""
    target = run_dir / SUBJECT_NAME
    if not target.exists():
        try:
            shutil.copyfile(image_path, target)
        except OSError:
            pass
