"""The ComfyUI nodes: "SISO LoRA Generator", "SISO Subject Edit" and "SISO Load LoRA".

The work is done in comfyui/siso/ (no ComfyUI there, tested on its own); these classes are what
ComfyUI sees: inputs (widgets.py), outputs, caching (IS_CHANGED), and the run with ComfyUI's
progress bar, Cancel, preview and console (host.py). They also import and run in a plain Python.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading

from . import host, widgets
from .displays import refresh_displays
from .host import SISOCancelled  # noqa: F401 - part of the nodes' interface (raised outside ComfyUI)
from .siso import folders, images, jobs, lora_keys
from .siso.messages import failed, one_line
from .siso.pack import LAUNCHER
from .siso.params import EditParams, SISOParams, from_widgets

IDLE_STATUS = "Idle: execute is False (nothing was run)"
RUNNING_STATUS = "Running: SISO is optimising a LoRA (progress on the SISO LoRA Generator node)"
EDIT_RUNNING_STATUS = "Running: SISO is editing the scene (progress on the SISO Subject Edit node)"
NO_LORA_INFO = (
    "no LoRA: lora_path is empty (SISO LoRA Generator failed or did not run; see its status), "
    "so the nodes after this one were skipped"
)
FINGERPRINT_EXCLUDED = {"subject_image", "subject_mask", "execute", "unique_id", "graph"}


def _stamp(path: str) -> list:
    """What changes when a referenced file changes: size and mtime (model_index.json for a folder)."""
    if not path:
        return []
    path = os.path.expanduser(path)
    target = os.path.join(path, "model_index.json") if os.path.isdir(path) else path
    try:
        info = os.stat(target)
        return [target, info.st_size, info.st_mtime_ns]
    except OSError:
        return [path, None]


def with_base_model(inputs: dict) -> dict:
    """The widget values with base_model_path set to the base model the run uses: the picked checkpoint or
    folder, or what base_model_path says when base_model is 'hub id or diffusers folder'."""
    chosen = host.resolve_base_model(inputs.get("base_model") or "", inputs.get("base_model_path") or "")
    return {**{k: v for k, v in inputs.items() if k != "base_model"}, "base_model_path": chosen}


def fingerprint(inputs: dict) -> str:
    """A digest of the widget values and of the files they name (what IS_CHANGED compares)."""
    values = {k: v for k, v in sorted(inputs.items()) if k not in FINGERPRINT_EXCLUDED}
    values.setdefault("extra_args", "")  # optional: absent from IS_CHANGED's inputs until set
    files = [_stamp(str(values.get(k) or "")) for k in ("siso_script_path", "ir_features_path", "base_model_path", "python_executable")]
    files.append(_stamp(with_base_model(values)["base_model_path"]))  # the picked checkpoint or folder
    if not values.get("siso_script_path"):
        files.append(_stamp(str(LAUNCHER)))
    blob = json.dumps([values, files], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class _SISORun:
    """What both SISO run nodes share: the cache of earlier runs, the hooks, model unloading, cancel."""

    CATEGORY = "SISO"
    OUTPUT_NODE = True
    hooks = staticmethod(host.progress_hooks)
    unload_models = staticmethod(host.unload_models)
    _history: dict[str, tuple[bool, str]]  # fingerprint -> (succeeded, the file a cached result needs)
    _history_lock: threading.Lock

    @classmethod
    def IS_CHANGED(cls, **inputs):
        """Same widgets and files as a successful run whose file still exists: reuse the cached result.

        A run that failed (or whose file was deleted since) is re-run when queued again; changed
        images re-run anyway (ComfyUI compares the upstream nodes' outputs).
        """
        key = fingerprint(inputs)
        with cls._history_lock:
            previous = cls._history.get(key)
        if previous is not None:
            succeeded, path = previous
            if not succeeded or (path and not os.path.isfile(path)):
                return float("nan")
        return key

    def remember(self, key: str, succeeded: bool, path: str) -> None:
        """Note how the run with fingerprint `key` (taken before it ran, as IS_CHANGED did) went."""
        with self._history_lock:
            self._history[key] = (succeeded, path)

    def prepared_hooks(self, unique_id, total: int, unload: bool):
        hooks = self.hooks(unique_id, total)
        if unload:
            hooks.before_start = self.unload_models  # only once the inputs passed their checks
        return hooks


class SISOLoRAGenerator(_SISORun):
    """From one subject image, optimise a LoRA for SDXL-Turbo, FLUX.1-schnell or FLUX.2 klein by running the SISO script."""

    FUNCTION = "generate"
    RETURN_TYPES = ("STRING", "STRING", "IMAGE", "STRING")
    RETURN_NAMES = ("lora_path", "status", "preview", "report")
    OUTPUT_TOOLTIPS = (
        "Path of the LoRA file ComfyUI's LoraLoader and SISO Load LoRA apply fully (SDXL: Kohya keys; FLUX.1, FLUX.2 "
        "klein: the diffusers-format file); empty when the run failed, was cancelled or did not run.",
        "'Success', or 'Failed: <reason>' (or 'Idle: ...' when execute is False).",
        "The best image SISO generated (what the LoRA draws for the optimisation prompt); without one (failed, not run) a "
        "picture labelled 'SISO: no image' with the status on it, never a blank that could pass for a result.",
        "A few lines: the LoRA's LoraLoader name, best iteration and losses, why it stopped, notes.",
    )
    DESCRIPTION = (
        "SISO (arXiv 2503.16025): optimises a LoRA so that SDXL-Turbo, FLUX.1-schnell or FLUX.2 klein draws the subject "
        "of ONE photo; the base model (a diffusers folder or hub id) picks the family, and settings left at their default "
        "follow that family's recipe. Sana is not offered (ComfyUI core cannot render it); ComfyUI 0.3.64 has no FLUX.2 model "
        "either, so a FLUX.2 klein LoRA is for diffusers or a later ComfyUI. "
        "Runs the SISO generation script as a separate process (blocking the queue; Cancel stops it), "
        "after unloading ComfyUI's models from VRAM. Needs a GPU with about 16 GB for SDXL-Turbo at 512 px "
        "(12 GB with mode low-memory); FLUX.1-schnell needs far more (an estimated 40-50 GB). The one file Load "
        "LoRA applies fully (SDXL: the Kohya-format LoRA; FLUX.1, FLUX.2 klein: the diffusers-format LoRA) goes to "
        "models/loras/siso/<time>-<prompt>/; the rest of the run (diffusers-format LoRA, best image, loss curve, "
        "run.json) to output/siso/<time>-<prompt>/."
    )
    _history: dict[str, tuple[bool, str]] = {}  # a failed or vanished result is re-run by IS_CHANGED
    _history_lock = threading.Lock()

    @classmethod
    def INPUT_TYPES(cls):
        return widgets.generator_inputs(host.base_model_choices())

    def generate(self, subject_image, execute, unique_id=None, extra_args="", subject_mask=None, graph=None, **widget_values):
        inputs = dict(widget_values, extra_args=extra_args)
        key = fingerprint(inputs)
        if not execute:
            host.console(IDLE_STATUS)
            # plain values, not blocked ones: the boxes showing them must not keep an earlier run's result
            return {"ui": {"text": [IDLE_STATUS]}, "result": ("", IDLE_STATUS, host.no_image(IDLE_STATUS), IDLE_STATUS)}
        refresh_displays(graph, unique_id, ("", RUNNING_STATUS, None, RUNNING_STATUS))
        job = self.run(subject_image, unique_id, mask=subject_mask, **inputs)
        self.remember(key, job.ok, job.lora_path)
        report = job.report()
        if job.cancelled:
            refresh_displays(graph, unique_id, ("", job.status, None, report))
            host.raise_cancelled(report, unique_id)
        host.console(report)
        previews = host.save_preview(job.result_image, unique_id)
        preview = images.load_image_tensor(job.result_image) if job.result_image else host.no_image(job.status)
        # on failure lora_path is "" (SISO Load LoRA then skips what follows it); a blocked output
        # would leave display nodes showing the previous run's path
        ui = {"text": [report], **({"images": previews} if previews else {})}
        return {"ui": ui, "result": (job.lora_path if job.ok else "", job.status, preview, report)}

    def run(self, subject_image, unique_id=None, mask=None, **inputs) -> jobs.JobResult:
        """The whole run with ComfyUI's progress bar, Cancel, console and model unloading."""
        inputs = with_base_model(inputs)
        params = from_widgets(SISOParams, inputs)  # model_family stays "auto": the base model picks it
        request = jobs.JobRequest(
            image=subject_image, params=params, mask=mask, loras_root=host.loras_root(), loras_folders=host.loras_folders(),
            runs_root=host.runs_root(), search_dirs=host.search_dirs(),
            weights_output_dir=inputs.get("weights_output_dir", "") or "",
            unique_subfolder=bool(inputs.get("unique_subfolder", True)),
            python_executable=inputs.get("python_executable", "") or "",
            siso_script_path=inputs.get("siso_script_path", "") or "", env=host.child_environment(),
            comfy_families=host.comfy_families(),
        )
        hooks = self.prepared_hooks(unique_id, params.num_train_epochs, inputs.get("unload_models", True))
        return jobs.run_job(request, hooks)


class SISOSubjectEdit(_SISORun):
    """Put the subject of one photo into a scene photo where the mask says, keeping the rest (SISO editing, siso-edit)."""

    FUNCTION = "edit"
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("edited_image", "status")
    OUTPUT_TOOLTIPS = (
        "The edited scene at the scene's own size: the best iteration's edit put back into the photo, only the masked "
        "region changed (the run folder also keeps the resolution x resolution square, result_square.png). When the "
        "edit failed or did not run: a picture labelled "
        "'SISO: no image' with the status on it (never the unedited scene).",
        "'Success', or 'Failed: <reason>' (or 'Idle: ...' when execute is False).",
    )
    DESCRIPTION = (
        "SISO editing (arXiv 2503.16025) on SDXL-Turbo: the scene is inverted once with ReNoise, then a LoRA is "
        "optimised so that regenerating the scene draws the subject of ONE photo inside the mask (DINOv2 + IR "
        "similarity) and keeps everything outside it (background MSE, weight bg_mse_loss_weight). The mask is the "
        "MASK input (1 = where the subject goes: paint it in the scene's Load Image mask editor) or, without one, "
        "found by Grounding-DINO + SAM from input_class. Runs siso-edit as a separate process (blocking the queue; "
        "Cancel stops it) after unloading ComfyUI's models from VRAM. Every file of the edit (result.png, "
        "before_after.png, mask.png, the LoRA, run.json) goes to output/siso/<time>-edit-<prompt>/."
    )
    script_path = ""  # empty: the bundled siso_edit.py (tests put a fake script here)
    _history: dict[str, tuple[bool, str]] = {}  # fingerprint -> (succeeded, edited image)
    _history_lock = threading.Lock()

    @classmethod
    def INPUT_TYPES(cls):
        return widgets.edit_inputs(host.base_model_choices())

    def edit(self, scene_image, subject_image, execute, unique_id=None, mask=None, extra_args="", graph=None, **widget_values):
        inputs = dict(widget_values, extra_args=extra_args)
        key = fingerprint(inputs)
        if not execute:
            host.console(IDLE_STATUS)
            return {"ui": {"text": [IDLE_STATUS]}, "result": (host.no_image(IDLE_STATUS), IDLE_STATUS)}
        refresh_displays(graph, unique_id, (None, EDIT_RUNNING_STATUS))
        job = self.run(scene_image, subject_image, mask, unique_id, **inputs)
        self.remember(key, job.ok, job.result_image)
        report = job.report()
        if job.cancelled:
            refresh_displays(graph, unique_id, (None, job.status))
            host.raise_cancelled(report, unique_id)
        host.console(report)
        edited = images.load_image_tensor(job.result_image) if job.ok else host.no_image(job.status)
        previews = host.save_preview(job.result_image, unique_id) if job.ok else []
        ui = {"text": [report], **({"images": previews} if previews else {})}
        return {"ui": ui, "result": (edited, job.status)}

    def run(self, scene_image, subject_image, mask=None, unique_id=None, **inputs) -> jobs.EditJobResult:
        """The whole edit with ComfyUI's progress bar, Cancel, console and model unloading."""
        inputs = with_base_model(inputs)
        params = from_widgets(EditParams, inputs)
        request = jobs.EditRequest(
            scene=scene_image, subject=subject_image, params=params, runs_root=host.runs_root(), mask=mask,
            python_executable=inputs.get("python_executable", "") or "", script_path=self.script_path,
            search_dirs=host.search_dirs(), env=host.child_environment(),
        )
        hooks = self.prepared_hooks(unique_id, params.num_train_epochs, inputs.get("unload_models", True))
        return jobs.run_edit_job(request, hooks)


# ----------------------------------------------------------------------------- loader


class _CountLoraWarnings(logging.Handler):
    """Counts the "lora key not loaded" warnings ComfyUI's LoRA code logs."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.not_loaded: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("lora key not loaded") or message.startswith("NOT LOADED"):
            self.not_loaded.append(message)


def resolve_lora_file(value: str) -> str:
    """A LoRA file, a run folder holding one (Kohya file preferred), or a name under models/loras."""
    value = os.path.expanduser((value or "").strip())
    if not value:
        raise ValueError("lora_path is empty: connect SISO LoRA Generator's lora_path, or give a .safetensors file")
    for candidate in [value] + [os.path.join(root, value) for root in host.folder("loras")]:
        if os.path.isdir(candidate):
            for name in (folders.KOHYA_NAME, folders.DIFFUSERS_NAME):
                if os.path.isfile(os.path.join(candidate, name)):
                    return os.path.join(candidate, name)
            raise ValueError(f"folder {candidate!r} holds no {folders.KOHYA_NAME} or {folders.DIFFUSERS_NAME}")
        if os.path.isfile(candidate):
            return candidate
    raise ValueError(f"LoRA file {value!r} does not exist (also looked in ComfyUI's models/loras)")


def _patch_count(patcher) -> int:
    patches = getattr(patcher, "patches", None)
    return len(patches) if isinstance(patches, dict) else 0


class SISOLoadLoRA:
    """Apply a LoRA given by path (e.g. the generator's lora_path) to MODEL and CLIP."""

    CATEGORY = "SISO"
    FUNCTION = "load"
    RETURN_TYPES = ("MODEL", "CLIP", "STRING")
    RETURN_NAMES = ("model", "clip", "lora_info")
    OUTPUT_TOOLTIPS = ("The model with the LoRA.", "The CLIP with the LoRA.", "How many LoRA modules were applied.")
    DESCRIPTION = (
        "Loads a LoRA file by path (SISO LoRA Generator's lora_path, a run folder, or a name under models/loras) "
        "and applies it with ComfyUI's own LoRA code, like LoraLoader, to an SDXL or FLUX model. diffusers-format "
        "SDXL LoRAs are converted to Kohya keys first, so the UNet part is applied too; FLUX LoRAs are applied as "
        "they are (ComfyUI maps their keys). A FLUX.2 klein LoRA needs a ComfyUI with a FLUX.2 model (0.3.64 has none)."
    )

    def __init__(self):
        self._cache: tuple | None = None

    @classmethod
    def INPUT_TYPES(cls):
        return widgets.load_lora_inputs()

    @classmethod
    def IS_CHANGED(cls, lora_path="", **_):
        try:
            path = resolve_lora_file(lora_path)
            info = os.stat(path)
            return f"{path}:{info.st_size}:{info.st_mtime_ns}"
        except (ValueError, OSError):
            return lora_path or ""

    @staticmethod
    def _skip(model, clip, text: str) -> dict:
        """Nothing applied: the nodes after this one are skipped (silently: the queue goes on), `text` says why."""
        host.console(text)
        return {"ui": {"text": [text]}, "result": (host.blocked(None, model), host.blocked(None, clip), text)}

    def _read(self, lora_path: str) -> tuple[str, dict]:
        """(the file, its state dict in keys ComfyUI maps); ValueError (one line) for anything that is not a LoRA."""
        path = resolve_lora_file(lora_path)
        info = os.stat(path)
        stamp = (path, info.st_size, info.st_mtime_ns)
        if self._cache is not None and self._cache[0] == stamp:
            return path, self._cache[1]
        try:
            state, _ = lora_keys.read_lora(path)
        except Exception as error:  # noqa: BLE001 - safetensors' and torch's errors for a file that is no LoRA
            detail = one_line(str(error) or type(error).__name__, 200)
            raise ValueError(f"lora_path {path!r} is not a readable LoRA file ({type(error).__name__}: {detail}): give a "
                             ".safetensors LoRA, e.g. SISO LoRA Generator's lora_path") from None
        if not isinstance(state, dict) or not lora_keys.module_count(state.keys()):
            raise ValueError(f"lora_path {path!r} holds no LoRA weights (no lora_down/lora_up or lora_A/lora_B keys): is it a "
                             "model checkpoint? give a LoRA file")
        self._cache = (stamp, state)
        return path, state

    def load(self, model, clip, lora_path, strength_model=1.0, strength_clip=1.0):
        if not (lora_path or "").strip():
            # SISO LoRA Generator failed, was cancelled or did not run: skip what follows, say why here
            return self._skip(model, clip, NO_LORA_INFO)
        try:
            path, state = self._read(lora_path)
        except (ValueError, OSError) as problem:
            return self._skip(model, clip, failed(str(problem)))
        summary = lora_keys.summarize(state.keys())
        modules = summary["unet"] + summary["transformer"] + summary["te1"] + summary["te2"]
        flux = summary["transformer"] > 0
        if strength_model == 0 and strength_clip == 0:
            info_text = f"{os.path.basename(path)}: strengths are 0, nothing applied"
            return {"ui": {"text": [info_text]}, "result": (model, clip, info_text)}
        sd = host.module("comfy.sd")
        if sd is None:
            raise RuntimeError("SISO Load LoRA needs ComfyUI (comfy.sd is not importable)")
        counter = _CountLoraWarnings()
        root = logging.getLogger()
        root.addHandler(counter)
        try:
            new_model, new_clip = sd.load_lora_for_models(model, clip, state, strength_model, strength_clip)
        except Exception as error:  # noqa: BLE001 - ComfyUI's LoRA code on a file it cannot apply
            return self._skip(model, clip, failed(f"ComfyUI could not apply {os.path.basename(path)} ({type(error).__name__}: "
                                                  f"{error}): is the base model {'FLUX' if flux else 'SDXL'}?"))
        finally:
            root.removeHandler(counter)
        patched_unet = _patch_count(new_model) - _patch_count(model)
        patched_clip = _patch_count(getattr(new_clip, "patcher", None)) - _patch_count(getattr(clip, "patcher", None))
        if flux:  # ComfyUI fuses q/k/v (and the single blocks' linear1): fewer weights than modules
            parts, patched = f"transformer {summary['transformer']}, CLIP-L {summary['te1']}", f"transformer {patched_unet}"
        else:
            parts, patched = f"UNet {summary['unet']}, CLIP-L {summary['te1']}, CLIP-G {summary['te2']}", f"UNet {patched_unet}"
        info_text = (f"{os.path.basename(path)}: {modules} LoRA modules in the file ({parts}); weights patched: {patched}, "
                     f"CLIP {patched_clip}; keys not loaded: {len(counter.not_loaded)}")
        if counter.not_loaded:
            info_text += f" (e.g. {counter.not_loaded[0]}): is the base model {'FLUX' if flux else 'SDXL'}?"
        host.console(info_text)
        return {"ui": {"text": [info_text]}, "result": (new_model, new_clip, info_text)}


NODE_CLASS_MAPPINGS = {"SISOLoRAGenerator": SISOLoRAGenerator, "SISOSubjectEdit": SISOSubjectEdit, "SISOLoadLoRA": SISOLoadLoRA}
NODE_DISPLAY_NAME_MAPPINGS = {"SISOLoRAGenerator": "SISO LoRA Generator", "SISOSubjectEdit": "SISO Subject Edit",
                              "SISOLoadLoRA": "SISO Load LoRA"}
