"""The SISO status box in a REAL ComfyUI frontend, in headless Chromium (skipped like test_comfyui_real.py,
whose settings it uses, and where Debian's chromium or Playwright is missing; no browser is downloaded).

After a run the box on SISO LoRA Generator shows the whole report: every line visible, none cut
off behind a fixed 2-3 line box (comfyui/js/siso_status.js sizes it to the report).
"""

from __future__ import annotations

import json
import shutil
import sys
import time

import pytest

import comfy_server
from test_comfyui_real import COMFY_DIR, COMFY_PYTHON, GEN, WORKFLOWS, pytestmark  # noqa: F401 (pytestmark: the same skips)
from siso_comfy_helpers import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BOX = """() => {
    const node = window.app.graph._nodes.find(n => n.type === 'SISOLoRAGenerator');
    const box = node?.widgets?.find(w => w.name === 'siso_status');
    if (!box || !box.inputEl) return null;
    return {value: box.value, client: box.inputEl.clientHeight, scroll: box.inputEl.scrollHeight};
}"""


def test_the_status_box_shows_the_whole_report(tiny_assets, tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    prompt = json.loads((WORKFLOWS / "api" / "siso_generate_lora_api.json").read_text())
    prompt[GEN]["inputs"].update(
        base_model_path=tiny_assets["sdxl"], dino_model_name=tiny_assets["dino"], ir_features_path=tiny_assets["ir"],
        resolution=64, num_train_epochs=2, learning_rate=5e-3, device="cpu", python_executable=sys.executable,
    )
    server = comfy_server.start(COMFY_DIR, COMFY_PYTHON, tmp_path_factory.mktemp("comfy-browser"))
    try:
        comfy_server.copy_input(server, str(REPO / "data" / "cat.png"), "cat.png")
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(server.url)
            page.wait_for_function("window.app && window.app.graph", timeout=120_000)
            time.sleep(3)  # the frontend settles (its first workflow, dialogs)
            page.keyboard.press("Escape")
            page.evaluate("async (api) => { await window.app.loadApiJson(api, 'siso-check'); }", prompt)
            page.wait_for_function("window.app.graph._nodes.some(n => n.type === 'SISOLoRAGenerator')", timeout=30_000)
            time.sleep(2)
            page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
            deadline = time.monotonic() + 400
            box = None
            while time.monotonic() < deadline:
                box = page.evaluate(BOX)
                if box and box["value"].startswith(("Success", "Failed")):
                    break
                time.sleep(1)
            time.sleep(1)  # the box is resized on the next frame
            box = page.evaluate(BOX)
            browser.close()
    finally:
        server.stop()
    assert box and box["value"].startswith("Success"), box
    lines = box["value"].splitlines()
    print(f"\nstatus box: {len(lines)} lines, {box['client']} px shown of {box['scroll']} px")
    assert len(lines) >= 7  # a real report: more than a fixed small box shows
    assert box["scroll"] <= box["client"] + 2, box  # nothing hidden behind a scroll bar
