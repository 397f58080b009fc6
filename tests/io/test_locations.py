"""Where shipped files are and where outputs go (io/locations.py)."""

from __future__ import annotations

from siso_lib.io import locations


def test_the_shipped_files_are_found_in_a_checkout():
    assert locations.notebook_path("01_generate_lora.ipynb").is_file()
    assert locations.example_photo("cat.png").is_file() and locations.example_photo("coffee.png").is_file()


def test_outputs_go_under_the_current_folder_a_checkouts_or_the_configured_one(tmp_path, monkeypatch):
    monkeypatch.delenv("SISO_OUTPUT_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert locations.output_root() == tmp_path / "outputs" and locations.runs_root() == tmp_path / "outputs" / "runs"
    notebooks = locations.CHECKOUT_DIR / "notebooks"
    monkeypatch.chdir(notebooks)  # JupyterLab starts a notebook's kernel in its folder
    assert locations.output_root() == locations.CHECKOUT_DIR / "outputs"
    other = tmp_path / "notebooks"
    other.mkdir()
    monkeypatch.chdir(other)  # a folder of that name elsewhere is an ordinary folder
    assert locations.output_root() == other / "outputs"
    monkeypatch.setenv("SISO_OUTPUT_ROOT", str(tmp_path / "mine"))
    assert locations.sweeps_root() == tmp_path / "mine" / "sweeps" and locations.test_assets_dir() == tmp_path / "mine" / "test-assets"
