"""The pack's files: registry metadata, requirements, install scripts, example workflows."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

import pytest
from siso_comfy_helpers import REPO

from comfyui import nodes
from comfyui.siso import pack

PACK = REPO / "comfyui"
WORKFLOWS = PACK / "example_workflows"


def requirement_names(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.split(r"[<>=!~ ;\[]", line, 1)[0].lower().replace("_", "-")
            found[name] = line
    return found


def test_pyproject_has_the_registry_fields():
    project = tomllib.loads((PACK / "pyproject.toml").read_text())
    assert project["project"]["name"] == "siso-lora-generator" and "comfyui" not in project["project"]["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["project"]["version"])
    assert project["project"]["urls"]["Repository"].startswith("https://")
    comfy = project["tool"]["comfy"]
    assert {"PublisherId", "DisplayName", "Icon"} <= set(comfy)
    assert requirement_names(project["project"]["dependencies"]) == requirement_names((PACK / "requirements.txt").read_text().splitlines())


def test_installers_never_change_packages_without_asking():
    """ComfyUI-Manager / the Registry apply requirements.txt (and pyproject's list) without asking: they stay empty.

    siso-lab and its requirements come from install.py, which checks pip's plan first.
    """
    assert requirement_names((PACK / "requirements.txt").read_text().splitlines()) == {}
    assert tomllib.loads((PACK / "pyproject.toml").read_text())["project"]["dependencies"] == []


def test_install_py_installs_siso_lab_from_this_repository():
    import importlib.util

    from siso_lib.notebooks import setup as notebook_run

    spec = importlib.util.spec_from_file_location("siso_pack_install", PACK / "install.py")
    install = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install)
    project = tomllib.loads((PACK / "pyproject.toml").read_text())
    assert project["project"]["urls"]["Repository"] == f"https://github.com/{notebook_run.GITHUB_REPO}"
    assert pack.checkout() == REPO  # the pack inside the checkout installs that checkout (editable)
    assert install.requirement(None)[0] == ["-e", str(REPO)]
    assert install.requirement("https://example.invalid/siso.zip")[0] == ["siso-lab @ https://example.invalid/siso.zip"]
    assert install.ENV_RECORD_NAME == pack.ENV_RECORD_NAME
    # no made-up default: nothing in the installer or the README points at a package index or an archive to download
    for text in ((PACK / "install.py").read_text(), (PACK / "README.md").read_text()):
        assert "pip install siso-lab" not in text and "archive/refs/heads" not in text


def test_install_scripts_run_install_py():
    install = PACK / "install.sh"
    assert install.stat().st_mode & 0o111, "install.sh must be executable"
    subprocess.run(["bash", "-n", str(install)], check=True)
    assert 'exec "$PY" "$HERE/install.py" "$@"' in install.read_text()
    bat = (PACK / "install.bat").read_text()
    assert '"%PYTHON%" "%~dp0install.py" %*' in bat


def widget_inputs(class_type: str) -> list[str]:
    declared = nodes.NODE_CLASS_MAPPINGS[class_type].INPUT_TYPES()
    names = []
    for section in ("required", "optional"):
        for name, spec in declared.get(section, {}).items():
            options = spec[1] if len(spec) > 1 else {}
            if isinstance(spec[0], list) or (spec[0] in ("INT", "FLOAT", "STRING", "BOOLEAN") and not options.get("forceInput")):
                names.append(name)
    return names


@pytest.mark.parametrize("path", sorted((WORKFLOWS / "api").glob("*.json")), ids=lambda p: p.name)
def test_api_workflows_set_every_input_of_the_siso_nodes(path):
    graph = json.loads(path.read_text())
    siso = [node for node in graph.values() if node["class_type"] in nodes.NODE_CLASS_MAPPINGS]
    assert siso
    for node in siso:
        declared = getattr(nodes, node["class_type"]).INPUT_TYPES()
        assert set(declared["required"]) <= set(node["inputs"]), set(declared["required"]) - set(node["inputs"])
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                assert value[0] in graph, f"{path.name}: {name} links to a missing node {value[0]}"


def test_the_generation_workflow_uses_the_node_defaults():
    graph = json.loads((WORKFLOWS / "api" / "siso_generate_lora_api.json").read_text())
    node = graph["3"]["inputs"]
    declared = nodes.SISOLoRAGenerator.INPUT_TYPES()["required"]
    for name in widget_inputs("SISOLoRAGenerator"):
        if name in declared:
            assert node[name] == declared[name][1]["default"], name


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.json")), ids=lambda p: p.name)
def test_ui_workflows_are_consistent(path):
    """UI format: links point at existing nodes/slots, SISO widgets are in declaration order."""
    graph = json.loads(path.read_text())
    by_id = {node["id"]: node for node in graph["nodes"]}
    for link in graph["links"]:
        link_id, source, source_slot, target, target_slot, kind = link
        assert source in by_id and target in by_id
        assert by_id[source]["outputs"][source_slot]["type"] == kind or kind == "*"
        assert by_id[target]["inputs"][target_slot]["link"] == link_id
    for node in graph["nodes"]:
        if node["type"] in nodes.NODE_CLASS_MAPPINGS:
            assert len(node["widgets_values"]) == len(widget_inputs(node["type"])), node["type"]
    assert any(node["type"].startswith("SISO") for node in graph["nodes"])


def test_each_api_workflow_has_a_ui_twin():
    api = {p.name.replace("_api.json", ".json") for p in (WORKFLOWS / "api").glob("*_api.json")}
    assert api == {p.name for p in WORKFLOWS.glob("*.json")}


def test_example_workflows_feed_the_photos_mask_to_the_generator():
    """A cut-out PNG through Load Image: its MASK must reach subject_mask, or the background arrives black."""
    for path in sorted((WORKFLOWS / "api").glob("*.json")):
        graph = json.loads(path.read_text())
        for node in graph.values():
            if node["class_type"] == "SISOLoRAGenerator":
                source = node["inputs"]["subject_image"][0]
                assert graph[source]["class_type"] == "LoadImage"
                assert node["inputs"]["subject_mask"] == [source, 1], path.name
    for path in sorted(WORKFLOWS.glob("*.json")):
        graph = json.loads(path.read_text())
        for node in graph["nodes"]:
            if node["type"] == "SISOLoRAGenerator":
                mask = next(i for i in node["inputs"] if i["name"] == "subject_mask")
                link = next(link for link in graph["links"] if link[0] == mask["link"])
                assert link[1:3] == [1, 1] and link[5] == "MASK", path.name


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.json")), ids=lambda p: p.name)
def test_no_node_covers_another_in_the_example_workflows(path):
    """Title bars, the pictures image nodes draw and the SISO status boxes counted: no two nodes overlap."""
    import sys

    sys.path.insert(0, str(PACK / "tools"))
    import layout

    graph = json.loads(path.read_text())
    boxes = {f"{node['id']} {node.get('title') or node['type']}": layout.footprint(node) for node in graph["nodes"]}
    for node in graph["nodes"]:
        if node["type"] in layout.IMAGE_NODES:  # the frontend would grow it over its neighbours otherwise
            assert node["size"][1] >= layout.IMAGE_NODES[node["type"]] + layout.IMAGE_ROOM, node["type"]
    names = sorted(boxes)
    overlaps = []
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            a, b = boxes[first], boxes[second]
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                overlaps.append((first, second))
    assert overlaps == [], overlaps
    assert set(layout.LAYOUTS[path.stem]) == {node["id"] for node in graph["nodes"]}


def test_the_overlap_check_sees_the_reported_case():
    """The layout the field report saw: 'Run SISO?' 60 px under Load Image's widgets, over the photo preview."""
    import sys

    sys.path.insert(0, str(PACK / "tools"))
    import layout

    load = {"type": "LoadImage", "pos": [60, 90], "size": [214, 102]}
    switch = {"type": "PrimitiveBoolean", "pos": [60, 282], "size": [210, 58]}
    a, b = layout.footprint(load), layout.footprint(switch)
    assert a[1] < b[3] and b[1] < a[3]


def test_the_flux_workflow_generates_and_renders_with_stock_flux_nodes():
    """FLUX.1-schnell: the generator with the node defaults but FLUX's recipe model, then ComfyUI's own FLUX graph
    (split model files, type flux, 4 steps at cfg 1) with the new LoRA applied by path."""
    from comfyui.siso import defaults

    graph = json.loads((WORKFLOWS / "api" / "siso_flux_generate_and_render_api.json").read_text())
    generator = graph["3"]["inputs"]
    declared = nodes.SISOLoRAGenerator.INPUT_TYPES()["required"]
    for name in widget_inputs("SISOLoRAGenerator"):
        if name in declared and name != "base_model_path":
            assert generator[name] == declared[name][1]["default"], name
    assert generator["base_model_path"] == defaults.recipe("flux")["pretrained_model_name_or_path"] == "black-forest-labs/FLUX.1-schnell"
    kinds = {node_id: node["class_type"] for node_id, node in graph.items()}
    assert {"UNETLoader", "DualCLIPLoader", "VAELoader", "EmptySD3LatentImage", "KSampler", "VAEDecode", "SaveImage"} <= set(kinds.values())
    assert "CheckpointLoaderSimple" not in kinds.values()
    clip = next(node for node in graph.values() if node["class_type"] == "DualCLIPLoader")["inputs"]
    assert clip["type"] == "flux"
    loader = next(node for node in graph.values() if node["class_type"] == "SISOLoadLoRA")["inputs"]
    assert loader["lora_path"] == ["3", 0]
    assert kinds[loader["model"][0]] == "UNETLoader" and kinds[loader["clip"][0]] == "DualCLIPLoader"
    sampler = next(node for node in graph.values() if node["class_type"] == "KSampler")["inputs"]
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == (4, 1.0, "euler", "simple")
    assert kinds[sampler["model"][0]] == "SISOLoadLoRA"


def test_every_template_has_its_thumbnail_drawn_from_the_workflow():
    """ComfyUI's template browser asks for example_workflows/<name>.jpg; each shows its own graph, up to date."""
    import importlib.util

    from PIL import Image

    workflows = PACK / "example_workflows"
    assert {p.stem for p in workflows.glob("*.jpg")} == {p.stem for p in workflows.glob("*.json")}
    for path in workflows.glob("*.jpg"):
        with Image.open(path) as picture:
            assert picture.format == "JPEG" and picture.size == (640, 400), path.name
    spec = importlib.util.spec_from_file_location("siso_make_thumbnails", PACK / "tools" / "make_thumbnails.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    drawn = tool.outputs()
    assert [path for path, picture in drawn.items() if not tool.same_picture(path, picture)] == []
    pictures = list(drawn.values())  # each shows its own workflow: no two alike
    assert not tool.same_picture(workflows / "siso_generate_lora.jpg", drawn[workflows / "siso_subject_edit.jpg"])
    assert len(pictures) == 5


def test_the_api_workflows_are_what_the_tool_writes():
    """comfyui/tools/make_api_workflows.py, run now, writes exactly the committed API files (defaults included)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("siso_make_api_workflows", PACK / "tools" / "make_api_workflows.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    standalone = tool.inference(["9", 0])
    flux = tool.generation("flux")
    flux.update(tool.flux_inference(["3", 0]))
    assert json.loads((WORKFLOWS / "api" / "siso_flux_generate_and_render_api.json").read_text()) == flux
    assert json.loads((WORKFLOWS / "api" / "siso_generate_lora_api.json").read_text()) == tool.generation()
    assert set(standalone) < set(json.loads((WORKFLOWS / "api" / "siso_inference_with_lora_api.json").read_text()))
    assert json.loads((WORKFLOWS / "api" / "siso_subject_edit_api.json").read_text()) == tool.subject_edit()


def test_the_edit_workflow_paints_the_mask_on_the_scene_and_uses_the_node_defaults():
    graph = json.loads((WORKFLOWS / "api" / "siso_subject_edit_api.json").read_text())
    edit = graph["4"]["inputs"]
    assert graph["4"]["class_type"] == "SISOSubjectEdit"
    scene, subject = graph[edit["scene_image"][0]], graph[edit["subject_image"][0]]
    assert scene["class_type"] == subject["class_type"] == "LoadImage" and edit["scene_image"][0] != edit["subject_image"][0]
    assert edit["mask"] == [edit["scene_image"][0], 1]  # the MASK of the scene's own Load Image (its mask editor)
    assert (scene["inputs"]["image"], subject["inputs"]["image"]) == ("coffee.png", "cat.png")
    declared = nodes.SISOSubjectEdit.INPUT_TYPES()["required"]
    for name in widget_inputs("SISOSubjectEdit"):
        if name in declared and name != "input_class":
            assert edit[name] == declared[name][1]["default"], name
    assert edit["input_class"] == "cup"  # without a painted mask, Grounding-DINO + SAM find the cup
    kinds = {node["class_type"] for node in graph.values()}
    assert {"PreviewImage", "PreviewAny", "PrimitiveBoolean"} <= kinds
