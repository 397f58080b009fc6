"""Write UI-format example workflows from the API-format ones WITHOUT ComfyUI's frontend.

    python comfyui/tools/ui_from_api.py siso_subject_edit [NAME ...]

`ui_workflows.py` is the reference: it loads each API file into ComfyUI's own frontend and saves
what the frontend serialises. Where no ComfyUI and Chromium are at hand, this tool writes the same
format itself: a node whose type already appears in an example UI workflow reuses that node's
serialisation (its inputs, outputs and properties, as the frontend wrote them), and a SISO node is
serialised from its INPUT_TYPES the way the frontend does it (one input per socket in declaration
order, required then optional; widget inputs carry `widget`, optional ones `shape: 7`;
`widgets_values` in widget order). Links, execution order and `layout.py`'s places follow the API
graph. Run ui_workflows.py on the result when a ComfyUI is available.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
WORKFLOWS = PACK / "example_workflows"
sys.path.insert(0, str(PACK.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import layout  # noqa: E402  (this folder)
from comfyui import nodes  # noqa: E402

WIDGET_KINDS = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def templates(skip: str) -> dict[str, dict]:
    """node type -> a node of that type as the frontend serialised it (from the other UI workflows)."""
    found: dict[str, dict] = {}
    for path in sorted(WORKFLOWS.glob("*.json")):
        if path.stem != skip:
            for node in json.loads(path.read_text())["nodes"]:
                found.setdefault(node["type"], node)
    return found


def siso_node(kind: str) -> dict:
    """A SISO node's serialisation from its declaration (no values yet)."""
    node_class = nodes.NODE_CLASS_MAPPINGS[kind]
    declared = node_class.INPUT_TYPES()
    inputs = []
    for section in ("required", "optional"):
        for name, spec in declared.get(section, {}).items():
            socket = "COMBO" if isinstance(spec[0], list) else spec[0]
            options = spec[1] if len(spec) > 1 else {}
            entry = {"localized_name": name, "name": name}
            if section == "optional":
                entry["shape"] = 7
            entry["type"] = socket
            if socket in WIDGET_KINDS and not options.get("forceInput"):
                entry["widget"] = {"name": name}
            entry["link"] = None
            inputs.append(entry)
    outputs = [{"localized_name": name, "name": name, "type": kind_, "links": None}
               for name, kind_ in zip(node_class.RETURN_NAMES, node_class.RETURN_TYPES)]
    return {"inputs": inputs, "outputs": outputs, "properties": {"Node name for S&R": kind}, "widgets_values": None}


def convert(name: str) -> dict:
    api = json.loads((WORKFLOWS / "api" / f"{name}_api.json").read_text())
    known = templates(skip=name)
    ui_nodes: dict[int, dict] = {}
    for node_id, spec in sorted(api.items(), key=lambda item: int(item[0])):
        kind = spec["class_type"]
        if kind in nodes.NODE_CLASS_MAPPINGS:
            body = siso_node(kind)
        elif kind in known:
            body = copy.deepcopy({key: known[kind][key] for key in ("inputs", "outputs", "properties") if key in known[kind]})
            body["widgets_values"] = copy.deepcopy(known[kind].get("widgets_values"))
        else:
            raise KeyError(f"{name}: no UI template for {kind}: convert it with ui_workflows.py (ComfyUI's frontend)")
        for entry in body["inputs"]:
            entry["link"] = None
        for entry in body["outputs"]:
            entry["links"] = None
        widgets = [entry["name"] for entry in body["inputs"] if "widget" in entry]
        old = body.get("widgets_values")
        if old is not None and len(old) != len(widgets):  # e.g. a seed's "randomize" control: only the frontend knows
            raise KeyError(f"{name}: {kind} shows more widgets than it has widget inputs: convert it with ui_workflows.py")
        if old is not None or widgets:
            body["widgets_values"] = [spec["inputs"].get(widget, (old or [None] * len(widgets))[i]) for i, widget in enumerate(widgets)]
        else:
            body.pop("widgets_values", None)
        node = {"id": int(node_id), "type": kind, "pos": [0, 0], "size": [0, 0], "flags": {}, "order": 0, "mode": 0,
                **{key: body[key] for key in ("inputs", "outputs")}}
        title = spec.get("_meta", {}).get("title")
        if title and title != nodes.NODE_DISPLAY_NAME_MAPPINGS.get(kind):  # the frontend keeps only a title of its own
            node["title"] = title
        node["properties"] = body.get("properties", {"Node name for S&R": kind})
        if "widgets_values" in body:
            node["widgets_values"] = body["widgets_values"]
        ui_nodes[int(node_id)] = node
    links = []
    for node_id, spec in sorted(api.items(), key=lambda item: int(item[0])):
        target = ui_nodes[int(node_id)]
        for input_name, value in spec["inputs"].items():
            if not isinstance(value, list):
                continue
            source, slot = ui_nodes[int(value[0])], int(value[1])
            target_slot = next(i for i, entry in enumerate(target["inputs"]) if entry["name"] == input_name)
            entry = target["inputs"][target_slot]
            kind = "*" if entry["type"] == "*" else source["outputs"][slot]["type"]
            link_id = len(links) + 1
            links.append([link_id, source["id"], slot, target["id"], target_slot, kind])
            entry["link"] = link_id
            source["outputs"][slot]["links"] = (source["outputs"][slot]["links"] or []) + [link_id]
    done: list[int] = []  # execution order: every node after the nodes it reads from
    while len(done) < len(ui_nodes):
        for node_id in sorted(ui_nodes):
            sources = {int(v[0]) for v in api[str(node_id)]["inputs"].values() if isinstance(v, list)}
            if node_id not in done and sources <= set(done):
                done.append(node_id)
                break
    for order, node_id in enumerate(done):
        ui_nodes[node_id]["order"] = order
    graph = {
        "id": "00000000-0000-0000-0000-000000000000", "revision": 0, "last_node_id": max(ui_nodes), "last_link_id": len(links),
        "nodes": [ui_nodes[node_id] for node_id in sorted(ui_nodes)], "links": links, "groups": [], "config": {},
        "extra": {"ds": {"scale": 0.55, "offset": [20, 60]}}, "version": 0.4,
    }
    return layout.apply(graph, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", help="workflows to write (file names without _api.json)")
    for name in parser.parse_args().names:
        path = WORKFLOWS / f"{name}.json"
        path.write_text(json.dumps(convert(name), indent=2) + "\n")
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
