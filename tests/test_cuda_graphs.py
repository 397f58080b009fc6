"""The CUDA-graph path: what can be checked without a GPU, and the GPU check itself.

On the CPU: an iteration's device work is capturable (no host sync, no tensor from Python data,
no seeded random draw), the graph-style iteration (unseeded ancestral noise) gives the same run
as the eager one, the settings enable graphs only where they are supported, and the
warm-up / capture / replay / fallback logic of `GraphedIteration` (with the CUDA calls faked).
On a CUDA machine `test_graphed_run_matches_eager_on_cuda` runs the real capture.
"""

from __future__ import annotations

import contextlib
import logging

import pytest
import torch

from graph_safety import CaptureSafetyCheck, HostToDeviceCheck
from siso_lib import cuda_graphs
from siso_lib.config import SISOConfig
from siso_lib.io.images import load_subject_image
from siso_lib.optimizer import SISOOptimizer
from siso_lib.runtime import RuntimeSettings
from siso_lib.generators.base import LoRASnapshotter
from siso_lib.generators.sdxl import SDXLGenerator


@pytest.mark.parametrize("train_text_encoder", [True, False])
def test_iteration_has_nothing_a_cuda_graph_cannot_capture(tiny_config, subject_path, train_text_encoder):
    optimizer = SISOOptimizer(
        tiny_config(train_text_encoder=train_text_encoder, num_train_epochs=5, precision="bf16"),
        load_subject_image(subject_path),
    )
    optimizer.seeded_ancestral_noise = False  # as under a graph
    optimizer.step()  # the warm-up: caches (crop matrices, AdamW state) fill here, as before a capture
    optimizer._start_iteration()
    optimizer.optimizer.step = lambda: None  # the CPU AdamW reads its step count; the CUDA one is capturable
    with CaptureSafetyCheck() as check:
        outputs = optimizer._iteration()
    assert check.violations == []
    assert check.op_count > 1000  # it really watched an iteration
    assert {"image", "dino", "ir", "total"} <= outputs.keys()
    assert any(name.startswith("lora/") for name in outputs)


def _move_to_meta(optimizer: SISOOptimizer) -> None:
    """Put every module and per-run input of a built optimiser on the data-less `meta` device."""
    meta = torch.device("meta")
    pipe = optimizer.pipe
    for module in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, optimizer.loss):
        module.to(meta)
    optimizer.loss.targets = {name: target.to(meta) for name, target in optimizer.loss.targets.items()}
    inputs = optimizer.inputs
    for name, value in vars(inputs).items():
        if isinstance(value, torch.Tensor) and name != "noise_state":
            setattr(inputs, name, value.to(meta))
    if inputs.token_ids is not None:
        inputs.token_ids = tuple(ids.to(meta) for ids in inputs.token_ids)
    # moving to meta makes new Parameter objects (a CUDA move keeps them): look them up again
    train_text_encoder = optimizer.config.train_text_encoder
    optimizer.params = [p for part in SDXLGenerator.lora_modules(pipe, train_text_encoder).values() for p in part.parameters() if p.requires_grad]
    optimizer.snapshot_lora = LoRASnapshotter(SDXLGenerator.lora_modules(pipe, train_text_encoder))
    optimizer.generator.device = meta
    # the scheduler keeps its sigmas on the CPU whatever the device (diffusers does that on purpose)
    optimizer.generator.start = lambda _inputs: (pipe.scheduler.set_timesteps(1, device="cpu"), pipe.scheduler.set_begin_index(0))


@pytest.mark.parametrize("train_text_encoder", [True, False])
def test_no_host_data_is_copied_to_the_device_during_an_iteration(tiny_config, subject_path, train_text_encoder):
    optimizer = SISOOptimizer(
        tiny_config(train_text_encoder=train_text_encoder, num_train_epochs=5, precision="bf16"),
        load_subject_image(subject_path),
    )
    optimizer.seeded_ancestral_noise = False
    _move_to_meta(optimizer)
    optimizer.optimizer.step = lambda: None  # its state stayed on the CPU
    for check_this_one in (False, True):  # the first fills per-device caches, as the eager warm-up does
        optimizer._start_iteration()
        with HostToDeviceCheck("meta") if check_this_one else contextlib.nullcontext() as check:
            outputs = optimizer._iteration()
        reached = [p.grad is not None for p in optimizer.params]
        for param in optimizer.params:
            param.grad = None
    assert check.violations == []
    assert check.op_count > 1000 and outputs["total"].device.type == "meta"
    # the backward pass was part of what was checked (text encoder 1's last layer never gets a gradient)
    assert sum(reached) >= 0.9 * len(reached)


def test_the_checks_catch_what_breaks_a_capture():
    generator = torch.Generator().manual_seed(0)
    with CaptureSafetyCheck() as check:
        x = torch.ones(3)
        x.sum().item()
        torch.tensor([1.0, 2.0])
        torch.randn(2, generator=generator)
        torch.randn(2)  # default generator: allowed
    assert [name for name, _ in check.violations] == ["_local_scalar_dense", "lift_fresh", "randn"]
    on_meta, on_host = torch.ones(3, device="meta"), torch.ones(3)
    with HostToDeviceCheck("meta") as check:
        on_meta * torch.tensor(2.0)  # a 0-dim host tensor is a scalar argument: allowed
        on_host.to("meta")
        on_meta + on_host.sum()  # 0-dim again
        on_meta.clone().copy_(on_host)
    assert [name for name, _ in check.violations] == ["_to_copy", "copy_"]


def test_unseeded_ancestral_noise_changes_nothing_for_one_step(tiny_config, subject_path):
    """A graph draws the last step's noise from the default generator; it is multiplied by sigma_up = 0."""
    runs = []
    for seeded in (True, False):
        optimizer = SISOOptimizer(tiny_config(num_train_epochs=6), load_subject_image(subject_path))
        optimizer.seeded_ancestral_noise = seeded
        torch.manual_seed(1234 if seeded else 99)
        result = optimizer.run()
        runs.append((result.history, result.best_lora, result.best_image))
    (history_a, lora_a, image_a), (history_b, lora_b, image_b) = runs
    assert [row["total"] for row in history_a] == [row["total"] for row in history_b]
    assert torch.equal(image_a, image_b)
    assert all(torch.equal(lora_a[part][key], lora_b[part][key]) for part in lora_a for key in lora_a[part])


def _settings(**overrides) -> RuntimeSettings:
    config = SISOConfig(**{"precision": "bf16", "mode": "default", **overrides})  # auto would ask the (absent) GPU
    return RuntimeSettings.resolve(config, torch.device("cuda"))


def test_graphs_are_used_only_where_supported():
    assert _settings().cuda_graphs and _settings().cuda_graphs_note is None
    assert _settings(train_text_encoder=False).cuda_graphs
    assert _settings(precision="fp32").cuda_graphs
    for overrides, words in [
        (dict(mode="low-memory"), "gradient checkpointing"),
        (dict(precision="fp16"), "fp16"),
        (dict(num_inference_steps=2), "num_inference_steps=1"),
        (dict(lr_scheduler="cosine"), "lr_scheduler='constant'"),
        (dict(compile=True), "compile=True"),
    ]:
        settings = _settings(**overrides)
        assert not settings.cuda_graphs and words in settings.cuda_graphs_note
    assert not _settings(mode="reference").cuda_graphs  # the authors' setup is measured as it was
    assert not _settings(cuda_graphs=False).cuda_graphs and _settings(cuda_graphs=False).cuda_graphs_note is None
    cpu = RuntimeSettings.resolve(SISOConfig(), torch.device("cpu"))
    assert not cpu.cuda_graphs and "CUDA device" in cpu.cuda_graphs_note


class _FakeCuda:
    """Stands in for the CUDA calls of GraphedIteration; a 'replay' re-runs the captured function."""

    def __init__(self, monkeypatch, fail_capture: bool = False):
        self.captures = 0
        fake = self

        class Graph:
            def replay(self):
                fake.replays += 1
                fake.last_outputs.update(fake.captured())

        @contextlib.contextmanager
        def graph(_graph, capture_error_mode="global"):
            fake.captures += 1
            if fail_capture:
                raise RuntimeError("operation not permitted when stream is capturing")
            yield

        self.replays, self.captured, self.last_outputs = 0, None, {}
        monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
        monkeypatch.setattr(torch.cuda, "graph", graph)
        monkeypatch.setattr(cuda_graphs.GraphedIteration, "_on_side_stream", staticmethod(lambda function: function()))
        monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)


class _Counter:
    def __init__(self, fake: _FakeCuda, expected: float = 1.0, replayed: float = 1.0):
        self.fake, self.calls = fake, {"start": 0, "iteration": 0, "expected": 0, "reset": 0}
        self.expected, self.replayed = expected, replayed

    def start(self):
        self.calls["start"] += 1

    def iteration(self):
        self.calls["iteration"] += 1
        outputs = {"total": torch.tensor(self.replayed)}
        self.fake.captured = lambda: {"total": torch.tensor(self.replayed)}
        self.fake.last_outputs = outputs
        return outputs

    def expected_loss(self):
        self.calls["expected"] += 1
        return torch.tensor(self.expected)

    def reset(self):
        self.calls["reset"] += 1

    def graphed(self):
        return cuda_graphs.GraphedIteration(self.start, self.iteration, self.expected_loss, self.reset, warmup_steps=2)


def test_warm_up_then_capture_once_then_replay(monkeypatch):
    fake = _FakeCuda(monkeypatch)
    counter = _Counter(fake)
    graphed = counter.graphed()
    for _ in range(2):
        graphed()
    assert counter.calls == {"start": 2, "iteration": 2, "expected": 0, "reset": 2} and not graphed.captured
    graphed()  # the capture: checked against an eager no-grad loss, then replayed
    assert graphed.captured and fake.captures == 1 and fake.replays == 1
    assert counter.calls == {"start": 4, "iteration": 3, "expected": 1, "reset": 3}
    for _ in range(5):
        assert float(graphed()["total"]) == 1.0
    assert fake.replays == 6 and counter.calls["iteration"] == 3 and counter.calls["start"] == 4


def test_a_failed_capture_falls_back_to_eager_for_good(monkeypatch, caplog):
    fake = _FakeCuda(monkeypatch, fail_capture=True)
    counter = _Counter(fake)
    graphed = counter.graphed()
    with caplog.at_level(logging.WARNING, logger="siso_lib.cuda_graphs"):
        for _ in range(6):
            assert float(graphed()["total"]) == 1.0
    assert fake.captures == 1 and not graphed.captured and "stream is capturing" in graphed.failure
    assert counter.calls["iteration"] == 6  # every step ran, eagerly
    assert "CUDA graph capture failed" in caplog.text and "cuda_graphs=False" in caplog.text


def test_a_replay_that_disagrees_with_eager_is_an_error(monkeypatch):
    fake = _FakeCuda(monkeypatch)
    graphed = _Counter(fake, expected=-0.5, replayed=-0.2).graphed()
    graphed(), graphed()
    with pytest.raises(cuda_graphs.GraphReplayError, match="cuda_graphs=False"):
        graphed()


def test_a_replay_mismatch_ends_the_run_and_keeps_the_best(tiny_config, subject_path):
    optimizer = SISOOptimizer(tiny_config(num_train_epochs=6), load_subject_image(subject_path))
    calls = {"n": 0}

    def graphed():  # two eager iterations, then a capture whose replay disagrees
        calls["n"] += 1
        if calls["n"] == 3:
            raise cuda_graphs.GraphReplayError("replay 0.1 vs eager 0.5: rerun with cuda_graphs=False")
        optimizer._start_iteration()
        outputs = optimizer._iteration()
        optimizer._reset_grads()
        return outputs

    optimizer.graphed = graphed
    result = optimizer.run()
    assert result.stop_reason == "cuda_graph_mismatch" and "cuda_graphs=False" in result.error
    assert result.steps_run == 2 and result.best_step in (1, 2) and result.best_lora["unet"]
    assert "disagreed" in optimizer.describe_stop(result.stop_reason)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
def test_graphed_run_matches_eager_on_cuda(tiny_config, subject_path):
    curves = {}
    for graphs in (True, False):
        config = tiny_config(device="cuda", precision="bf16", num_train_epochs=8, cuda_graphs=graphs,
                             early_stopping_threshold_percentage=0)
        optimizer = SISOOptimizer(config, load_subject_image(subject_path))
        curves[graphs] = [row["total"] for row in optimizer.run().history]
        assert (optimizer.graphed is not None and optimizer.graphed.captured) == graphs
    assert max(abs(a - b) for a, b in zip(curves[True], curves[False])) < 5e-3
