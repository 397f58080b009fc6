"""The nodes' inputs as ComfyUI declares them (INPUT_TYPES), built from comfyui/defaults.json.

A widget that is a siso-lab setting takes its default, range, choices and tooltip from the
config field of the same meaning (`field_widget`), so they cannot drift from siso-generate's.
The inputs that belong to the node alone (where files go, which Python runs SISO, the images)
are declared here with their own tooltips.
"""

from __future__ import annotations

from .siso import defaults

FIELD_OF = {"base_model_path": "pretrained_model_name_or_path", "mixed_precision": "precision"}  # widget -> config field
KINDS = {"int": "INT", "float": "FLOAT", "bool": "BOOLEAN", "str": "STRING"}
RANGE_KEYS = ("min", "max", "step", "round")
EXECUTE = ("BOOLEAN", {"default": False, "forceInput": True,
                       "tooltip": "Connect a Boolean: False returns 'Idle' without running."})
IR_TOOLTIP = ("ir_features.pth, downloaded by hand (see README). A bare name is looked up in ComfyUI/models/siso. "
              "Empty: DINO features only.")
DINO_NOTE = " (config.json + model.safetensors)"
HIDDEN = {"unique_id": "UNIQUE_ID", "graph": "PROMPT"}
PYTHON_TOOLTIP = (
    "The Python that runs SISO (a separate process; siso-lab must be installed in its environment). Empty: the "
    "environment install.py --venv made (recorded in ComfyUI's user folder), else ComfyUI's own Python. Or the python "
    "of another environment, e.g. /path/siso-venv/bin/python.")
MEMORY_NOTE = ". Out of memory: the node's status names the mode the memory model predicts would fit"
PYTHON_WIDGET = ("STRING", {"default": "", "tooltip": PYTHON_TOOLTIP})


def field_widget(fields: dict, widget: str, note: str = "", tooltip: str | None = None, **options) -> tuple:
    """The widget of a config field: (kind or choices, {default, range, tooltip}); `note` is added to the
    field's help, `tooltip` replaces it, `options` add to or override the rest."""
    spec = fields[FIELD_OF.get(widget, widget)]
    declared = {"default": spec["default"], **{key: spec[key] for key in RANGE_KEYS if key in spec}}
    declared["tooltip"] = tooltip if tooltip is not None else spec["tooltip"] + note
    declared.update(options)
    return (list(spec["choices"]) if "choices" in spec else KINDS[spec["type"]], declared)


BASE_MODEL_PATH_NOTE = (" Used when base_model is 'hub id or diffusers folder'; a whole .safetensors checkpoint's path "
                        "works here too.")


def base_model_widget(choices: list[str], families: str) -> tuple:
    """The base model pick-list: 'hub id or diffusers folder (base_model_path)' first, then ComfyUI's model files."""
    return (list(choices), {"default": choices[0], "tooltip": (
        f"The base model: a whole {families} checkpoint in models/checkpoints (or models/diffusion_models), a diffusers "
        "folder in models/diffusers, or the first entry to use base_model_path (a hub id or any folder). A checkpoint is "
        "loaded with a config shipped with siso-lab (no download); ComfyUI's diffusion_models files hold the denoiser alone "
        "and are refused (SISO trains through the text encoders and the VAE too). Refresh the page to list new files.")})


def recipe_note(field: str) -> str:
    return f" (default = the family's recipe: {defaults.recipe_text(field)})"


def generator_inputs(base_models: list[str]) -> dict:
    """SISO LoRA Generator's inputs; `base_models`: the base_model pick-list (host.base_model_choices())."""
    g = defaults.GENERATE_FIELDS
    return {
        "required": {
            "subject_image": ("IMAGE", {"tooltip": "ONE photo of the subject. A batch uses its first image."}),
            "execute": EXECUTE,
            "prompt": field_widget(g, "prompt", ", e.g. 'a photo of a dog'", multiline=False),
            "weights_output_dir": ("STRING", {"default": "", "tooltip": (
                "Where the LoRA goes. Empty: ComfyUI/models/loras/siso/<time>-<prompt>/. Relative paths are under "
                "models/loras; absolute paths as given. Under models/loras only the file Load LoRA applies fully goes "
                "there (SDXL: the Kohya LoRA; FLUX.1, FLUX.2 klein: the diffusers LoRA); the rest of the run goes to "
                "output/siso/<time>-<prompt>/.")}),
            "base_model": base_model_widget(base_models, "SDXL(-Turbo), FLUX.1(-schnell) or FLUX.2 klein"),
            "base_model_path": field_widget(g, "base_model_path", tooltip=(
                "Hub id or local diffusers folder (a name in models/diffusers works); it picks the model family: SDXL "
                "(e.g. stabilityai/sdxl-turbo), FLUX.1 (e.g. black-forest-labs/FLUX.1-schnell) or FLUX.2 klein (e.g. "
                "black-forest-labs/FLUX.2-klein-4B; ComfyUI 0.3.64 cannot render its LoRA), read from "
                "model_index.json (a checkpoint: from its tensor names). Sana is not offered." + BASE_MODEL_PATH_NOTE)),
            "siso_script_path": ("STRING", {"default": "", "tooltip": (
                "Empty: the bundled siso-generate (siso-lab). Or the path of the authors' siso_generation_sdxl.py "
                "(siso_generation_flux.py for a FLUX base model) or any script with its arguments.")}),
            "ir_features_path": field_widget(g, "ir_features_path", tooltip=IR_TOOLTIP, default=""),
            "num_train_epochs": field_widget(g, "num_train_epochs"),
            "learning_rate": field_widget(g, "learning_rate", recipe_note("learning_rate")),
            "dino_features_weight": field_widget(g, "dino_features_weight"),
            "ir_features_weight": field_widget(g, "ir_features_weight"),
            "seed": field_widget(g, "seed", "; a new seed re-runs the optimisation", control_after_generate=False),
            "resolution": field_widget(g, "resolution"),
            "rank": field_widget(g, "rank"),
            "early_stopping_max_count": field_widget(g, "early_stopping_max_count", recipe_note("early_stopping_max_count")),
            "early_stopping_threshold_percentage": field_widget(g, "early_stopping_threshold_percentage"),
            "num_inference_steps": field_widget(g, "num_inference_steps", recipe_note("num_inference_steps")),
            "train_text_encoder": field_widget(g, "train_text_encoder", ": both for SDXL, CLIP-L for FLUX.1 (T5 stays frozen), Qwen3 for FLUX.2 klein"
                                               + recipe_note("train_text_encoder")),
            "dino_model_name": field_widget(g, "dino_model_name", DINO_NOTE),
            "device": field_widget(g, "device", " (bundled siso-generate only)"),
            "mixed_precision": field_widget(g, "mixed_precision"),
            "mode": field_widget(g, "mode", MEMORY_NOTE + " (bundled siso-generate only)"),
            "quantize": field_widget(g, "quantize", " (bundled siso-generate only)"),
            "python_executable": ("STRING", {"default": "", "tooltip": PYTHON_TOOLTIP + (
                " With the authors' script in siso_script_path: the python of their environment.")}),
            "unique_subfolder": ("BOOLEAN", {"default": True, "tooltip": (
                "A new <time>-<prompt> folder per run inside weights_output_dir (never overwrites an earlier LoRA)")}),
            "unload_models": ("BOOLEAN", {"default": True, "tooltip": "Unload ComfyUI's models from VRAM before SISO starts"}),
        },
        "optional": {
            "subject_mask": ("MASK", {"tooltip": (
                "Load Image's MASK output (1 = transparent). Transparent parts of a cut-out photo are flattened onto "
                "white, as siso-generate does for a transparent file; without it they arrive black.")}),
            "extra_args": ("STRING", {"default": "", "multiline": False, "tooltip": (
                "More script arguments, e.g. --pretrained_vae_model_name_or_path madebyollin/sdxl-vae-fp16-fix")}),
        },
        "hidden": dict(HIDDEN),
    }


def edit_inputs(base_models: list[str]) -> dict:
    """SISO Subject Edit's inputs; `base_models`: the base_model pick-list."""
    e = defaults.EDIT_FIELDS
    return {
        "required": {
            "scene_image": ("IMAGE", {"tooltip": "The photo to edit. A batch uses its first image."}),
            "subject_image": ("IMAGE", {"tooltip": "ONE photo of the subject to put into the scene."}),
            "execute": EXECUTE,
            "prompt": field_widget(e, "prompt", " (the subject's), e.g. 'a photo of a dog'", multiline=False),
            "input_class": field_widget(e, "input_class", ", e.g. 'cup': the scene is inverted with 'a photo of a cup', and "
                                        "without a painted mask Grounding-DINO + SAM look for it. Empty: 'a photo' "
                                        "(needs a mask).", default="", multiline=False),
            "base_model": base_model_widget(base_models, "SDXL(-Turbo)"),
            "base_model_path": field_widget(e, "base_model_path", tooltip=(
                "SDXL(-Turbo) hub id or local diffusers folder (a name in models/diffusers works)." + BASE_MODEL_PATH_NOTE)),
            "ir_features_path": field_widget(e, "ir_features_path", tooltip=IR_TOOLTIP, default=""),
            "num_train_epochs": field_widget(e, "num_train_epochs"),
            "learning_rate": field_widget(e, "learning_rate"),
            "bg_mse_loss_weight": field_widget(e, "bg_mse_loss_weight", ": higher keeps more of the scene"),
            "inversion_max_step": field_widget(e, "inversion_max_step"),
            "dino_features_weight": field_widget(e, "dino_features_weight"),
            "ir_features_weight": field_widget(e, "ir_features_weight"),
            "seed": field_widget(e, "seed", control_after_generate=False),
            "resolution": field_widget(e, "resolution"),
            "rank": field_widget(e, "rank"),
            "early_stopping_max_count": field_widget(e, "early_stopping_max_count"),
            "early_stopping_threshold_percentage": field_widget(e, "early_stopping_threshold_percentage"),
            "train_text_encoder": field_widget(e, "train_text_encoder"),
            "dino_model_name": field_widget(e, "dino_model_name", DINO_NOTE),
            "device": field_widget(e, "device"),
            "mixed_precision": field_widget(e, "mixed_precision"),
            "mode": field_widget(e, "mode", MEMORY_NOTE),
            "quantize": field_widget(e, "quantize"),
            "python_executable": PYTHON_WIDGET,
            "unload_models": ("BOOLEAN", {"default": True, "tooltip": "Unload ComfyUI's models from VRAM before SISO starts"}),
        },
        "optional": {
            "mask": ("MASK", {"tooltip": ("Where the subject goes (1 = edit): paint it in the scene's Load Image mask editor "
                                         "and connect that MASK. Unconnected or empty: found from input_class.")}),
            "extra_args": ("STRING", {"default": "", "multiline": False,
                                      "tooltip": "More siso-edit arguments, e.g. --box_threshold 0.2"}),
        },
        "hidden": dict(HIDDEN),
    }


def load_lora_inputs() -> dict:
    """SISO Load LoRA's inputs."""
    return {
        "required": {
            "model": ("MODEL", {"tooltip": "The model the LoRA was optimised for (SDXL-Turbo or FLUX.1-schnell; ComfyUI 0.3.64 has no FLUX.2 model)."}),
            "clip": ("CLIP", {"tooltip": "Its CLIP."}),
            "lora_path": ("STRING", {"default": "", "forceInput": True,
                                     "tooltip": "SISO LoRA Generator's lora_path, or a String node with a path."}),
            "strength_model": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}),
            "strength_clip": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}),
        }
    }
