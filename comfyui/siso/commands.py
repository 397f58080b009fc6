"""The child's command lines: siso-generate's (or the authors' script's) and siso-edit's.

Numbers are written so that the scripts read back exactly the widget's value (`repr` of a
float); extra_args are split as the user's shell would.
"""

from __future__ import annotations

import shlex

from . import upstream
from .pack import IS_WINDOWS
from .params import EditParams, SISOParams, with_recipe


def format_number(value: float) -> str:
    """3.0 -> '3', 2.5 -> '2.5'."""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def extra(args: str) -> list[str]:
    return shlex.split(args or "", posix=not IS_WINDOWS)


def optimisation_arguments(params: SISOParams | EditParams) -> list[str]:
    """The settings both commands take the same way (iterations, learning rate, loss weights, seed,
    size, LoRA rank, early stopping)."""
    return [
        "--num_train_epochs", str(int(params.num_train_epochs)),
        "--learning_rate", repr(float(params.learning_rate)),
        "--dino_features_weight", repr(float(params.dino_features_weight)),
        "--ir_features_weight", repr(float(params.ir_features_weight)),
        "--seed", str(int(params.seed)),
        "--resolution", str(int(params.resolution)),
        "--rank", str(int(params.rank)),
        "--early_stopping_max_count", str(int(params.early_stopping_max_count)),
        "--early_stopping_threshold_percentage", format_number(params.early_stopping_threshold_percentage),
    ]


def build_command(python: str, script: str, flavour: str, image_path: str, params: SISOParams, weights_dir: str,
                  output_dir: str, preview_file: str = "") -> list[str]:
    """The generator's argv; the authors' scripts get only their arguments. Recipe fields still None are
    filled from the family's recipe (check_inputs has done it for a job). `preview_file`: where siso-generate
    writes each iteration's image for the node to show (siso-lab only)."""
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
        *optimisation_arguments(params),
        "--num_inference_steps", str(int(params.num_inference_steps)),
        "--dino_model_name", params.dino_model_name,
    ]
    if params.ir_features_path:
        command += ["--ir_features_path", params.ir_features_path]
    if flavour == "siso-lab":
        command.append("--train_text_encoder" if params.train_text_encoder else "--no-train_text_encoder")
        command += ["--device", params.device or "auto", "--mixed_precision", params.mixed_precision or "auto"]
        command += ["--mode", params.mode or "auto", "--quantize", params.quantize or "auto", "--quiet"]
        command += ["--preview_file", preview_file] if preview_file else []
    else:
        command += upstream.arguments(bool(params.train_text_encoder), params.mixed_precision)
    return command + extra(params.extra_args)


def build_edit_command(python: str, script: str, scene: str, subject: str, mask: str | None, params: EditParams,
                       resolved: SISOParams, output_dir: str, preview_file: str = "") -> list[str]:
    """siso-edit's argv (`resolved`: the checked model paths; `preview_file`: each iteration's image, for the node)."""
    command = [
        python, "-u", script,
        "--input_image_path", scene,
        "--subject_image_path", subject,
        "--prompt", params.prompt,
        "--pretrained_model_name_or_path", resolved.base_model_path,
        "--dino_model_name", resolved.dino_model_name,
        "--output_dir", output_dir,
        "--bg_mse_loss_weight", repr(float(params.bg_mse_loss_weight)),
        "--inversion_max_step", repr(float(params.inversion_max_step)),
        *optimisation_arguments(params),
        "--train_text_encoder" if params.train_text_encoder else "--no-train_text_encoder",
        "--device", params.device or "auto",
        "--mixed_precision", params.mixed_precision or "auto",
        "--mode", params.mode or "auto",
        "--quantize", params.quantize or "auto",
        "--quiet",
    ]
    if resolved.ir_features_path:
        command += ["--ir_features_path", resolved.ir_features_path]
    if params.input_class.strip():
        command += ["--input_class", params.input_class.strip()]
    if mask:
        command += ["--mask", mask]
    if preview_file:
        command += ["--preview_file", preview_file]
    return command + extra(params.extra_args)
