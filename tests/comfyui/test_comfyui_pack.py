"""The pack's files: registry metadata, requirements, install scripts, example workflows."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

import pytest
from siso_comfy_helpers import REPO

from comfyui import nodes

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


def test_requirements_never_touch_torch_and_cover_siso_lab():
    requirements = requirement_names((PACK / "requirements.txt").read_text().splitlines())
    assert not {"torch", "torchvision", "torchaudio"} & set(requirements)
    library = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    needed = set(requirement_names(library)) - {"torch"}
    assert needed <= set(requirements), needed - set(requirements)


def test_install_scripts():
    install = PACK / "install.sh"
    assert install.stat().st_mode & 0o111, "install.sh must be executable"
    subprocess.run(["bash", "-n", str(install)], check=True)
    text = install.read_text()
    assert "-c \"$PINS\"" in text and "--venv" in text  # pins the installed torch; separate env option
    bat = (PACK / "install.bat").read_text()
    assert "requirements.txt" in bat and "--venv" in bat and "-c \"%PINS%\"" in bat


def widget_inputs(class_type: str) -> list[str]:
    declared = getattr(nodes, {"SISOLoRAGenerator": "SISOLoRAGenerator", "SISOLoadLoRA": "SISOLoadLoRA"}[class_type]).INPUT_TYPES()
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
    siso = [node for node in graph.values() if node["class_type"] in ("SISOLoRAGenerator", "SISOLoadLoRA")]
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
        if node["type"] in ("SISOLoRAGenerator", "SISOLoadLoRA"):
            assert len(node["widgets_values"]) == len(widget_inputs(node["type"])), node["type"]
    assert any(node["type"].startswith("SISO") for node in graph["nodes"])


def test_each_api_workflow_has_a_ui_twin():
    api = {p.name.replace("_api.json", ".json") for p in (WORKFLOWS / "api").glob("*_api.json")}
    assert api == {p.name for p in WORKFLOWS.glob("*.json")}
