"""The node classes in a plain Python (no ComfyUI): declarations, defaults, idle, caching, runs."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from siso_comfy_helpers import fake, pids

from comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, WEB_DIRECTORY, host, nodes
from comfyui.siso import defaults, families, pack
from comfyui.siso.child import Hooks
from siso_lib.config import MODES, PRECISIONS, SISOConfig

Generator = nodes.SISOLoRAGenerator
SEED_INPUTS = [
    "subject_image", "prompt", "weights_output_dir", "base_model_path", "siso_script_path", "ir_features_path",
    "num_train_epochs", "learning_rate", "dino_features_weight", "ir_features_weight", "seed", "resolution", "rank",
    "early_stopping_max_count", "early_stopping_threshold_percentage", "execute",
]


def widget_defaults() -> dict:
    required = Generator.INPUT_TYPES()["required"]
    return {name: spec[1]["default"] for name, spec in required.items() if len(spec) > 1 and "default" in spec[1]}


def test_declaration():
    assert NODE_CLASS_MAPPINGS == {"SISOLoRAGenerator": Generator, "SISOSubjectEdit": nodes.SISOSubjectEdit,
                                   "SISOLoadLoRA": nodes.SISOLoadLoRA}
    assert NODE_DISPLAY_NAME_MAPPINGS == {"SISOLoRAGenerator": "SISO LoRA Generator", "SISOSubjectEdit": "SISO Subject Edit",
                                          "SISOLoadLoRA": "SISO Load LoRA"}
    assert WEB_DIRECTORY == "./js"
    assert Generator.CATEGORY == "SISO" and Generator.OUTPUT_NODE
    assert Generator.RETURN_TYPES == ("STRING", "STRING", "IMAGE", "STRING")
    assert Generator.RETURN_NAMES[:2] == ("lora_path", "status")
    types = Generator.INPUT_TYPES()
    required = types["required"]
    for name in SEED_INPUTS:
        assert name in required, name
    assert required["subject_image"][0] == "IMAGE"
    assert required["execute"] == ("BOOLEAN", required["execute"][1]) and required["execute"][1]["forceInput"] is True
    assert required["seed"][1]["control_after_generate"] is False  # no 'randomize' re-runs
    assert required["mixed_precision"][0] == list(PRECISIONS) and required["mode"][0] == list(MODES)
    assert types["hidden"] == {"unique_id": "UNIQUE_ID", "graph": "PROMPT"}
    assert types["optional"]["subject_mask"][0] == "MASK"
    loader = nodes.SISOLoadLoRA.INPUT_TYPES()["required"]
    assert loader["model"][0] == "MODEL" and loader["clip"][0] == "CLIP" and loader["lora_path"][0] == "STRING"


def test_widget_defaults_are_sisoconfigs():
    config = SISOConfig()
    defaults = widget_defaults()
    assert defaults["prompt"] == config.prompt
    assert defaults["base_model_path"] == config.pretrained_model_name_or_path == "stabilityai/sdxl-turbo"
    assert defaults["dino_model_name"] == config.dino_model_name
    for name in ("num_train_epochs", "learning_rate", "dino_features_weight", "ir_features_weight", "seed", "resolution",
                 "rank", "early_stopping_max_count", "early_stopping_threshold_percentage", "num_inference_steps",
                 "train_text_encoder", "device", "mode"):
        assert defaults[name] == getattr(config, name), name
    assert defaults["mixed_precision"] == config.precision
    assert (defaults["resolution"], defaults["num_inference_steps"], defaults["num_train_epochs"]) == (512, 1, 50)
    assert defaults["ir_features_path"] == "" and defaults["siso_script_path"] == "" and defaults["python_executable"] == ""


def inputs(**changes):
    values = widget_defaults()
    values.pop("execute", None)
    values.update(extra_args="")
    values.update(changes)
    return values


def test_execute_false_is_idle(image):
    output = Generator().generate(torch.from_numpy(image), False, unique_id="7", **inputs())
    lora_path, status, preview, report = output["result"]
    assert status == "Idle: execute is False (nothing was run)"
    assert lora_path == "" and torch.equal(preview, host.no_image(status))
    assert output["ui"]["text"] == [status]


def test_generate_success_and_outputs(workdirs, image, capsys):
    node = Generator()
    values = inputs(siso_script_path=fake("fake_success"), python_executable=sys.executable, num_train_epochs=3)
    output = node.generate(torch.from_numpy(image), True, unique_id="3", **values)
    lora_path, status, preview, report = output["result"]
    assert status == "Success"
    assert lora_path.startswith(str(workdirs["loras"] / "siso")) and lora_path.endswith("siso_lora_kohya.safetensors")
    assert tuple(preview.shape) == (1, 48, 64, 3) and preview.dtype == torch.float32  # result.png, [B, H, W, C]
    assert torch.allclose(preview[0, 0, 0], torch.tensor([200, 30, 10]) / 255.0)
    assert report.splitlines()[0] == "Success" and "LoraLoader name: siso/" in report
    assert output["ui"]["text"] == [report]
    console = capsys.readouterr().out
    assert "[SISO] step 3/3 loss" in console and "[SISO] started pid" in console
    assert list(workdirs["temp"].iterdir()) == []


def test_generate_failure_is_a_status_not_an_exception(workdirs, image):
    values = inputs(siso_script_path=fake("fake_oom"), python_executable=sys.executable)
    lora_path, status, preview, report = Generator().generate(torch.from_numpy(image), True, **values)["result"]
    assert status.startswith("Failed: out of GPU memory")
    assert lora_path == "" and torch.equal(preview, host.no_image(status))


def test_bad_interpreter_is_reported(workdirs, image):
    values = inputs(python_executable="/no/such/python")
    status = Generator().generate(torch.from_numpy(image), True, **values)["result"][1]
    assert status == "Failed: python_executable '/no/such/python' does not exist: give the python of the environment SISO is installed in"


def test_is_changed_caches_success_and_reruns_failures(workdirs, image):
    Generator._history.clear()
    good = inputs(siso_script_path=fake("fake_success"), python_executable=sys.executable, num_train_epochs=1)
    first = Generator.IS_CHANGED(**good)
    assert first == Generator.IS_CHANGED(**good)  # same widgets: same value, ComfyUI reuses its cache
    assert first != Generator.IS_CHANGED(**dict(good, seed=43))  # a changed parameter re-runs
    assert Generator.IS_CHANGED(**dict(good, unique_id="9")) == first  # hidden inputs do not count
    lora_path = Generator().generate(torch.from_numpy(image), True, **good)["result"][0]
    assert Generator.IS_CHANGED(**good) == first
    import os

    os.remove(lora_path)  # the LoRA was deleted: run again
    assert math.isnan(Generator.IS_CHANGED(**good))
    bad = inputs(siso_script_path=fake("fake_oom"), python_executable=sys.executable)
    Generator().generate(torch.from_numpy(image), True, **bad)
    assert math.isnan(Generator.IS_CHANGED(**bad))  # a failure is retried when queued again
    without_optional = {k: v for k, v in good.items() if k != "extra_args"}
    assert nodes.fingerprint(without_optional) == nodes.fingerprint(good)


def test_is_changed_sees_a_changed_script_file(tmp_path):
    script = tmp_path / "siso_generation_sdxl.py"
    script.write_text("print(1)\n")
    values = inputs(siso_script_path=str(script))
    before = Generator.IS_CHANGED(**values)
    script.write_text("print(22)\n")
    assert Generator.IS_CHANGED(**values) != before


def test_cancel_outside_comfyui_raises(workdirs, image, monkeypatch):
    """Inside ComfyUI a cancelled run raises InterruptProcessingException; here SISOCancelled."""
    def hooks(unique_id, total):
        return Hooks(should_cancel=lambda: True)

    monkeypatch.setattr(Generator, "hooks", staticmethod(hooks))
    values = inputs(siso_script_path=fake("fake_hang"), python_executable=sys.executable)
    with pytest.raises(nodes.SISOCancelled, match="Cancelled"):
        Generator().generate(torch.from_numpy(image), True, **values)
    assert list(workdirs["temp"].iterdir()) == []


def test_load_lora_resolves_paths(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    with pytest.raises(ValueError, match="lora_path is empty"):
        nodes.resolve_lora_file("  ")
    with pytest.raises(ValueError, match="holds no siso_lora_kohya.safetensors"):
        nodes.resolve_lora_file(str(folder))
    (folder / "pytorch_lora_weights.safetensors").write_bytes(b"x")
    assert nodes.resolve_lora_file(str(folder)).endswith("pytorch_lora_weights.safetensors")
    (folder / "siso_lora_kohya.safetensors").write_bytes(b"x")
    assert nodes.resolve_lora_file(str(folder)).endswith("siso_lora_kohya.safetensors")
    with pytest.raises(ValueError, match="does not exist"):
        nodes.resolve_lora_file(str(tmp_path / "nope.safetensors"))


def test_float_widgets_keep_their_default_and_small_values():
    """ComfyUI's frontend rounds a FLOAT to as many decimals as its step has (0.05 with step 0.1 -> 0.1)."""
    for name, spec in Generator.INPUT_TYPES()["required"].items():
        if spec[0] != "FLOAT":
            continue
        options = spec[1]
        decimals = max(0, -math.floor(math.log10(options["step"])))
        assert round(options["default"], decimals) == options["default"], name
    assert round(0.05, max(0, -math.floor(math.log10(Generator.INPUT_TYPES()["required"]["early_stopping_threshold_percentage"][1]["step"])))) == 0.05


# ----------------------------------------------------------------------------- no stale results


class FakeServer:
    """Stands in for ComfyUI's PromptServer.instance: records what the node sends to the UI."""

    def __init__(self):
        self.client_id = "client"
        self.last_prompt_id = "prompt-1"
        self.sent: list[tuple[str, dict]] = []

    def send_sync(self, event, data, sid=None):
        self.sent.append((event, data))

    def shown(self, node_id: str):
        """The last UI output sent for display node `node_id` ('executed' messages)."""
        outputs = [data["output"] for event, data in self.sent if event == "executed" and data["node"] == node_id]
        return outputs[-1] if outputs else None


class FakeBlocker:
    def __init__(self, message):
        self.message = message


@pytest.fixture
def comfy(monkeypatch):
    """The ComfyUI modules the node touches: server (UI messages) and ExecutionBlocker."""
    import types

    server = FakeServer()
    monkeypatch.setitem(sys.modules, "server", types.SimpleNamespace(PromptServer=types.SimpleNamespace(instance=server)))
    monkeypatch.setitem(sys.modules, "comfy_execution.graph", types.SimpleNamespace(ExecutionBlocker=FakeBlocker))
    return server


# the example workflow's graph: status, lora_path and the best image shown by display nodes
GRAPH = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
    "3": {"class_type": "SISOLoRAGenerator", "inputs": {"subject_image": ["1", 0], "subject_mask": ["1", 1]}},
    "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}},
    "5": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
    "6": {"class_type": "PreviewImage", "inputs": {"images": ["3", 2]}},
    "11": {"class_type": "SISOLoadLoRA", "inputs": {"lora_path": ["3", 0]}},
}


def test_a_failure_after_a_success_shows_no_earlier_result(workdirs, image, comfy):
    """Every output is a plain value, so the boxes showing them run and show THIS run (a blocked one would not)."""
    good = inputs(siso_script_path=fake("fake_success"), python_executable=sys.executable, num_train_epochs=1)
    first = Generator().generate(torch.from_numpy(image), True, unique_id="3", graph=GRAPH, **good)["result"]
    assert first[1] == "Success" and first[0].endswith("siso_lora_kohya.safetensors")
    bad = inputs(siso_script_path=fake("fake_oom"), python_executable=sys.executable)
    lora_path, status, preview, report = Generator().generate(torch.from_numpy(image), True, unique_id="3", graph=GRAPH,
                                                               **bad)["result"]
    assert lora_path == "" and status.startswith("Failed: out of GPU memory")
    assert isinstance(preview, torch.Tensor) and torch.equal(preview, host.no_image(status))  # not the previous run's image
    assert report.splitlines()[0] == status
    idle = Generator().generate(torch.from_numpy(image), False, unique_id="3", graph=GRAPH, **good)["result"]
    assert idle[0] == "" and isinstance(idle[2], torch.Tensor)
    # while it runs, the boxes fed by the node already stopped showing the previous result
    assert comfy.shown("5") == {"text": [""]} and comfy.shown("6") == {"images": []}
    assert comfy.shown("4") == {"text": [nodes.RUNNING_STATUS]}


def test_cancel_clears_the_boxes_of_the_nodes_that_will_not_run(workdirs, image, comfy, monkeypatch):
    good = inputs(siso_script_path=fake("fake_success"), python_executable=sys.executable, num_train_epochs=1)
    assert Generator().generate(torch.from_numpy(image), True, unique_id="3", graph=GRAPH, **good)["result"][1] == "Success"
    monkeypatch.setattr(Generator, "hooks", staticmethod(lambda unique_id, total: Hooks(should_cancel=lambda: True)))
    values = inputs(siso_script_path=fake("fake_hang"), python_executable=sys.executable)
    with pytest.raises(nodes.SISOCancelled):
        Generator().generate(torch.from_numpy(image), True, unique_id="3", graph=GRAPH, **values)
    assert comfy.shown("5") == {"text": [""]}  # lora_path: not the previous run's path
    assert comfy.shown("4") == {"text": ["Cancelled"]}
    assert comfy.shown("6") == {"images": []}
    executed = [data for event, data in comfy.sent if event == "executed"]
    assert {data["node"] for data in executed} == {"4", "5", "6"}  # display nodes only (not SISO Load LoRA)
    assert all(data["prompt_id"] == "prompt-1" and data["display_node"] == data["node"] for data in executed)


def test_load_lora_skips_quietly_without_a_lora(comfy):
    model, clip = object(), object()
    output = nodes.SISOLoadLoRA().load(model, clip, "")
    new_model, new_clip, info = output["result"]
    assert isinstance(new_model, FakeBlocker) and new_model.message is None and isinstance(new_clip, FakeBlocker)
    assert info == nodes.NO_LORA_INFO and output["ui"]["text"] == [info]


def test_a_run_without_a_picture_gives_one_labelled_as_none():
    """Never a black square that could pass for a result: a picture that says there is none, and why."""
    failed = host.no_image("Failed: out of GPU memory")
    idle = host.no_image(nodes.IDLE_STATUS)
    assert failed.shape == idle.shape == (1, 288, 512, 3) and failed.dtype == torch.float32
    assert 0.1 < failed.mean().item() < 0.6 and not torch.equal(failed, idle)
    top = failed[0, :14].reshape(-1, 3)  # the red warning stripes along the edge
    assert ((top[:, 0] > 0.7) & (top[:, 1] < 0.3)).any()


def test_load_lora_gives_a_one_line_status_for_a_file_that_is_no_lora(comfy, tmp_path, subject_path):
    from pathlib import Path

    """A PNG renamed, a truncated .safetensors, a checkpoint, a missing file: 'Failed: ...', the nodes after it skipped."""
    import shutil

    from safetensors.torch import save_file

    from siso_lib.io.lora import save_lora_files
    from test_comfyui_lora_keys import best_lora

    renamed = tmp_path / "photo.safetensors"
    shutil.copy(subject_path, renamed)
    good = save_lora_files(tmp_path / "good", best_lora(), rank=4, alpha=4.0, run_metadata={})["kohya"]
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(Path(good).read_bytes()[:-100])
    checkpoint = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 2)}, checkpoint)
    pickled = tmp_path / "notes.ckpt"
    pickled.write_text("not a pickle")
    cases = {
        renamed: "is not a readable LoRA file", truncated: "is not a readable LoRA file", pickled: "is not a readable LoRA file",
        checkpoint: "holds no LoRA weights", tmp_path / "missing.safetensors": "does not exist",
    }
    for path, expected in cases.items():
        model, clip = object(), object()
        new_model, new_clip, info = nodes.SISOLoadLoRA().load(model, clip, str(path))["result"]
        assert info.startswith("Failed: ") and expected in info and "\n" not in info and "Traceback" not in info, info
        assert isinstance(new_model, FakeBlocker) and new_model.message is None and isinstance(new_clip, FakeBlocker)


def test_the_node_passes_the_mask_on(workdirs, comfy):
    """subject_mask (Load Image's MASK) reaches the subject PNG: transparent corners become white."""
    from PIL import Image

    image = torch.zeros((1, 40, 56, 3))
    image[:, 10:30, 10:40] = torch.tensor([0.8, 0.2, 0.1])
    mask = torch.ones((1, 40, 56))
    mask[:, 10:30, 10:40] = 0.0
    values = inputs(siso_script_path=fake("fake_success"), python_executable=sys.executable, num_train_epochs=1)
    output = Generator().generate(image, True, unique_id="3", subject_mask=mask, **values)
    report = output["result"][3]
    assert "transparency (from subject_mask) flattened onto white" in report
    run_dir = next(line.split(": ", 1)[1] for line in report.splitlines() if line.startswith("run folder"))
    with Image.open(f"{run_dir}/subject.png") as picture:
        assert picture.getpixel((0, 0)) == (255, 255, 255) and picture.getpixel((20, 20)) == (204, 51, 26)


def test_an_empty_python_executable_uses_the_environment_install_py_made(workdirs, image, tmp_path):
    record = tmp_path / "siso_env.json"
    import json

    record.write_text(json.dumps({"python": sys.executable}))
    values = inputs(siso_script_path=fake("fake_success"), num_train_epochs=1)
    report = Generator().generate(torch.from_numpy(image), True, **values)["result"][3]
    assert f"python: {sys.executable} (the separate environment install.py --venv made)" in report
    record.write_text(json.dumps({"python": str(tmp_path / "gone" / "python")}))  # removed since: ComfyUI's own
    assert pack.default_python() == sys.executable


# ----------------------------------------------------------------------------- model families


def test_recipe_widgets_default_to_the_sdxl_recipe_and_name_every_familys_value():
    from siso_lib.config import FAMILY_RECIPES

    required = Generator.INPUT_TYPES()["required"]
    for widget, field in defaults.RECIPE_WIDGETS.items():
        assert required[widget][1]["default"] == FAMILY_RECIPES["sdxl"][field] == getattr(SISOConfig(), field), widget
        if widget != "base_model_path":
            tooltip = required[widget][1]["tooltip"]
            assert "family's recipe" in tooltip and defaults.recipe_text(field) in tooltip, widget
    assert "FLUX" in required["base_model_path"][1]["tooltip"] and "Sana is not offered" in required["base_model_path"][1]["tooltip"]
    assert defaults.NODE_FAMILIES == ("sdxl", "flux", "flux2_klein")


def test_the_node_reads_the_family_as_siso_generate_does(model_folders):
    from siso_lib.errors import SISOInputError
    from siso_lib.io.model_paths import detect_family

    for name in (model_folders["sdxl"], model_folders["flux"], "stabilityai/sdxl-turbo", "black-forest-labs/FLUX.1-schnell",
                 "someone/my-flux-finetune", model_folders["flux2_klein"], "black-forest-labs/FLUX.2-klein-4B"):
        assert families.detect_family(name) == detect_family(name), name
    for name in (model_folders["sana"], "Efficient-Large-Model/Sana_1600M_512px_diffusers"):
        assert detect_family(name) == "sana"
        with pytest.raises(families.FamilyProblem, match="Sana is not offered in ComfyUI"):
            families.detect_family(name)
    with pytest.raises(SISOInputError):
        detect_family(model_folders["other"])
    with pytest.raises(families.FamilyProblem, match="StableDiffusion3Pipeline pipeline: the SISO node runs SDXL"):
        families.detect_family(model_folders["other"])


def run_flux(workdirs, image, model_folders, tmp_path, monkeypatch, **changes):
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_ARGV_FILE", str(argv_file))
    values = inputs(siso_script_path=fake("fake_flux"), python_executable=sys.executable, base_model_path=model_folders["flux"],
                    num_train_epochs=2, **changes)
    output = Generator().generate(torch.from_numpy(image), True, unique_id="3", **values)
    import json

    return output, json.loads(argv_file.read_text()) if argv_file.exists() else None


def test_a_flux_run_returns_the_diffusers_lora_under_models_loras(workdirs, image, model_folders, tmp_path, monkeypatch):
    output, argv = run_flux(workdirs, image, model_folders, tmp_path, monkeypatch)
    lora_path, status, preview, report = output["result"]
    assert status == "Success", report
    pairs = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    assert pairs["--model_family"] == "flux" and pairs["--pretrained_model_name_or_path"] == model_folders["flux"]
    flux = defaults.recipe("flux")  # the widgets at their defaults: FLUX's recipe values
    assert float(pairs["--learning_rate"]) == flux["learning_rate"]
    assert int(pairs["--num_inference_steps"]) == flux["num_inference_steps"]
    assert int(pairs["--early_stopping_max_count"]) == flux["early_stopping_max_count"]
    assert ("--train_text_encoder" in argv) == flux["train_text_encoder"]
    # the LoRA LoraLoader lists is the diffusers-format file (ComfyUI maps FLUX keys itself); no Kohya file anywhere
    assert lora_path.startswith(str(workdirs["loras"] / "siso")) and lora_path.endswith("pytorch_lora_weights.safetensors")
    assert "LoraLoader name: siso/" in report and "model family: FLUX.1" in report and "no Kohya file" in report
    assert not list(workdirs["root"].rglob("siso_lora_kohya.safetensors"))
    run_dir = next(line.split(": ", 1)[1] for line in report.splitlines() if line.startswith("run folder"))
    from pathlib import Path

    kept = Path(run_dir) / "pytorch_lora_weights.safetensors"
    assert kept.is_file() and kept.read_bytes() == Path(lora_path).read_bytes()  # the run folder stays complete
    assert output["ui"]["text"] == [report]


def test_flux_widgets_left_at_their_default_follow_the_flux_recipe(workdirs, image, model_folders, tmp_path, monkeypatch):
    """A widget at its (SDXL) default means 'the family's recipe': a FLUX recipe value that differs is used and noted."""
    monkeypatch.setitem(defaults.RECIPES, "flux", dict(defaults.RECIPES["flux"], learning_rate=1e-4,
                                                            early_stopping_max_count=5))
    output, argv = run_flux(workdirs, image, model_folders, tmp_path, monkeypatch)
    report = output["result"][3]
    assert argv[argv.index("--learning_rate") + 1] == "0.0001" and argv[argv.index("--early_stopping_max_count") + 1] == "5"
    assert "learning_rate 0.0001 (FLUX.1 recipe; the widget's default means 'the family's recipe')" in report
    # a value the user set is passed as it is
    output, argv = run_flux(workdirs, image, model_folders, tmp_path, monkeypatch, learning_rate=3e-4, train_text_encoder=False)
    assert argv[argv.index("--learning_rate") + 1] == "0.0003" and "--no-train_text_encoder" in argv
    assert "learning_rate 0.0003" not in output["result"][3]


def test_an_sdxl_run_passes_its_family_and_keeps_the_kohya_file(workdirs, image, model_folders, tmp_path, monkeypatch):
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_ARGV_FILE", str(argv_file))
    values = inputs(siso_script_path=fake("fake_success"), python_executable=sys.executable, base_model_path=model_folders["sdxl"],
                    num_train_epochs=1)
    lora_path, status, _, report = Generator().generate(torch.from_numpy(image), True, **values)["result"]
    import json

    argv = json.loads(argv_file.read_text())
    assert status == "Success" and lora_path.endswith("siso_lora_kohya.safetensors")
    assert argv[argv.index("--model_family") + 1] == "sdxl" and "model family: SDXL" in report


@pytest.mark.parametrize("family", ["sana", "other"])
def test_a_sana_or_unknown_base_model_is_one_clear_line(workdirs, image, model_folders, family):
    values = inputs(siso_script_path=fake("fake_success"), python_executable=sys.executable, base_model_path=model_folders[family])
    lora_path, status, _, report = Generator().generate(torch.from_numpy(image), True, **values)["result"]
    expected = {"sana": f"Failed: base_model_path '{model_folders['sana']}' is a Sana pipeline (SanaPipeline): Sana is not offered "
                        "in ComfyUI (ComfyUI core has no Sana model to render with the LoRA)",
                "other": f"Failed: base_model_path '{model_folders['other']}' is a StableDiffusion3Pipeline pipeline: the SISO node "
                         "runs SDXL (e.g. stabilityai/sdxl-turbo) or FLUX.1 (e.g. black-forest-labs/FLUX.1-schnell)"}[family]
    assert status.startswith(expected), status
    assert "\n" not in status and lora_path == "" and pids(workdirs) == []
    if family == "sana":
        assert status.endswith("or run siso-generate --model_family sana outside ComfyUI")
    assert not list(workdirs["loras"].rglob("*.safetensors"))


class _FakePatcher:
    def __init__(self, patches=None):
        self.patches = dict(patches or {})


class _FakeClip:
    def __init__(self, patches=None):
        self.patcher = _FakePatcher(patches)


def test_load_lora_reports_a_flux_lora_by_its_parts(tmp_path, monkeypatch):
    """SISO Load LoRA hands a FLUX file to ComfyUI's LoRA code unconverted and names transformer and CLIP-L counts."""
    import logging
    import types

    from siso_lib.io.lora import save_lora_files
    from test_comfyui_lora_keys import flux_lora

    path = save_lora_files(tmp_path, flux_lora(), rank=4, alpha=4.0, run_metadata={}, family="flux")["diffusers"]
    seen = {}

    def load_lora_for_models(model, clip, state, strength_model, strength_clip):
        seen["keys"] = set(state)
        logging.getLogger("root").warning("lora key not loaded: transformer.bogus.lora_A.weight")
        # ComfyUI fuses the q/k/v LoRAs of a block into one weight: 3 weights for 4 transformer modules here
        return _FakePatcher({"a": 1, "b": 2, "c": 3}), _FakeClip({"clip_l.q": 1})

    monkeypatch.setitem(sys.modules, "comfy.sd", types.SimpleNamespace(load_lora_for_models=load_lora_for_models))
    output = nodes.SISOLoadLoRA().load(_FakePatcher(), _FakeClip(), path)
    info = output["result"][2]
    assert all(key.startswith(("transformer.", "text_encoder.")) for key in seen["keys"]) and len(seen["keys"]) == 10
    assert info.startswith("pytorch_lora_weights.safetensors: 5 LoRA modules in the file (transformer 4, CLIP-L 1); "
                           "weights patched: transformer 3, CLIP 1; keys not loaded: 1")
    assert info.endswith("is the base model FLUX?")


def test_load_lora_reports_an_sdxl_lora_as_before(tmp_path, monkeypatch):
    """The SDXL wording the full-size check parses: 'weights patched: UNet N, CLIP M; keys not loaded: K'."""
    import types

    from siso_lib.io.lora import save_lora_files
    from test_comfyui_lora_keys import best_lora

    path = save_lora_files(tmp_path, best_lora(), rank=4, alpha=4.0, run_metadata={})["kohya"]
    monkeypatch.setitem(sys.modules, "comfy.sd", types.SimpleNamespace(
        load_lora_for_models=lambda model, clip, state, sm, sc: (_FakePatcher({"a": 1, "b": 2, "c": 3}), _FakeClip({"x": 1, "y": 2}))))
    info = nodes.SISOLoadLoRA().load(_FakePatcher(), _FakeClip(), path)["result"][2]
    assert info == ("siso_lora_kohya.safetensors: 5 LoRA modules in the file (UNet 3, CLIP-L 1, CLIP-G 1); "
                    "weights patched: UNet 3, CLIP 2; keys not loaded: 0")
