"""End to end in a real browser: JupyterLab on 127.0.0.1, 01_generate_lora.ipynb opened in
headless Chromium (Debian's `chromium`, driven by Playwright; no browser is ever downloaded),
all cells run in interactive mode on the tiny models, Run pressed in the widget panel. Checks
that the panel renders (no "Error displaying widget"), the run finishes, the loss plot and
images appear; saves screenshots under outputs/notebook-ui/.

Skipped where Chromium or Playwright is missing, except in CI (CI=true), where `.ci/run`
installs both and a skip would hide a broken set-up: there it fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import papermill
import pytest

from nb_helpers import NOTEBOOKS, REPO, TIMINGS, assets_dir

pytestmark = pytest.mark.slow  # kernels / subprocesses (see tests/conftest.py)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = REPO / "outputs" / "notebook-ui"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ITERATIONS = 4


def _missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return "Debian's chromium is not installed (apt-get install chromium; .ci/run does it)"
    try:
        import playwright.sync_api  # noqa: F401  (only whether it is there)
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_server(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"JupyterLab exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"JupyterLab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def _lab(tmp_path, notebook: str, parameters: dict):
    """JupyterLab on loopback serving a folder with `notebook` parameterised with `parameters` (a generator for fixtures)."""
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run in CI: {reason}")
        pytest.skip(reason)
    root = tmp_path / "lab"
    root.mkdir()
    # papermill's prepare_only writes the notebook with an injected-parameters cell, unexecuted
    papermill.execute_notebook(str(NOTEBOOKS / notebook), str(root / notebook), prepare_only=True, parameters=parameters)
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
    }
    log = tmp_path / "jupyterlab.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
        "--ServerApp.open_browser=False", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI runs as root
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", process, log)
        yield {"url": f"http://127.0.0.1:{port}", "token": token, "log": log, "run_dir": tmp_path / "run"}
    finally:
        process.send_signal(signal.SIGTERM)  # the server shuts its kernels down
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def jupyterlab(tmp_path, tiny_assets):
    """JupyterLab serving 01_generate_lora.ipynb parameterised for the tiny models."""
    yield from _lab(tmp_path, "01_generate_lora.ipynb", {
        "models": "offline", "interactive": True, "assets_dir": assets_dir(tiny_assets), "num_train_epochs": ITERATIONS,
        "output_dir": str(tmp_path / "run"), "overwrite": True,
    })


@pytest.fixture
def edit_lab(tmp_path, tiny_assets):
    """JupyterLab serving 04_edit_image.ipynb on the tiny models; `interactive` left at None: the panel, since a
    Jupyter server started the kernel."""
    yield from _lab(tmp_path, "04_edit_image.ipynb", {
        "models": "offline", "assets_dir": assets_dir(tiny_assets), "num_train_epochs": ITERATIONS,
        "output_dir": str(tmp_path / "run"), "overwrite": True,
    })


def _open_and_run_all(page, url: str) -> None:
    """Open a notebook in JupyterLab, wait for its kernel, hide the file browser and run all cells."""
    page.goto(url)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
    # the kernel must be up before Run All, or the first cells queue behind its start
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']")
    news = page.get_by_role("button", name="No", exact=True)  # "notified about Jupyter news?" toast
    if news.count():
        news.first.click()
    page.locator(".jp-NotebookPanel .jp-Cell").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+b")  # hide the file browser: more room for the panel
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def test_generate_notebook_runs_in_jupyterlab_in_chromium(jupyterlab):
    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    url = f"{jupyterlab['url']}/lab/tree/01_generate_lora.ipynb?reset&token={jupyterlab['token']}"
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.set_default_timeout(120_000)
            _open_and_run_all(page, url)

            panel = page.locator(".siso-panel")
            panel.wait_for(state="attached")
            panel.scroll_into_view_if_needed()  # JupyterLab renders cells lazily
            run_button = panel.locator("button[title='start a SISO run']")  # the text also holds an icon glyph
            run_button.wait_for()
            page.wait_for_timeout(500)  # let every widget view render
            assert "Error displaying widget" not in page.content()
            panel.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / "01_generate_lora_before_run.png"))

            run_button.click()
            panel.get_by_text("Finished:").wait_for(timeout=180_000)
            page.wait_for_timeout(800)  # the last image updates
            assert "Error displaying widget" not in page.content()
            images = panel.locator("img")
            sizes = images.evaluate_all("els => els.map(e => [e.naturalWidth, e.naturalHeight])")
            assert len(sizes) >= 4 and all(w > 0 and h > 0 for w, h in sizes), sizes  # plot, subject, current, best
            plot_width = images.first.evaluate("e => e.naturalWidth")
            assert plot_width >= 500, "the loss plot is the first, wide image"
            assert panel.get_by_text(f"{ITERATIONS} / {ITERATIONS}").count() >= 1
            panel.locator("img").first.scroll_into_view_if_needed()
            panel.screenshot(path=str(SCREENSHOTS / "01_generate_lora_panel.png"))
            page.screenshot(path=str(SCREENSHOTS / "01_generate_lora_after_run.png"))
        finally:
            browser.close()
    TIMINGS["browser test (JupyterLab + Chromium, run in the panel)"] = time.perf_counter() - started
    run_dir = jupyterlab["run_dir"]
    assert (run_dir / "pytorch_lora_weights.safetensors").is_file() and (run_dir / "run.json").is_file()
    assert (SCREENSHOTS / "01_generate_lora_panel.png").stat().st_size > 10_000


def test_edit_notebook_shows_its_panel_in_jupyterlab_and_edits(edit_lab):
    """04 in JupyterLab with `interactive` at None: the edit panel renders (scene with its mask, subject), Run edits."""
    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    url = f"{edit_lab['url']}/lab/tree/04_edit_image.ipynb?reset&token={edit_lab['token']}"
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1500})
            page.set_default_timeout(120_000)
            _open_and_run_all(page, url)
            panel = page.locator(".siso-edit-panel")
            panel.wait_for(state="attached")
            panel.scroll_into_view_if_needed()
            run_button = panel.locator("button[title='start a SISO run']")
            run_button.wait_for()
            page.wait_for_timeout(500)
            assert "Error displaying widget" not in page.content()
            assert panel.get_by_text("the subject goes into").count() >= 1  # the mask preview's note
            run_button.click()
            panel.get_by_text("Finished:").wait_for(timeout=180_000)
            page.wait_for_timeout(800)
            assert "Error displaying widget" not in page.content()
            sizes = panel.locator("img").evaluate_all("els => els.map(e => [e.naturalWidth, e.naturalHeight])")
            assert len(sizes) >= 5 and all(w > 0 and h > 0 for w, h in sizes), sizes  # plot, scene + mask, subject, current, best
            assert panel.get_by_text("outside the mask").count() >= 1
            panel.locator("img").first.scroll_into_view_if_needed()
            panel.screenshot(path=str(SCREENSHOTS / "04_edit_image_panel.png"))
        finally:
            browser.close()
    TIMINGS["browser test of 04 (JupyterLab + Chromium, an edit in the panel)"] = time.perf_counter() - started
    assert (edit_lab["run_dir"] / "result.png").is_file() and (edit_lab["run_dir"] / "before_after.png").is_file()
