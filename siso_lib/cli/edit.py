"""`siso-edit`: put the subject of one photo into another photo (the scene), keeping the scene's
background; a drop-in for the authors' `siso_editing_sdxl.py`.

    siso-edit --input_image_path scene.png --subject_image_path dog.png --subject_class dog \\
        --mask mask.png                       # white (or opaque) = where the subject goes
    siso-edit ... --input_class cat           # no mask: Grounding-DINO + SAM find the cat

Every argument of the authors' script is accepted, so their documented command runs unchanged;
the ones that do nothing there either (dataset, hub, validation, tracker and distributed options)
are accepted with a one-line warning each. Their LLaVA captioner is not used: the subject's class
comes from `--subject_class` (the prompt becomes "a photo of a <class>", theirs) or `--prompt`,
and the region to edit from `--mask` or, automatically, from `--input_class` (the scene object's
class). Defaults are the authors' documented editing command (`SISOEditConfig`).

`result.png` is the edited photo at the scene photo's size (outside the mask bit-identical to it),
`result_square.png` the square the method edits. Output, exit codes and signals are
siso-generate's: a tqdm bar on stderr, `SISO_PROGRESS` lines (with the `background` term) and one
`SISO_RESULT` line on stdout; 0 done, 1 ended early on a
non-finite loss or out of memory, 2 bad input (nothing written), 130 / 143 interrupted by SIGINT /
SIGTERM (the best LoRA and edited image so far are written), 129 / 141 the parent or the output
pipe went away (the same, after the iteration in progress). Every check that needs no model
(both photos, the mask, the numbers, model folders, the output folder) runs before torch is imported.
"""

from __future__ import annotations

import argparse
import logging
import sys

# only light modules here: --help and every input error answer before torch is imported
from ..config import DEFAULT_BOX_THRESHOLD, DEFAULT_DETECTOR, DEFAULT_SEGMENTER, MIN_INVERSION_STEP, SISOEditConfig, class_prompt
from ..errors import SISOInputError
from .common import OneLineArgumentParser, ProgressPrinter, record_interruption, run_command
from .generate import (
    NO_EFFECT,
    _help,
    add_no_effect_options,
    add_options,
    check_progress_file,
    config_from_args,
    print_result,
    report,
    run_in_folder,
    shared_options,
    warn_no_effect,
)
from ..editing.runner import PreparedEdit, edit_preflight

logger = logging.getLogger("siso_lib")

EDIT_DEFAULTS = SISOEditConfig()
MASK_OPTIONS = ("detector_model", "segmenter_model", "box_threshold")  # the automatic mask's settings
# the arguments of siso_editing_sdxl.py that do nothing in its SISO loop either: accepted, warned about
EDIT_NO_EFFECT = {
    name: NO_EFFECT[name]
    for name in (
        "dataset_name", "dataset_config_name", "train_data_dir", "image_column", "caption_column", "validation_prompt",
        "num_validation_images", "validation_epochs", "max_train_samples", "center_crop", "random_flip",
        "train_batch_size", "max_train_steps", "checkpointing_steps", "checkpoints_total_limit", "resume_from_checkpoint",
        "snr_gamma", "dataloader_num_workers", "use_8bit_adam", "push_to_hub", "hub_token", "prediction_type",
        "hub_model_id", "logging_dir", "report_to", "local_rank", "enable_xformers_memory_efficient_attention",
        "enable_npu_flash_attention", "noise_offset", "debug_loss",
    )
}


def build_parser() -> argparse.ArgumentParser:
    e = EDIT_DEFAULTS
    shared = shared_options(e)
    p = OneLineArgumentParser(
        prog="siso-edit",
        description="SISO editing: put the subject of one photo into a scene photo where a mask says (or where "
        "Grounding-DINO + SAM find --input_class), keeping the rest of the scene. SDXL(-Turbo). "
        "Defaults: the authors' documented editing command.",
    )
    g = p.add_argument_group("inputs")
    g.add_argument("--input_image_path", required=True, help="the scene photo to edit")
    g.add_argument("--subject_image_path", required=True, help="the ONE photo of the subject to put into the scene")
    naming = g.add_mutually_exclusive_group()
    naming.add_argument("--subject_class", default=None,
                        help="the subject's class, e.g. dog: the prompt becomes 'a photo of a dog' (the authors' prompt)")
    naming.add_argument("--prompt", default=None, help="the subject's prompt instead of --subject_class, e.g. 'a photo of a red teapot'")
    g.add_argument("--input_class", default=None,
                   help="class of the scene's object the subject replaces, e.g. cat: ReNoise inverts the scene with "
                   "'a photo of a cat' and, without --mask, the automatic mask looks for it")
    g.add_argument("--mask", dest="mask_path", default=None,
                   help="PNG of the scene photo's size as a viewer shows it (its EXIF orientation is applied): white "
                   "(grey > 127) where the subject goes, black the background to keep; a mask whose transparency varies "
                   "is read by its alpha instead (opaque = where the subject goes, whatever the colour); a mask that is "
                   "mostly grey or coloured is refused. The share it covers is printed; the part outside the centre "
                   "square the edit works on stays unchanged (warned about). Default: made automatically from --input_class")
    g.add_argument("--pretrained_model_name_or_path", default=e.pretrained_model_name_or_path,
                   help="hub id or local diffusers folder of an SDXL(-Turbo) pipeline")
    add_options(g, shared, "pretrained_vae_model_name_or_path revision variant cache_dir dino_model_name ir_features_path")

    g = p.add_argument_group("automatic mask (without --mask)")
    g.add_argument("--detector_model", default=None, help=f"{_help('detector_model', SISOEditConfig)} (default: {DEFAULT_DETECTOR})")
    g.add_argument("--segmenter_model", default=None, help=f"{_help('segmenter_model', SISOEditConfig)} (default: {DEFAULT_SEGMENTER})")
    g.add_argument("--box_threshold", type=float, default=None,
                   help=f"{_help('box_threshold', SISOEditConfig)} (default: {DEFAULT_BOX_THRESHOLD})")

    g = p.add_argument_group("outputs")
    g.add_argument("--output_dir", default=None,
                   help="folder for every file of the edit (default: a fresh outputs/runs/<time>-edit-<subject>)")
    add_options(g, shared, "overwrite log_every_epoch save_on_improve progress_file preview_file")

    g = p.add_argument_group("edit")
    g.add_argument("--inversion_max_step", type=float, default=e.inversion_max_step,
                   help=f"{_help('inversion_max_step', SISOEditConfig)}; allowed range [{MIN_INVERSION_STEP:g}, 1]")
    g.add_argument("--bg_mse_loss_weight", type=float, default=e.bg_mse_loss_weight, help=_help("bg_mse_loss_weight", SISOEditConfig))
    add_options(g, shared, "resolution seed")

    g = p.add_argument_group("optimisation")
    add_options(g, shared, "num_train_epochs")
    g.add_argument("--learning_rate", type=float, default=e.learning_rate, help="AdamW learning rate of the LoRA")
    add_options(g, shared, "scale_lr lr_scheduler lr_warmup_steps gradient_accumulation_steps adam_beta1 adam_beta2")
    g.add_argument("--adam_weight_decay", type=float, default=e.adam_weight_decay, help="AdamW weight decay")
    add_options(g, shared, "adam_epsilon max_grad_norm rank")
    g.add_argument("--train_text_encoder", action=argparse.BooleanOptionalAction, default=e.train_text_encoder,
                   help="also put LoRA on both CLIP text encoders (default: off, as the authors' editing command)")
    add_options(g, shared, "dino_features_weight ir_features_weight early_stopping_threshold_percentage")
    g.add_argument("--early_stopping_max_count", type=int, default=e.early_stopping_max_count,
                   help="stop after this many iterations without such an improvement")

    g = p.add_argument_group("device, speed and memory")
    add_options(g, shared, "device mixed_precision mode quantize gradient_checkpointing allow_tf32")
    add_options(p.add_argument_group("logging"), shared, "quiet debug")
    add_no_effect_options(p, EDIT_NO_EFFECT)
    return p


def edit_config_from_args(args: argparse.Namespace) -> SISOEditConfig:
    """Arguments -> SISOEditConfig; the subject must be named (the authors' captioner is not used)."""
    if args.prompt is None:
        if args.subject_class is None or not args.subject_class.strip():
            raise SISOInputError(
                "name the subject: --subject_class dog (the prompt becomes 'a photo of a dog') or --prompt '...'; "
                "the authors' LLaVA captioner is not used"
            )
        args.prompt = class_prompt(args.subject_class)
    return config_from_args(args, SISOEditConfig)


def warn_mask_options(args: argparse.Namespace) -> None:
    """With --mask, the automatic mask's options do nothing: say so, one line each."""
    if args.mask_path:
        for name in MASK_OPTIONS:
            if getattr(args, name) is not None:
                logger.warning("ignoring --%s: --mask gives the region, no automatic mask is made", name)


PROG = "siso-edit"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args, lambda: _check_and_run(args), prog=PROG)


def _check_and_run(args: argparse.Namespace) -> int:
    warn_no_effect(args, EDIT_NO_EFFECT)
    warn_mask_options(args)
    check_progress_file(args.progress_file)
    check_progress_file(args.preview_file, "--preview_file")
    config = edit_config_from_args(args)
    # every check (the automatic mask's hub models, with HF_HUB_OFFLINE=1, after every local path) that needs no model, before the heavy imports below (seconds)
    prepared = edit_preflight(config, args.subject_image_path, args.output_dir, overwrite=args.overwrite)
    return run_in_folder(prepared.run, lambda: _run(args, prepared), args)


def _run(args: argparse.Namespace, prepared: PreparedEdit) -> int:
    from ..editing.runner import run_prepared_edit

    printer = ProgressPrinter(prepared.run.config.num_train_epochs, args.quiet, args.progress_file, args.preview_file)
    try:
        outcome = run_prepared_edit(prepared, callbacks=[printer], log_every_epoch=args.log_every_epoch)
    finally:
        printer.close()
    record_interruption(outcome.artifacts.run_json)
    print_result(outcome.result, outcome.paths())
    return report(outcome.result, outcome.artifacts, outcome.optimizer, outcome.labelled(), prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
