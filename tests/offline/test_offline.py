"""The offline package's own choices: one torch thread for the tiny models on the CPU (decided in
one place for siso-demo, siso-sweep's kernels and notebook 01), and no library progress bars while
the tiny models are written."""

from __future__ import annotations

import json
import os

import pytest

from siso_lib.offline import ensure_test_assets, single_thread_env, use_single_thread


def test_one_thread_for_the_tiny_models_on_the_cpu_unless_the_caller_chose():
    assert single_thread_env("offline", None, environ={}) == {"OMP_NUM_THREADS": "1"}
    assert single_thread_env("offline", "cpu", environ={}) == {"OMP_NUM_THREADS": "1"}
    assert single_thread_env("offline", "cuda", environ={}) == {}  # a GPU run of the tiny models
    assert single_thread_env("hub", None, environ={}) == {} and single_thread_env("auto", None, environ={}) == {}
    assert single_thread_env("offline", None, environ={"OMP_NUM_THREADS": "8"}) == {}


def test_use_single_thread_sets_the_variable_and_torchs_threads(monkeypatch):
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert use_single_thread("offline") == {"OMP_NUM_THREADS": "1"}
        assert os.environ["OMP_NUM_THREADS"] == "1" and torch.get_num_threads() == 1
        assert use_single_thread("offline") == {}  # set now: nothing more to do
    finally:
        torch.set_num_threads(threads)


def test_notebook_01_with_the_offline_models_takes_the_same_choice(tiny_assets, monkeypatch):
    import torch

    from siso_lib.notebooks.setup import prepare_run

    assets = str(os.path.dirname(tiny_assets["sdxl"]))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = torch.get_num_threads()
    try:
        prepare_run({"models": "hub", "interactive": False})
        assert "OMP_NUM_THREADS" not in os.environ  # the real models keep their threads
        prepare_run({"models": "offline", "assets_dir": assets, "interactive": False})
        assert os.environ["OMP_NUM_THREADS"] == "1" and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_writing_the_tiny_models_shows_no_library_progress_bars(tmp_path, capfd):
    """The fresh-user trial: the first `siso-demo --model_family flux` printed six "Writing model
    shards" bars (transformers' save_pretrained)."""
    ensure_test_assets(tmp_path, families=("sdxl",))
    err = capfd.readouterr().err
    assert "Writing model shards" not in err and "%|" not in err, err
    assert json.loads((tmp_path / "ASSETS.json").read_text())["size"] == "tiny"


@pytest.mark.slow
def test_a_kernel_started_for_a_tiny_cpu_run_has_one_thread(tmp_path, monkeypatch):
    """The plumbing into the kernel: papermill's kernel gets `kernel_env` (siso-sweep passes
    single_thread_env's choice), and torch there runs one thread."""
    import nbformat

    from siso_lib.notebooks.papermill import execute_generate_notebook

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell("out = None")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell(
        "import json, os, torch\n"
        "open(out, 'w').write(json.dumps({'env': os.environ.get('OMP_NUM_THREADS'), 'threads': torch.get_num_threads()}))")]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "threads.ipynb"
    nbformat.write(notebook, source)
    out = tmp_path / "threads.json"
    execute_generate_notebook(tmp_path / "ran.ipynb", {"out": str(out)}, notebook=source,
                              kernel_env=single_thread_env("offline", None, environ={}))
    assert json.loads(out.read_text()) == {"env": "1", "threads": 1}
    assert "OMP_NUM_THREADS" not in os.environ  # this process is left as it was
