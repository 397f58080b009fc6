"""Every file input says which of three things is wrong, in one line (errors.check_file): it does
not exist, it is a folder, or it is not a file; and the user's own paths are checked before a
default model is looked up in the hub cache. The fresh-user trial: `--mask /tmp/masks` (a folder)
and `siso-sweep --subjects data` said "does not exist"; `--ir_features_path data` (a folder) said
"re-download"; a mistyped `--detector_model` folder was reported after the default SAM."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from siso_lib.errors import SISOInputError

REPO = Path(__file__).resolve().parents[1]
PHOTO = "give the path of a PNG/JPEG/WebP photo"


def file_inputs(tmp_path: Path) -> dict:
    """{what the message names: a call that reads that input from a path}"""
    from siso_lib.editing.inputs import load_scene
    from siso_lib.editing.masks import load_mask
    from siso_lib.evaluation.prompts import read_prompt_file
    from siso_lib.io.images import load_subject_image
    from siso_lib.io.model_paths import check_ir_checkpoint_path
    from siso_lib.sweeps.spec import build_sweep, load_spec

    return {
        "subject image": load_subject_image,
        "scene photo": lambda path: load_scene(path, 64),
        "mask": lambda path: load_mask(path, (64, 64), 64),
        "prompt file": read_prompt_file,
        "IR checkpoint": check_ir_checkpoint_path,
        "sweep file": load_spec,
        "subject photo": lambda path: build_sweep("t", {"rank": ["4"]}, subjects=[str(path)], root=tmp_path / "sweeps"),
        "notebook": lambda path: build_sweep("t", {"rank": ["4"]}, notebook=path, root=tmp_path / "sweeps"),
    }


def make(tmp_path: Path, state: str) -> Path:
    path = tmp_path / "given"
    if state == "a folder":
        path.mkdir()
    elif state == "not a file":
        os.mkfifo(path)  # exists, is no folder and no regular file
    return path


@pytest.mark.parametrize("state, words", [("missing", "does not exist"), ("a folder", "is a folder, not a file"),
                                          ("not a file", "is not a file")])
@pytest.mark.parametrize("what", ["subject image", "scene photo", "mask", "prompt file", "IR checkpoint", "sweep file",
                                  "subject photo", "notebook"])
def test_every_file_input_tells_missing_from_a_folder_from_not_a_file(tmp_path, what, state, words):
    path = make(tmp_path, state)
    with pytest.raises(SISOInputError) as raised:
        file_inputs(tmp_path)[what](path)
    message = str(raised.value)
    assert message.startswith(f"{what} {str(path)!r} {words}: ") and "\n" not in message, message
    if state != "missing":
        assert "does not exist" not in message and "download" not in message  # the fix of a missing file is not this one's


def test_an_ir_folder_is_told_apart_from_an_empty_download(tmp_path):
    from siso_lib.io.model_paths import check_ir_checkpoint_path

    with pytest.raises(SISOInputError, match=r"is a folder, not a file: give the path of the ir_features.pth file itself") as folder:
        check_ir_checkpoint_path(tmp_path)
    assert "re-download" not in str(folder.value)
    (tmp_path / "ir_features.pth").write_bytes(b"")
    with pytest.raises(SISOInputError, match=r"is empty \(0 bytes\): the download was cut off; re-download ir_features.pth"):
        check_ir_checkpoint_path(tmp_path / "ir_features.pth")


def test_a_photo_folder_in_a_sweep_dry_run_is_named_a_folder(tmp_path, capsys):
    from siso_lib.cli.sweep import main

    code = main(["--name", "t", "--grid", "seed=1,2", "--set", "models=offline", "--subjects", str(REPO / "data"),
                 "--dry-run", "--output-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and f"subject photo {str(REPO / 'data')!r} is a folder, not a file: {PHOTO}" in err, err


def test_a_pipeline_of_another_family_is_named_by_its_title(tmp_path):
    """The fresh-user trial: "... is a sdxl pipeline"."""
    from siso_lib.evaluation.evaluate import check_reference_baseline
    from siso_lib.io.model_paths import check_model_folder

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(SISOInputError, match=r"is an SDXL pipeline \(StableDiffusionXLPipeline\), not FLUX: use model_family='sdxl'"):
        check_model_folder(tmp_path, "flux")
    with pytest.raises(SISOInputError, match=r"this is an SDXL run: drop the baseline"):
        check_reference_baseline("sdxl")
