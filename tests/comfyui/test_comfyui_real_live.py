"""The SISO nodes' live run in a REAL ComfyUI (skipped unless SISO_COMFYUI_DIR is set; see test_comfyui_real.py):
each iteration's picture reaches the frontend over ComfyUI's websocket as a binary preview message while the run
goes on, and a run that ends out of memory shows siso-generate's own line (the mode predicted to fit) as its
status while the queue goes on.

    SISO_COMFYUI_DIR=/path/to/ComfyUI SISO_COMFYUI_PYTHON=/path/to/comfy-venv/bin/python \
        .venv/bin/python -m pytest -q -s tests/comfyui/test_comfyui_real_live.py
"""

from __future__ import annotations

import json
import struct
import time

import pytest

import comfy_server
from siso_comfy_helpers import REPO
from test_comfyui_real import COMFY_DIR, COMFY_PYTHON, GEN, generation, pytestmark, report  # noqa: F401 - the same marks


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    instance = comfy_server.start(COMFY_DIR, COMFY_PYTHON, tmp_path_factory.mktemp("comfy-base"))
    comfy_server.copy_input(instance, str(REPO / "data" / "cat.png"), "cat.png")
    yield instance
    instance.stop()


@pytest.mark.parametrize("metadata", [False, True], ids=["preview-image", "preview-with-metadata"])
def test_a_run_shows_each_iterations_picture_live_over_the_websocket(server, tiny_assets, metadata):
    """While SISO runs, every iteration's image reaches the frontend as ComfyUI's binary preview message right after
    that iteration's progress message, as a sampler's latent previews do: type 1 (PREVIEW_IMAGE, a JPEG), or type 4
    (PREVIEW_IMAGE_WITH_METADATA, naming the node) for a client that says it supports preview metadata (the
    frontend does)."""
    listener = comfy_server.Listener(server.url)
    listener.start()
    if metadata:
        listener.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        time.sleep(0.5)
    try:
        started = time.monotonic()
        entry = server.wait(server.queue(generation(tiny_assets, seed=47 if metadata else 46, num_train_epochs=3)))
        seconds = time.monotonic() - started
        time.sleep(0.5)  # the last messages on their way
    finally:
        listener.close()
    assert report(entry).startswith("Success"), report(entry)
    per_step: dict[int, list] = {}
    step, times = None, {}
    for at, kind, data in listener.messages:  # a preview follows its step's progress_state (type 1: and "progress")
        node = (data["data"].get("nodes") or {}).get(GEN) if kind == "json" and data.get("type") == "progress_state" else None
        if node is not None and node.get("state") == "running":
            step = int(node["value"])
            times.setdefault(step, at)
            per_step.setdefault(step, [])
        elif kind == "json" and data.get("type") == "executed":
            step = None
        elif kind == "binary" and data[0] in (1, 4) and step is not None:
            per_step[step].append(data)
    previews = {s: found for s, found in per_step.items() if s >= 1}
    assert sorted(previews) == [1, 2, 3], per_step.keys()
    assert all(len(found) == 1 for found in previews.values()), {s: len(f) for s, f in previews.items()}  # one each
    for found in previews.values():
        event, payload = found[0]
        assert event == (4 if metadata else 1)
        if event == 1:
            image = payload[4:]  # after the image type (1: JPEG)
        else:
            length = struct.unpack(">I", payload[:4])[0]
            described = json.loads(payload[4:4 + length])
            assert described["node_id"] == GEN and described["image_type"] == "image/jpeg"
            image = payload[4 + length:]
        assert image[:3] == b"\xff\xd8\xff"  # a JPEG
    assert not list((server.base / "output" / "siso").rglob("preview.jpg"))  # the node's file is gone with the run
    gaps = [times[s + 1] - times[s] for s in (1, 2)]
    print(f"\nlive previews per iteration ({'type 4' if metadata else 'type 1'}): "
          f"{ {s: len(f) for s, f in previews.items()} }; run {seconds:.1f} s; "
          f"iteration gaps {', '.join(f'{g:.2f} s' for g in gaps)}")


def test_out_of_memory_is_the_commands_one_line_and_the_queue_goes_on(server, tiny_assets):
    """A run that ends out of memory (a stand-in printing what siso-generate prints then) shows the command's own line,
    which names the mode the memory model predicts would fit, as the node's status; the next prompt runs."""
    from siso_comfy_helpers import FAKES

    entry = server.wait(server.queue(generation(tiny_assets, seed=48, siso_script_path=str(FAKES / "fake_cli_oom.py"))))
    assert entry["status"]["status_str"] == "success"  # a status, not an exception
    status = comfy_server.ui_text(entry, "4")
    assert status == ("Failed: out of memory at iteration 3 in default mode: the memory model predicts low-memory fits "
                      "this device: use --mode low-memory (or a smaller --resolution)"), status
    assert report(entry).splitlines()[0] == status
    assert server.wait(server.queue(generation(tiny_assets, seed=49, num_train_epochs=1)))["status"]["status_str"] == "success"
