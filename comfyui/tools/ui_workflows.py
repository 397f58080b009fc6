"""Turn the API-format example workflows into UI-format ones with ComfyUI's own frontend.

    SISO_COMFYUI_DIR=/path/to/ComfyUI /path/to/comfy-venv/bin/python comfyui/tools/ui_workflows.py [--screenshot DIR] [NAME ...]

Starts ComfyUI (with this pack) on loopback and a headless Chromium, loads each
`example_workflows/api/*_api.json` with the frontend's `app.loadApiJson`, places its nodes as
`layout.py` says and saves `app.graph.serialize()` as `example_workflows/<name>.json`, so the
UI files have exactly the widget layout the frontend expects. Needs Chromium and aiohttp (ComfyUI's environment has it).
With --screenshot, also saves a PNG of each loaded workflow. NAMEs (e.g. siso_flux_generate_and_render)
convert only those workflows; the others are left as they are (the link numbers the frontend gives
depend on what it loaded before).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

PACK = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK.parent / "tests" / "comfyui"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import comfy_server  # noqa: E402
import layout  # noqa: E402  (this folder)


class Browser:
    def __init__(self, port: int):
        self.port, self.counter = port, 0

    async def __aenter__(self):
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json").read())
        page = next(p for p in pages if p.get("type") == "page")
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()
        await self.session.close()

    async def call(self, method: str, **params):
        self.counter += 1
        ident = self.counter
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json()
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if result.get("exceptionDetails"):
            raise RuntimeError(json.dumps(result["exceptionDetails"])[:2000])
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if await self.evaluate(expression):
                    return
            except RuntimeError:
                pass
            await asyncio.sleep(0.5)
        raise TimeoutError(expression)

    async def screenshot(self, path: Path):
        data = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(data["data"]))


async def convert(url: str, debug_port: int, screenshots: Path | None, names: list[str] | None = None) -> None:
    async with Browser(debug_port) as browser:
        await browser.call("Page.enable")
        await browser.call("Emulation.setDeviceMetricsOverride", width=1800, height=1100, deviceScaleFactor=1, mobile=False)
        await browser.call("Page.navigate", url=url)
        await browser.wait_for("!!(window.comfyAPI && window.comfyAPI.app && window.comfyAPI.app.app && window.comfyAPI.app.app.graph)")
        await browser.wait_for("!!(window.LiteGraph && window.LiteGraph.registered_node_types['SISOLoRAGenerator'])")
        await asyncio.sleep(2)
        for path in sorted((PACK / "example_workflows" / "api").glob("*_api.json")):
            name = path.name.replace("_api.json", "")
            if names and name not in names:
                continue
            api = path.read_text()
            graph = await browser.evaluate(f"""(async () => {{
                const app = window.comfyAPI.app.app;
                await app.loadApiJson({api}, {json.dumps(name)});
                await new Promise(r => setTimeout(r, 500));
                const places = {json.dumps({str(k): v for k, v in layout.LAYOUTS[name].items()})};
                for (const node of app.graph._nodes) {{
                    node.setSize?.(node.computeSize());
                    const place = places[String(node.id)];
                    if (place) {{
                        node.pos = [place[0], place[1]];
                        node.setSize?.([Math.max(place[2], node.size[0]), Math.max(place[3], node.size[1])]);
                    }}
                }}
                app.canvas?.setDirty?.(true, true);
                await new Promise(r => setTimeout(r, 300));
                return JSON.stringify(app.graph.serialize());
            }})()""")
            data = layout.apply(json.loads(graph), name)  # room for pictures and status boxes: no overlaps
            (PACK / "example_workflows" / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
            print(f"{name}.json: {len(data['nodes'])} nodes, {len(data['links'])} links")
            if screenshots:
                await browser.call("Input.dispatchKeyEvent", type="keyDown", key="Escape", code="Escape",
                                   windowsVirtualKeyCode=27)  # the template browser the frontend opens at start
                await browser.call("Input.dispatchKeyEvent", type="keyUp", key="Escape", code="Escape", windowsVirtualKeyCode=27)
                await browser.evaluate("(async () => { const app = window.comfyAPI.app.app; "
                                       "app.canvas.ds.scale = 0.55; app.canvas.ds.offset = [20, 60]; "
                                       "app.canvas.setDirty(true, true); })()")
                await asyncio.sleep(1)
                await browser.screenshot(screenshots / f"{name}.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--screenshot", type=Path, default=None, help="folder for PNG screenshots")
    parser.add_argument("names", nargs="*", help="only these workflows (file names without _api.json)")
    args = parser.parse_args()
    known = {p.name.replace("_api.json", "") for p in (PACK / "example_workflows" / "api").glob("*_api.json")}
    if set(args.names) - known:
        parser.error(f"unknown workflows {sorted(set(args.names) - known)}; known: {sorted(known)}")
    comfy_dir = os.environ.get("SISO_COMFYUI_DIR")
    if not comfy_dir:
        parser.error("set SISO_COMFYUI_DIR to a ComfyUI checkout")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not chromium:
        parser.error("no chromium on PATH")
    if args.screenshot:
        args.screenshot.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="siso-ui-"))
    server = comfy_server.start(comfy_dir, sys.executable, base)
    debug_port = comfy_server.free_port()
    browser = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={debug_port}",
         f"--user-data-dir={base / 'chromium'}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(60):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/json", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        asyncio.run(convert(server.url, debug_port, args.screenshot, args.names))
    finally:
        browser.terminate()
        browser.wait(timeout=20)
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
