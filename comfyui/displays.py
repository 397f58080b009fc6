"""Clearing the display nodes a SISO node feeds when they will not run (a hack on ComfyUI's private messages).

A display node (PreviewAny, ShowText, PreviewImage) that does not run in this prompt, such as
everything after a Cancel, keeps showing the previous run's path and status. `refresh_displays`
sends each one the "executed" message ComfyUI itself sends after a display node ran, with this
run's values. That message is not a public API: it was read from and checked against ComfyUI
0.3.64 (server.PromptServer.send_sync("executed", {"node", "display_node", "output",
"prompt_id"})); where it changes, the boxes only keep their old text.
"""

from __future__ import annotations

from .host import server

CHECKED_WITH = "ComfyUI 0.3.64"
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
    """Show `values` (one per output of node `unique_id`) in the display nodes it feeds: text outputs as
    text, images cleared."""
    instance = server()
    if instance is None:
        return
    for node_id, slot, kind in fed_displays(graph, unique_id):
        if kind == "text":
            output = {"text": [values[slot] if slot < len(values) and isinstance(values[slot], str) else ""]}
        else:
            output = {"images": []}
        message = {"node": node_id, "display_node": node_id, "output": output,
                   "prompt_id": getattr(instance, "last_prompt_id", None)}
        try:
            instance.send_sync("executed", message, getattr(instance, "client_id", None))
        except Exception:  # noqa: BLE001 - the UI is optional
            pass
