"""The offline default: tiny random-weight models and a real photo, for the demo, tests and notebooks.

Tiny random models prove that the whole pipeline works (generation with gradients, both losses,
the optimiser, early stopping, saving and reloading); they do not draw anything meaningful.
`offline_config()` is `SISOConfig()` with only what the tiny models need changed: their paths,
their 64 px resolution, and a learning rate large enough for a visible change in a few steps.

`siso-demo [--model_family sdxl|flux|sana]` (also `python -m siso_lib.offline`) writes the
tiny models once, under `outputs/test-assets/`, then runs SISO on `data/cat.png` with that
family and prints where everything went. `siso-demo --task edit` runs `siso-edit` instead: the cat
goes into `data/coffee.png` where the tiny Grounding-DINO + SAM find the "cup" (the automatic
mask, at the authors' box threshold: the random detector's top box scores ~0.998 there). The tiny Sana renders at its 512 px resolution bin
(as SanaPipeline does) and is resized to 64 px, so its iterations are the slowest.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .config import MODEL_FAMILIES, SISOConfig
from .errors import OneLineArgumentParser
from .test_assets import TINY_RESOLUTION, write_test_assets

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ASSETS_DIR = REPO_ROOT / "outputs" / "test-assets"
DEFAULT_SUBJECT = REPO_ROOT / "data" / "cat.png"
DEFAULT_SCENE = REPO_ROOT / "data" / "coffee.png"  # siso-demo --task edit: the cup is replaced by the cat
DEFAULT_SCENE_CLASS = "cup"

# changes to SISOConfig() that tiny random models need; everything else stays the default
OFFLINE_OVERRIDES = dict(
    resolution=TINY_RESOLUTION,
    learning_rate=5e-3,
    num_train_epochs=30,
    early_stopping_threshold_percentage=0.05,
    device="cpu",
)


def ensure_test_assets(directory: str | Path = DEFAULT_ASSETS_DIR, families: tuple[str, ...] = ("sdxl",)) -> dict[str, str]:
    """Write the tiny models under `directory` unless they are already there; return their paths
    ("sdxl", "dino", "ir", "clip", "grounding_dino", "sam", and "flux" / "sana" when asked for or
    already written)."""
    directory = Path(directory)
    manifest = directory / "ASSETS.json"
    needed = ("dino", "ir", "clip", "grounding_dino", "sam", "sdxl", *families)
    if manifest.is_file():
        paths = json.loads(manifest.read_text())
        if paths.get("size") == "tiny" and all(paths.get(k) and Path(paths[k]).exists() for k in needed):
            return {k: paths[k] for k in (*needed, *(f for f in MODEL_FAMILIES if paths.get(f))) if k in paths}
    wanted = tuple(dict.fromkeys(("sdxl", *families)))
    return write_test_assets(directory, "tiny", families=wanted, keep_existing=True)


def offline_config(assets: dict[str, str] | None = None, model_family: str = "sdxl", **overrides) -> SISOConfig:
    """SISOConfig for the tiny offline models of `model_family` (`assets` from `ensure_test_assets`)."""
    assets = assets or ensure_test_assets(families=(model_family,))
    values = dict(
        model_family=model_family,
        pretrained_model_name_or_path=assets[model_family],
        dino_model_name=assets["dino"],
        ir_features_path=assets["ir"],
        **OFFLINE_OVERRIDES,
    )
    values.update(overrides)
    return SISOConfig(**values)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="siso-demo", description="Run SISO end to end on tiny offline models and a real photo.")
    parser.add_argument("--task", choices=("generate", "edit"), default="generate",
                        help="generate: optimise a LoRA for the subject (siso-generate); edit: put the subject into the "
                        "scene photo, the mask made automatically by the tiny Grounding-DINO + SAM (siso-edit)")
    parser.add_argument("--model_family", choices=MODEL_FAMILIES, default="sdxl", help="which tiny model to optimise (edit: sdxl only)")
    parser.add_argument("--subject_image_path", default=str(DEFAULT_SUBJECT), help="the subject photo (default: data/cat.png)")
    parser.add_argument("--input_image_path", default=None, help="--task edit: the scene photo (default: data/coffee.png)")
    parser.add_argument("--input_class", default=None, help=f"--task edit: the scene object the subject replaces (default: {DEFAULT_SCENE_CLASS})")
    parser.add_argument("--assets_dir", default=str(DEFAULT_ASSETS_DIR),
                        help="where the tiny models are written once and reused (default: outputs/test-assets)")
    parser.add_argument("--output_dir", default=None, help="default: a fresh outputs/runs/<time>-<photo> folder")
    parser.add_argument("--overwrite", action="store_true", help="replace a LoRA an earlier run left in --output_dir")
    args = parser.parse_args(argv)
    # one torch thread unless the caller says otherwise: the tiny models gain nothing from more,
    # and on a CPU other jobs use, threads waiting on each other made the edit demo 4x slower (53 s vs 13 s)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.task == "edit" and args.model_family != "sdxl":
        parser.error(f"--task edit runs on SDXL only, not --model_family {args.model_family}")
    if args.task == "generate" and (args.input_image_path or args.input_class):
        parser.error("--input_image_path and --input_class are for --task edit (generation has no scene photo)")
    args.input_image_path = args.input_image_path or str(DEFAULT_SCENE)
    args.input_class = args.input_class or DEFAULT_SCENE_CLASS
    assets = ensure_test_assets(args.assets_dir, families=(args.model_family,))
    command = [
        "--subject_image_path", args.subject_image_path,
        "--pretrained_model_name_or_path", assets[args.model_family],
        "--dino_model_name", assets["dino"],
        "--ir_features_path", assets["ir"],
    ]
    for key, value in OFFLINE_OVERRIDES.items():
        command += [f"--{key}", str(value)]
    if args.output_dir:
        command += ["--output_dir", args.output_dir]
    if args.overwrite:
        command += ["--overwrite"]
    print("siso-demo: tiny random-weight models: this proves the pipeline works, not the picture quality", file=sys.stderr)
    print(f"siso-demo: tiny {args.model_family} model: {assets[args.model_family]} (DINO {assets['dino']}, IR {assets['ir']})", file=sys.stderr)
    if args.task == "edit":
        from .editing.cli import main as edit_main

        print(f"siso-demo: tiny Grounding-DINO {assets['grounding_dino']}, SAM {assets['sam']} (the automatic mask)", file=sys.stderr)
        return edit_main(command + [
            "--input_image_path", args.input_image_path, "--input_class", args.input_class, "--subject_class", "cat",
            "--detector_model", assets["grounding_dino"], "--segmenter_model", assets["sam"],
        ])
    from .generate import main as generate_main

    code = generate_main(command + ["--prompt", "a photo of a cat", "--model_family", args.model_family])
    if code == 0:
        print("siso-demo: score the LoRA (DINO, CLIP-I, CLIP-T, IR, diversity): siso-eval <the run folder above>", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
