"""The ComfyUI nodes: "SISO LoRA Generator", "SISO Subject Edit" and "SISO Load LoRA".

The work is done by `siso_runner` and `siso_edit_runner` (no ComfyUI there, tested on their own); this module adds
what needs ComfyUI: widget definitions, unloading ComfyUI's models, the progress bar and
Cancel, the preview image and the status text on the node, and applying a LoRA with
ComfyUI's own LoRA code. ComfyUI's modules are imported lazily, so this file also imports
(and its nodes run, without the ComfyUI extras) in a plain Python for tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid

try:
    from . import lora_keys, siso_defaults, siso_edit_runner as edit_runner, siso_runner as runner
    from .siso_defaults import DEFAULTS, DEFAULTS_SOURCE, EDIT_DEFAULTS, EDIT_DEFAULTS_SOURCE, MODES, PRECISIONS
except ImportError:  # loaded as top-level modules (e.g. by a tool that put this folder on sys.path)
    import lora_keys  # type: ignore
    import siso_defaults  # type: ignore
    import siso_edit_runner as edit_runner  # type: ignore
    import siso_runner as runner  # type: ignore
    from siso_defaults import DEFAULTS, DEFAULTS_SOURCE, EDIT_DEFAULTS, EDIT_DEFAULTS_SOURCE, MODES, PRECISIONS  # type: ignore

log = logging.getLogger("siso.comfyui")
CONSOLE_PREFIX = "[SISO]"
IDLE_STATUS = "Idle: execute is False (nothing was run)"
RUNNING_STATUS = "Running: SISO is optimising a LoRA (progress on the SISO LoRA Generator node)"


class SISOCancelled(Exception):
    """A cancelled run outside ComfyUI (inside, ComfyUI's InterruptProcessingException is raised)."""


# ----------------------------------------------------------------------------- ComfyUI access


def _comfy_module(name: str):
    try:
        return __import__(name, fromlist=["_"])
    except Exception:  # noqa: BLE001 - not inside ComfyUI (tests, tools)
        return None


def _folder(kind: str) -> list[str]:
    folder_paths = _comfy_module("folder_paths")
    if folder_paths is None:
        return []
    try:
        return list(folder_paths.get_folder_paths(kind))
    except Exception:  # noqa: BLE001 - an unknown folder kind
        return []


def loras_root() -> str:
    """ComfyUI's first models/loras folder (SISO_LORAS_DIR overrides; ./loras outside ComfyUI)."""
    if os.environ.get("SISO_LORAS_DIR"):
        return os.environ["SISO_LORAS_DIR"]
    folders = _folder("loras")
    return folders[0] if folders else os.path.abspath("loras")


def loras_folders() -> list[str]:
    """Every folder ComfyUI's LoraLoader lists (SISO_LORAS_DIR alone when set)."""
    if os.environ.get("SISO_LORAS_DIR"):
        return [os.environ["SISO_LORAS_DIR"]]
    return _folder("loras") or [loras_root()]


def runs_root() -> str:
    """Where a run's files other than the Kohya LoRA go: ComfyUI's output/siso (SISO_RUNS_DIR overrides)."""
    if os.environ.get("SISO_RUNS_DIR"):
        return os.environ["SISO_RUNS_DIR"]
    folder_paths = _comfy_module("folder_paths")
    try:
        if folder_paths is not None:
            return os.path.join(folder_paths.get_output_directory(), runner.RUNS_SUBFOLDER)
    except Exception:  # noqa: BLE001
        pass
    return runner.default_runs_root(loras_root())


def search_dirs() -> dict[str, list[str]]:
    """Where relative model paths are looked up: ComfyUI's models/siso, models/diffusers, ..."""
    folder_paths = _comfy_module("folder_paths")
    models = [getattr(folder_paths, "models_dir", "")] if folder_paths is not None else []
    siso = [os.path.join(m, "siso") for m in models if m]
    return {
        "ir": siso + models,
        "base_model": _folder("diffusers") + siso,
        "dino": siso,
    }


def console(text: str) -> None:
    for line in str(text).splitlines() or [""]:
        print(f"{CONSOLE_PREFIX} {line}", flush=True)


def send_to_ui(event: str, data: dict) -> None:
    server = _comfy_module("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return
    try:
        instance.send_sync(event, data, getattr(instance, "client_id", None))
    except Exception:  # noqa: BLE001 - the UI is optional
        pass


def blocked(message: str | None, fallback):
    """ExecutionBlocker(message) inside ComfyUI (downstream nodes do not run), else `fallback`."""
    graph = _comfy_module("comfy_execution.graph")
    blocker = getattr(graph, "ExecutionBlocker", None) if graph is not None else None
    return blocker(message) if blocker is not None else fallback


def save_preview(image_path: str, node_id: str | None) -> list[dict]:
    """Copy the best image into ComfyUI's temp folder and return the 'images' UI entry."""
    folder_paths = _comfy_module("folder_paths")
    if folder_paths is None or not image_path:
        return []
    try:
        import shutil

        folder = os.path.join(folder_paths.get_temp_directory(), "siso")
        os.makedirs(folder, exist_ok=True)
        name = f"siso_best_{node_id or 'node'}_{uuid.uuid4().hex[:8]}.png"
        shutil.copyfile(image_path, os.path.join(folder, name))
        return [{"filename": name, "subfolder": "siso", "type": "temp"}]
    except OSError:
        return []


TEXT_DISPLAYS = {"PreviewAny", "ShowText|pysssss"}  # display nodes that show a {"text": [...]} UI output
IMAGE_DISPLAYS = {"PreviewImage"}


def fed_displays(graph, unique_id) -> list[tuple[str, int, str]]:
    """(node id, output slot, "text"|"images") of each display node wired to an output of node `unique_id`."""
    found = []
    if not isinstance(graph, dict) or unique_id is None:
        return found
    for node_id, node in graph.items():
        if not isinstance(node, dict):
            continue
        kind = "text" if node.get("class_type") in TEXT_DISPLAYS else "images" if node.get("class_type") in IMAGE_DISPLAYS else ""
        if not kind:
            continue
        for value in (node.get("inputs") or {}).values():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) == str(unique_id) and isinstance(value[1], int):
                found.append((str(node_id), value[1], kind))
    return found


def refresh_displays(graph, unique_id, values: tuple) -> None:
    """Show `values` (one per output: lora_path, status, preview, report) in the display nodes fed by this node now.

    A display node that does not run in this prompt (everything after a Cancel) would keep
    showing the previous run's path and status; this sends it the message ComfyUI sends after
    a display node has run, with this run's values (text outputs; images are cleared).
    """
    server = _comfy_module("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return
    for node_id, slot, kind in fed_displays(graph, unique_id):
        if kind == "text":
            value = values[slot] if slot < len(values) and isinstance(values[slot], str) else ""
            output = {"text": [value]}
        else:
            output = {"images": []}
        message = {"node": node_id, "display_node": node_id, "output": output,
                   "prompt_id": getattr(instance, "last_prompt_id", None)}
        try:
            instance.send_sync("executed", message, getattr(instance, "client_id", None))
        except Exception:  # noqa: BLE001 - the UI is optional
            pass


def blank_image():
    import torch

    return torch.zeros((1, 64, 64, 3), dtype=torch.float32)


# ----------------------------------------------------------------------------- generator


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


FINGERPRINT_EXCLUDED = {"subject_image", "subject_mask", "execute", "unique_id", "graph"}


def fingerprint(inputs: dict) -> str:
    """A digest of the widget values and of the files they name (what IS_CHANGED compares)."""
    values = {k: v for k, v in sorted(inputs.items()) if k not in FINGERPRINT_EXCLUDED}
    values.setdefault("extra_args", "")  # optional: absent from IS_CHANGED's inputs until set
    files = [_stamp(str(values.get(k) or "")) for k in ("siso_script_path", "ir_features_path", "base_model_path", "python_executable")]
    if not values.get("siso_script_path"):
        files.append(_stamp(str(runner.LAUNCHER)))
    blob = json.dumps([values, files], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _recipe_widget(inputs: dict, name: str, cast):
    """A recipe widget's value for SISOParams: None (the family's recipe) while it holds its default."""
    value = inputs.get(name)
    if value is None or siso_defaults.is_widget_default(name, value):
        return None
    return cast(value)


class SISOLoRAGenerator:
    """From one subject image, optimise a LoRA for SDXL-Turbo or FLUX.1-schnell by running the SISO script."""

    CATEGORY = "SISO"
    FUNCTION = "generate"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING", "STRING", "IMAGE", "STRING")
    RETURN_NAMES = ("lora_path", "status", "preview", "report")
    OUTPUT_TOOLTIPS = (
        "Path of the LoRA file ComfyUI's LoraLoader and SISO Load LoRA apply fully (SDXL: Kohya keys; FLUX: the "
        "diffusers-format file); empty when the run failed, was cancelled or did not run.",
        "'Success', or 'Failed: <reason>' (or 'Idle: ...' when execute is False).",
        "The best image SISO generated (what the LoRA draws for the optimisation prompt).",
        "A few lines: the LoRA's LoraLoader name, best iteration and losses, why it stopped, notes.",
    )
    DESCRIPTION = (
        "SISO (arXiv 2503.16025): optimises a LoRA so that SDXL-Turbo or FLUX.1-schnell draws the subject of ONE "
        "photo; the base model (a diffusers folder or hub id) picks the family, and settings left at their default "
        "follow that family's recipe. Sana is not offered (ComfyUI core cannot render it). "
        "Runs the SISO generation script as a separate process (blocking the queue; Cancel stops it), "
        "after unloading ComfyUI's models from VRAM. Needs a GPU with about 16 GB for SDXL-Turbo at 512 px "
        "(12 GB with mode low-memory); FLUX.1-schnell needs far more (an estimated 40-50 GB). The one file Load "
        "LoRA applies fully (SDXL: the Kohya-format LoRA; FLUX: the diffusers-format LoRA) goes to "
        "models/loras/siso/<time>-<prompt>/; the rest of the run (diffusers-format LoRA, best image, loss curve, "
        "run.json) to output/siso/<time>-<prompt>/."
    )

    # fingerprint -> (succeeded, lora_path): a failed or vanished result is re-run by IS_CHANGED
    _history: dict[str, tuple[bool, str]] = {}
    _history_lock = threading.Lock()

    @classmethod
    def INPUT_TYPES(cls):
        d = DEFAULTS
        src = f"(default from siso-lab's SISOConfig, via {DEFAULTS_SOURCE})"

        def per_family(field: str) -> str:
            return (f"(default = the family's recipe: {siso_defaults.recipe_text(field)}; from siso-lab's "
                    f"FAMILY_RECIPES, via {siso_defaults.RECIPES_SOURCE})")

        return {
            "required": {
                "subject_image": ("IMAGE", {"tooltip": "ONE photo of the subject. A batch uses its first image."}),
                "execute": ("BOOLEAN", {"default": False, "forceInput": True,
                                        "tooltip": "Connect a Boolean: False returns 'Idle' without running."}),
                "prompt": ("STRING", {"default": d["prompt"], "multiline": False,
                                      "tooltip": "A SIMPLE prompt naming the subject's class, e.g. 'a photo of a dog'."}),
                "weights_output_dir": ("STRING", {"default": "",
                                                  "tooltip": "Where the LoRA goes. Empty: ComfyUI/models/loras/siso/<time>-<prompt>/. "
                                                             "Relative paths are under models/loras; absolute paths as given. "
                                                             "Under models/loras only the file Load LoRA applies fully goes "
                                                             "there (SDXL: the Kohya LoRA; FLUX: the diffusers LoRA); the rest "
                                                             "of the run goes to output/siso/<time>-<prompt>/."}),
                "base_model_path": ("STRING", {"default": d["pretrained_model_name_or_path"],
                                               "tooltip": "Hub id or local diffusers folder (a name in models/diffusers works); it "
                                                          "picks the model family: SDXL (e.g. stabilityai/sdxl-turbo) or FLUX "
                                                          "(e.g. black-forest-labs/FLUX.1-schnell), read from model_index.json. "
                                                          "Sana is not offered. Single-file checkpoints are not supported. " + src}),
                "siso_script_path": ("STRING", {"default": "",
                                                "tooltip": "Empty: the bundled siso-generate (siso-lab). Or the path of the authors' "
                                                           "siso_generation_sdxl.py (siso_generation_flux.py for a FLUX base "
                                                           "model) or any script with its arguments."}),
                "ir_features_path": ("STRING", {"default": "",
                                                "tooltip": "ir_features.pth, downloaded by hand (see README). A bare name is looked "
                                                           "up in ComfyUI/models/siso. Empty: DINO features only."}),
                "num_train_epochs": ("INT", {"default": d["num_train_epochs"], "min": 1, "max": 10000, "step": 1,
                                             "tooltip": "Maximum SISO iterations " + src}),
                "learning_rate": ("FLOAT", {"default": d["learning_rate"], "min": 1e-6, "max": 1.0, "step": 1e-5,
                                            "round": 1e-6,
                                            "tooltip": "AdamW learning rate of the denoiser's LoRA " + per_family("learning_rate")}),
                "dino_features_weight": ("FLOAT", {"default": d["dino_features_weight"], "min": 0.0, "max": 100.0,
                                                   "step": 0.05, "tooltip": "Weight of the DINOv2 similarity loss"}),
                "ir_features_weight": ("FLOAT", {"default": d["ir_features_weight"], "min": 0.0, "max": 100.0,
                                                 "step": 0.05, "tooltip": "Weight of the IR similarity loss"}),
                "seed": ("INT", {"default": d["seed"], "min": 0, "max": 2**32 - 1, "control_after_generate": False,
                                 "tooltip": "Fixes the starting noise; a new seed re-runs the optimisation."}),
                "resolution": ("INT", {"default": d["resolution"], "min": 64, "max": 2048, "step": 8,
                                       "tooltip": "Generation size during optimisation " + src}),
                "rank": ("INT", {"default": d["rank"], "min": 1, "max": 256, "step": 1, "tooltip": "LoRA rank " + src}),
                "early_stopping_max_count": ("INT", {"default": d["early_stopping_max_count"], "min": 1, "max": 10000,
                                                     "tooltip": "Stop after this many iterations without enough improvement "
                                                                + per_family("early_stopping_max_count")}),
                "early_stopping_threshold_percentage": ("FLOAT", {
                    "default": d["early_stopping_threshold_percentage"], "min": 0.0, "max": 100.0, "step": 0.01,
                    "round": 0.001,  # the frontend keeps as many decimals as the step has
                    "tooltip": "An iteration counts as an improvement when the loss improves by this many percent"}),
                "num_inference_steps": ("INT", {"default": d["num_inference_steps"], "min": 1, "max": 50,
                                                "tooltip": "Denoising steps per generated image "
                                                           + per_family("num_inference_steps")}),
                "train_text_encoder": ("BOOLEAN", {"default": d["train_text_encoder"],
                                                   "tooltip": "Also put the LoRA on the CLIP text encoder(s): both for "
                                                              "SDXL, CLIP-L for FLUX (T5 stays frozen) "
                                                              + per_family("train_text_encoder")}),
                "dino_model_name": ("STRING", {"default": d["dino_model_name"],
                                               "tooltip": "timm DINOv2 name or a local timm folder (config.json + model.safetensors)"}),
                "device": ("STRING", {"default": d["device"],
                                      "tooltip": "auto, cuda, cuda:1, xpu, mps or cpu (bundled siso-generate only)"}),
                "mixed_precision": (list(PRECISIONS), {"default": d["precision"],
                                                       "tooltip": "dtype of the frozen weights; auto = bf16 on CUDA/XPU"}),
                "mode": (list(MODES), {"default": d["mode"],
                                       "tooltip": "low-memory: gradient checkpointing for smaller GPUs; reference: the "
                                                  "authors' fp32 setup (bundled siso-generate only)"}),
                "python_executable": ("STRING", {"default": "",
                                                 "tooltip": "Empty: ComfyUI's own Python. Or the python of a separate "
                                                            "environment SISO is installed in (e.g. /path/siso-venv/bin/python)."}),
                "unique_subfolder": ("BOOLEAN", {"default": True,
                                                 "tooltip": "A new <time>-<prompt> folder per run inside weights_output_dir "
                                                            "(never overwrites an earlier LoRA)"}),
                "unload_models": ("BOOLEAN", {"default": True,
                                              "tooltip": "Unload ComfyUI's models from VRAM before SISO starts"}),
            },
            "optional": {
                "subject_mask": ("MASK", {"tooltip": "Load Image's MASK output (1 = transparent). Transparent parts of a "
                                                     "cut-out photo are flattened onto white, as siso-generate does for "
                                                     "a transparent file; without it they arrive black."}),
                "extra_args": ("STRING", {"default": "", "multiline": False,
                                          "tooltip": "More script arguments, e.g. --pretrained_vae_model_name_or_path madebyollin/sdxl-vae-fp16-fix"}),
            },
            "hidden": {"unique_id": "UNIQUE_ID", "graph": "PROMPT"},
        }

    @classmethod
    def IS_CHANGED(cls, **inputs):
        """Same widgets and files as a successful run whose LoRA still exists: reuse the cached result.

        A run that failed (or whose LoRA was deleted since) is re-run when queued again; a
        changed subject image re-runs anyway (ComfyUI compares the upstream node's output).
        """
        key = fingerprint(inputs)
        with cls._history_lock:
            previous = cls._history.get(key)
        if previous is not None:
            succeeded, lora_path = previous
            if not succeeded or (lora_path and not os.path.isfile(lora_path)):
                return float("nan")
        return key

    def generate(self, subject_image, execute, unique_id=None, extra_args="", subject_mask=None, graph=None, **widgets):
        inputs = dict(widgets, extra_args=extra_args)
        key = fingerprint(inputs)
        if not execute:
            console(IDLE_STATUS)
            # plain values, not blocked ones: the boxes showing them must not keep an earlier run's result
            return {"ui": {"text": [IDLE_STATUS]}, "result": ("", IDLE_STATUS, blank_image(), IDLE_STATUS)}
        refresh_displays(graph, unique_id, ("", RUNNING_STATUS, None, RUNNING_STATUS))
        job = self.run(subject_image, unique_id, mask=subject_mask, **inputs)
        with self._history_lock:
            self._history[key] = (job.ok, job.lora_path)
        report = job.report()
        if job.cancelled:
            refresh_displays(graph, unique_id, ("", job.status, None, report))
            self._raise_cancelled(report, unique_id)
        console(report)
        images = save_preview(job.result_image, unique_id)
        preview = runner.load_image_tensor(job.result_image) if job.result_image else None
        if preview is None:
            preview = blank_image()
        # on failure lora_path is "" (SISO Load LoRA then skips what follows it); a blocked output
        # would leave display nodes showing the previous run's path
        result = (job.lora_path if job.ok else "", job.status, preview, report)
        ui = {"text": [report]}
        if images:
            ui["images"] = images
        return {"ui": ui, "result": result}

    def run(self, subject_image, unique_id=None, mask=None, **inputs) -> runner.JobResult:
        """The whole run with ComfyUI's progress bar, Cancel, console and model unloading."""
        params = runner.SISOParams(
            prompt=inputs.get("prompt", DEFAULTS["prompt"]),
            base_model_path=inputs.get("base_model_path", DEFAULTS["pretrained_model_name_or_path"]),
            ir_features_path=inputs.get("ir_features_path", "") or "",
            dino_model_name=inputs.get("dino_model_name", DEFAULTS["dino_model_name"]),
            model_family="auto",  # the base model picks the family (SDXL or FLUX), as --model_family auto does
            num_train_epochs=int(inputs.get("num_train_epochs", DEFAULTS["num_train_epochs"])),
            learning_rate=_recipe_widget(inputs, "learning_rate", float),
            dino_features_weight=float(inputs.get("dino_features_weight", DEFAULTS["dino_features_weight"])),
            ir_features_weight=float(inputs.get("ir_features_weight", DEFAULTS["ir_features_weight"])),
            seed=int(inputs.get("seed", DEFAULTS["seed"])),
            resolution=int(inputs.get("resolution", DEFAULTS["resolution"])),
            rank=int(inputs.get("rank", DEFAULTS["rank"])),
            early_stopping_max_count=_recipe_widget(inputs, "early_stopping_max_count", int),
            early_stopping_threshold_percentage=float(
                inputs.get("early_stopping_threshold_percentage", DEFAULTS["early_stopping_threshold_percentage"])
            ),
            num_inference_steps=_recipe_widget(inputs, "num_inference_steps", int),
            train_text_encoder=_recipe_widget(inputs, "train_text_encoder", bool),
            device=inputs.get("device", DEFAULTS["device"]),
            mixed_precision=inputs.get("mixed_precision", DEFAULTS["precision"]),
            mode=inputs.get("mode", DEFAULTS["mode"]),
            extra_args=inputs.get("extra_args", "") or "",
        )
        request = runner.JobRequest(
            image=subject_image,
            params=params,
            loras_root=loras_root(),
            loras_folders=loras_folders(),
            runs_root=runs_root(),
            mask=mask,
            weights_output_dir=inputs.get("weights_output_dir", "") or "",
            unique_subfolder=bool(inputs.get("unique_subfolder", True)),
            python_executable=inputs.get("python_executable", "") or "",
            siso_script_path=inputs.get("siso_script_path", "") or "",
            search_dirs=search_dirs(),
        )
        hooks = self.hooks(unique_id, params.num_train_epochs)
        if inputs.get("unload_models", True):
            hooks.before_start = self.unload_models  # only once the inputs passed their checks
        return runner.run_job(request, hooks)

    @staticmethod
    def unload_models() -> None:
        model_management = _comfy_module("comfy.model_management")
        if model_management is None:
            return
        try:
            model_management.unload_all_models()
            model_management.soft_empty_cache(True)
            console("unloaded ComfyUI's models from VRAM before starting SISO")
        except Exception as error:  # noqa: BLE001
            console(f"could not unload ComfyUI's models ({error}); continuing")

    @staticmethod
    def hooks(unique_id, total: int) -> runner.Hooks:
        utils = _comfy_module("comfy.utils")
        model_management = _comfy_module("comfy.model_management")
        bar = utils.ProgressBar(total) if utils is not None else None
        cancel = threading.Event()

        def on_progress(record: dict) -> None:
            step, steps = int(record.get("step", 0)), int(record.get("total", total) or total)
            if bar is not None:
                try:
                    bar.update_absolute(step, steps)
                except Exception:  # noqa: BLE001 - the hook raises when the user pressed Cancel
                    cancel.set()
            send_to_ui("siso.progress", {"node": unique_id, "text": runner.format_progress(record)})

        def should_cancel() -> bool:
            if cancel.is_set():
                return True
            return bool(model_management is not None and model_management.processing_interrupted())

        def on_start(command, pid) -> None:
            console(f"started pid {pid}: {' '.join(_quote(c) for c in command)}")
            if bar is not None:
                try:
                    bar.update_absolute(0, total)
                except Exception:  # noqa: BLE001
                    cancel.set()
            send_to_ui("siso.progress", {"node": unique_id, "text": "loading models ..."})

        return runner.Hooks(
            on_line=lambda stream, text: console(text),
            on_progress=on_progress,
            should_cancel=should_cancel,
            on_start=on_start,
        )

    @staticmethod
    def _raise_cancelled(report: str, unique_id=None) -> None:
        console(report)
        send_to_ui("siso.progress", {"node": unique_id, "text": report})
        model_management = _comfy_module("comfy.model_management")
        if model_management is None:
            raise SISOCancelled(report.splitlines()[0])
        model_management.interrupt_current_processing(False)
        raise model_management.InterruptProcessingException()


def _quote(text: str) -> str:
    return text if text and all(c.isalnum() or c in "/._-=:" for c in text) else json.dumps(text)


# ----------------------------------------------------------------------------- loader


NO_LORA_INFO = (
    "no LoRA: lora_path is empty (SISO LoRA Generator failed or did not run; see its status), "
    "so the nodes after this one were skipped"
)


class _CountLoraWarnings(logging.Handler):
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
    candidates = [value] + [os.path.join(root, value) for root in _folder("loras")]
    for candidate in candidates:
        if os.path.isdir(candidate):
            for name in (runner.KOHYA_NAME, runner.DIFFUSERS_NAME):
                if os.path.isfile(os.path.join(candidate, name)):
                    return os.path.join(candidate, name)
            raise ValueError(f"folder {candidate!r} holds no {runner.KOHYA_NAME} or {runner.DIFFUSERS_NAME}")
        if os.path.isfile(candidate):
            return candidate
    raise ValueError(f"LoRA file {value!r} does not exist (also looked in ComfyUI's models/loras)")


def read_lora(path: str) -> tuple[dict, dict]:
    """State dict and safetensors metadata of a LoRA file, in keys ComfyUI maps.

    diffusers-format SDXL files are converted to Kohya keys; FLUX files (`transformer.` keys) stay
    as they are: ComfyUI maps those itself.
    """
    metadata: dict = {}
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    else:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
    if lora_keys.key_format(state.keys()) in ("diffusers", "mixed"):
        state = lora_keys.to_kohya(state, metadata)
    return state, metadata


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
        "they are (ComfyUI maps their keys)."
    )

    def __init__(self):
        self._cache: tuple | None = None

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model the LoRA was optimised for (SDXL-Turbo or FLUX.1-schnell)."}),
                "clip": ("CLIP", {"tooltip": "Its CLIP."}),
                "lora_path": ("STRING", {"default": "", "forceInput": True,
                                         "tooltip": "SISO LoRA Generator's lora_path, or a String node with a path."}),
                "strength_model": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}),
                "strength_clip": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}),
            }
        }

    @classmethod
    def IS_CHANGED(cls, lora_path="", **_):
        try:
            path = resolve_lora_file(lora_path)
            info = os.stat(path)
            return f"{path}:{info.st_size}:{info.st_mtime_ns}"
        except (ValueError, OSError):
            return lora_path or ""

    def load(self, model, clip, lora_path, strength_model=1.0, strength_clip=1.0):
        if not (lora_path or "").strip():
            # SISO LoRA Generator failed, was cancelled or did not run: skip what follows, say why here
            info_text = NO_LORA_INFO
            console(info_text)
            return {"ui": {"text": [info_text]}, "result": (blocked(None, model), blocked(None, clip), info_text)}
        path = resolve_lora_file(lora_path)
        info = os.stat(path)
        stamp = (path, info.st_size, info.st_mtime_ns)
        if self._cache is not None and self._cache[0] == stamp:
            state = self._cache[1]
        else:
            state, _ = read_lora(path)
            self._cache = (stamp, state)
        summary = lora_keys.summarize(state.keys())
        modules = summary["unet"] + summary["transformer"] + summary["te1"] + summary["te2"]
        flux = summary["transformer"] > 0
        if strength_model == 0 and strength_clip == 0:
            info_text = f"{os.path.basename(path)}: strengths are 0, nothing applied"
            return {"ui": {"text": [info_text]}, "result": (model, clip, info_text)}
        sd = _comfy_module("comfy.sd")
        if sd is None:
            raise RuntimeError("SISO Load LoRA needs ComfyUI (comfy.sd is not importable)")
        counter = _CountLoraWarnings()
        root = logging.getLogger()
        root.addHandler(counter)
        try:
            new_model, new_clip = sd.load_lora_for_models(model, clip, state, strength_model, strength_clip)
        finally:
            root.removeHandler(counter)
        patched_unet = _patch_count(new_model) - _patch_count(model)
        patched_clip = _patch_count(getattr(new_clip, "patcher", None)) - _patch_count(getattr(clip, "patcher", None))
        if flux:  # ComfyUI fuses q/k/v (and the single blocks' linear1): fewer weights than modules
            parts, patched = f"transformer {summary['transformer']}, CLIP-L {summary['te1']}", f"transformer {patched_unet}"
        else:
            parts = f"UNet {summary['unet']}, CLIP-L {summary['te1']}, CLIP-G {summary['te2']}"
            patched = f"UNet {patched_unet}"
        info_text = (
            f"{os.path.basename(path)}: {modules} LoRA modules in the file ({parts}); weights patched: {patched}, "
            f"CLIP {patched_clip}; keys not loaded: {len(counter.not_loaded)}"
        )
        if counter.not_loaded:
            info_text += f" (e.g. {counter.not_loaded[0]}): is the base model {'FLUX' if flux else 'SDXL'}?"
        console(info_text)
        return {"ui": {"text": [info_text]}, "result": (new_model, new_clip, info_text)}


def _patch_count(patcher) -> int:
    patches = getattr(patcher, "patches", None)
    return len(patches) if isinstance(patches, dict) else 0


# ----------------------------------------------------------------------------- subject edit


EDIT_RUNNING_STATUS = "Running: SISO is editing the scene (progress on the SISO Subject Edit node)"


class SISOSubjectEdit:
    """Put the subject of one photo into a scene photo where the mask says, keeping the rest (SISO editing, siso-edit)."""

    CATEGORY = "SISO"
    FUNCTION = "edit"
    OUTPUT_NODE = True
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("edited_image", "status")
    OUTPUT_TOOLTIPS = (
        "The edited scene (the best iteration's picture): the resolution x resolution square the edit works on "
        "(the scene scaled to cover it, centre-cropped). A blank image when the edit failed, was cancelled or did not run.",
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
        d = EDIT_DEFAULTS
        src = f"(default from siso-lab's SISOEditConfig, via {EDIT_DEFAULTS_SOURCE})"
        return {
            "required": {
                "scene_image": ("IMAGE", {"tooltip": "The photo to edit. A batch uses its first image."}),
                "subject_image": ("IMAGE", {"tooltip": "ONE photo of the subject to put into the scene."}),
                "execute": ("BOOLEAN", {"default": False, "forceInput": True,
                                        "tooltip": "Connect a Boolean: False returns 'Idle' without running."}),
                "prompt": ("STRING", {"default": d["prompt"], "multiline": False,
                                      "tooltip": "The subject's prompt, naming its class: 'a photo of a dog' " + src}),
                "input_class": ("STRING", {"default": "", "multiline": False,
                                           "tooltip": "The scene object the subject replaces, e.g. 'cat': the scene is "
                                                      "inverted with 'a photo of a cat', and without a painted mask "
                                                      "Grounding-DINO + SAM look for it. Empty: 'a photo' (needs a mask)."}),
                "base_model_path": ("STRING", {"default": d["pretrained_model_name_or_path"],
                                               "tooltip": "SDXL(-Turbo) hub id or local diffusers folder (a name in "
                                                          "models/diffusers works). " + src}),
                "ir_features_path": ("STRING", {"default": "",
                                                "tooltip": "ir_features.pth, downloaded by hand (see README). A bare name is looked "
                                                           "up in ComfyUI/models/siso. Empty: DINO features only."}),
                "num_train_epochs": ("INT", {"default": d["num_train_epochs"], "min": 1, "max": 10000, "step": 1,
                                             "tooltip": "Maximum SISO iterations " + src}),
                "learning_rate": ("FLOAT", {"default": d["learning_rate"], "min": 1e-6, "max": 1.0, "step": 1e-5, "round": 1e-6,
                                            "tooltip": "AdamW learning rate of the UNet's LoRA " + src}),
                "bg_mse_loss_weight": ("FLOAT", {"default": d["bg_mse_loss_weight"], "min": 0.0, "max": 1000.0, "step": 0.5,
                                                 "tooltip": "Weight of the background MSE outside the mask: higher keeps more "
                                                            "of the scene " + src}),
                "inversion_max_step": ("FLOAT", {"default": d["inversion_max_step"], "min": 0.05, "max": 1.0, "step": 0.05,
                                                 "tooltip": "ReNoise inversion depth / img2img strength: 0.75 regenerates "
                                                            "the last 3 of 4 steps " + src}),
                "dino_features_weight": ("FLOAT", {"default": d["dino_features_weight"], "min": 0.0, "max": 100.0,
                                                   "step": 0.05, "tooltip": "Weight of the DINOv2 similarity loss"}),
                "ir_features_weight": ("FLOAT", {"default": d["ir_features_weight"], "min": 0.0, "max": 100.0,
                                                 "step": 0.05, "tooltip": "Weight of the IR similarity loss"}),
                "seed": ("INT", {"default": d["seed"], "min": 0, "max": 2**31 - 1, "control_after_generate": False,
                                 "tooltip": "Seed of the LoRA's initialisation"}),
                "resolution": ("INT", {"default": d["resolution"], "min": 64, "max": 2048, "step": 8,
                                       "tooltip": "Side of the square the edit works on " + src}),
                "rank": ("INT", {"default": d["rank"], "min": 1, "max": 256, "tooltip": "LoRA rank " + src}),
                "early_stopping_max_count": ("INT", {"default": d["early_stopping_max_count"], "min": 1, "max": 1000,
                                                     "tooltip": "Stop after this many iterations without improvement " + src}),
                "early_stopping_threshold_percentage": ("FLOAT", {
                    "default": d["early_stopping_threshold_percentage"], "min": 0.0, "max": 100.0, "step": 0.01, "round": 0.001,
                    "tooltip": "An iteration counts as an improvement when the loss improves by this many percent"}),
                "train_text_encoder": ("BOOLEAN", {"default": d["train_text_encoder"],
                                                   "tooltip": "Also put the LoRA on both CLIP text encoders " + src}),
                "dino_model_name": ("STRING", {"default": d["dino_model_name"],
                                               "tooltip": "timm DINOv2 name or a local timm folder (config.json + model.safetensors)"}),
                "device": ("STRING", {"default": d["device"], "tooltip": "auto, cuda, cuda:1, xpu, mps or cpu"}),
                "mixed_precision": (list(PRECISIONS), {"default": d["precision"],
                                                       "tooltip": "dtype of the frozen weights; auto = bf16 on CUDA/XPU"}),
                "mode": (list(MODES), {"default": d["mode"],
                                       "tooltip": "low-memory: gradient checkpointing for smaller GPUs; reference: the authors' fp32 setup"}),
                "python_executable": ("STRING", {"default": "",
                                                 "tooltip": "Empty: the environment install.py made, else ComfyUI's own Python. "
                                                            "Or the python of a separate environment siso-lab is installed in."}),
                "unload_models": ("BOOLEAN", {"default": True,
                                              "tooltip": "Unload ComfyUI's models from VRAM before SISO starts"}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Where the subject goes (1 = edit): paint it in the scene's Load Image mask "
                                             "editor and connect that MASK. Unconnected or empty: found from input_class."}),
                "extra_args": ("STRING", {"default": "", "multiline": False,
                                          "tooltip": "More siso-edit arguments, e.g. --box_threshold 0.2"}),
            },
            "hidden": {"unique_id": "UNIQUE_ID", "graph": "PROMPT"},
        }

    @classmethod
    def IS_CHANGED(cls, **inputs):
        """Same widgets and files as a successful edit whose picture still exists: reuse the cached result
        (a changed scene, subject or mask re-runs anyway: ComfyUI compares the upstream outputs)."""
        key = fingerprint(inputs)
        with cls._history_lock:
            previous = cls._history.get(key)
        if previous is not None and (not previous[0] or not os.path.isfile(previous[1])):
            return float("nan")
        return key

    def edit(self, scene_image, subject_image, execute, unique_id=None, mask=None, extra_args="", graph=None, **widgets):
        inputs = dict(widgets, extra_args=extra_args)
        if not execute:
            console(IDLE_STATUS)
            return {"ui": {"text": [IDLE_STATUS]}, "result": (blank_image(), IDLE_STATUS)}
        refresh_displays(graph, unique_id, (None, EDIT_RUNNING_STATUS))
        job = self.run(scene_image, subject_image, mask, unique_id, **inputs)
        with self._history_lock:
            self._history[fingerprint(inputs)] = (job.ok, job.result_image)
        report = job.report()
        if job.cancelled:
            refresh_displays(graph, unique_id, (None, job.status))
            SISOLoRAGenerator._raise_cancelled(report, unique_id)
        console(report)
        edited = runner.load_image_tensor(job.result_image) if job.ok else None
        ui = {"text": [report]}
        images = save_preview(job.result_image, unique_id) if job.ok else []
        if images:
            ui["images"] = images
        return {"ui": ui, "result": (edited if edited is not None else blank_image(), job.status)}

    def run(self, scene_image, subject_image, mask=None, unique_id=None, **inputs) -> edit_runner.EditJobResult:
        """The whole edit with ComfyUI's progress bar, Cancel, console and model unloading."""
        d = EDIT_DEFAULTS
        params = edit_runner.EditParams(
            prompt=inputs.get("prompt", d["prompt"]),
            input_class=inputs.get("input_class", "") or "",
            base_model_path=inputs.get("base_model_path", d["pretrained_model_name_or_path"]),
            ir_features_path=inputs.get("ir_features_path", "") or "",
            dino_model_name=inputs.get("dino_model_name", d["dino_model_name"]),
            **{name: type(d[name])(inputs.get(name, d[name])) for name in (
                "num_train_epochs", "learning_rate", "bg_mse_loss_weight", "inversion_max_step", "dino_features_weight",
                "ir_features_weight", "seed", "resolution", "rank", "early_stopping_max_count",
                "early_stopping_threshold_percentage", "train_text_encoder", "device", "mode")},
            mixed_precision=inputs.get("mixed_precision", d["precision"]),
            extra_args=inputs.get("extra_args", "") or "",
        )
        request = edit_runner.EditRequest(
            scene=scene_image, subject=subject_image, params=params, runs_root=runs_root(), mask=mask,
            python_executable=inputs.get("python_executable", "") or "", script_path=self.script_path,
            search_dirs=search_dirs(),
        )
        hooks = SISOLoRAGenerator.hooks(unique_id, params.num_train_epochs)
        if inputs.get("unload_models", True):
            hooks.before_start = SISOLoRAGenerator.unload_models
        return edit_runner.run_edit_job(request, hooks)


NODE_CLASS_MAPPINGS = {"SISOLoRAGenerator": SISOLoRAGenerator, "SISOSubjectEdit": SISOSubjectEdit, "SISOLoadLoRA": SISOLoadLoRA}
NODE_DISPLAY_NAME_MAPPINGS = {"SISOLoRAGenerator": "SISO LoRA Generator", "SISOSubjectEdit": "SISO Subject Edit",
                              "SISOLoadLoRA": "SISO Load LoRA"}
