"""One SISO iteration recorded as a CUDA graph once, then replayed: the host launches nothing.

An SDXL-Turbo iteration at 512 px is bound by the host, not the GPU: on an H200 the default
mode launched ~19,000 kernels per iteration (most from the 1,296 LoRA-wrapped layers), with
777 ms of CPU time against 149 ms of GPU time. Every iteration runs the same kernels on the
same shapes from the same starting noise, so it can be recorded once (torch.cuda.CUDAGraph)
and replayed with a single launch:

    iterations 1..W   eager, on a side stream: real SISO steps that also create AdamW's state
                      and the libraries' workspaces, which must exist before a capture
    iteration W+1     eager no-grad loss -> expected; capture; replay -> checked against expected
    iterations W+2..  replay only; the loss, image and pre-update LoRA are read from its outputs

What it needs (`unsupported_reason` says which is missing): a CUDA device, one inference step
(more would need the seeded ancestral noise re-drawn inside the graph), a constant learning
rate (the graph holds its value), no fp16 loss scaling (GradScaler reads its inf check on the
host), no gradient checkpointing (it saves and restores the RNG state) and no torch.compile.
The recorded work must not touch the host; tests/test_cuda_graphs.py checks on the CPU that an
iteration has no synchronising op, no tensor built from Python data and no seeded random draw.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

from .errors import setting

logger = logging.getLogger(__name__)

WARMUP_STEPS = 2
REPLAY_TOLERANCE = 1e-2  # |replayed - eager| of the total loss; bf16 kernel choices differ by ~1e-3


def unsupported_reason(
    device: torch.device,
    dtype: torch.dtype,
    num_inference_steps: int,
    lr_scheduler: str,
    gradient_checkpointing: bool,
    compile_denoiser: bool,
) -> str | None:
    """Why an iteration cannot be captured in a CUDA graph here, or None if it can."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device (this run uses {device.type})"
    if num_inference_steps != 1:
        return f"CUDA graphs need {setting('num_inference_steps', 1)}"
    if lr_scheduler != "constant":
        return f"CUDA graphs need {setting('lr_scheduler', 'constant')}"
    if dtype == torch.float16:
        return "CUDA graphs do not support fp16 loss scaling (use bf16 or fp32)"
    if gradient_checkpointing:
        return f"CUDA graphs are not used with gradient checkpointing ({setting('mode', 'low-memory')})"
    if compile_denoiser:
        return f"CUDA graphs are not combined with {setting('compile', True)}"
    return None


class GraphReplayError(RuntimeError):
    """The first replay of a captured iteration disagreed with the same iteration run eagerly."""


class GraphedIteration:
    """Runs `iteration()` eagerly for the warm-up steps, then captures it and replays it.

    `start()` is the host-side preparation that must precede each eager run and the capture
    (it is not re-run before replays); `iteration()` returns a dict of output tensors, whose
    "total" entry is the scalar loss; `expected_loss()` computes that loss without gradients
    for the current weights (the check of the first replay); `reset_grads()` sets the
    gradients to None after each eager run, so that the captured backward writes fresh ones.
    If the capture itself fails, a warning says why and every later iteration runs eagerly.
    """

    def __init__(
        self,
        start: Callable[[], None],
        iteration: Callable[[], dict[str, torch.Tensor]],
        expected_loss: Callable[[], torch.Tensor],
        reset_grads: Callable[[], None],
        warmup_steps: int = WARMUP_STEPS,
    ):
        self.start, self.iteration, self.expected_loss, self.reset_grads = start, iteration, expected_loss, reset_grads
        self.warmup_steps = warmup_steps
        self.eager_steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: dict[str, torch.Tensor] | None = None
        self.failure: str | None = None  # why the capture failed, if it did

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self) -> dict[str, torch.Tensor]:
        if self.graph is not None:
            self.graph.replay()
            return self.outputs
        if self.failure is None and self.eager_steps >= self.warmup_steps:
            try:
                return self._capture_and_replay()
            except GraphReplayError:
                raise
            except Exception as error:  # a capture error leaves nothing applied: run this step eagerly
                self.failure = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
                logger.warning("CUDA graph capture failed (%s): running eagerly; %s skips the attempt", self.failure, setting("cuda_graphs", False))
                self.reset_grads()
        self.start()
        outputs = self._on_side_stream(self.iteration)
        self.reset_grads()
        self.eager_steps += 1
        return outputs

    def _capture_and_replay(self) -> dict[str, torch.Tensor]:
        self.start()
        with torch.no_grad():
            expected = float(self._on_side_stream(self.expected_loss))
        self.start()
        self.reset_grads()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # the eager steps' cached blocks would otherwise sit beside the graph's pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # notebooks run SISO in a thread
            outputs = self.iteration()
        graph.replay()
        replayed = float(outputs["total"])
        if abs(replayed - expected) > REPLAY_TOLERANCE:
            raise GraphReplayError(
                f"the CUDA graph replay gave loss {replayed:.5f} where the same step run eagerly gives {expected:.5f}: "
                f"the best LoRA so far is kept; rerun with {setting('cuda_graphs', False)}"
            )
        self.graph, self.outputs = graph, outputs
        logger.info("captured one SISO iteration in a CUDA graph (replay loss %.5f, eager %.5f)", replayed, expected)
        return outputs

    @staticmethod
    def _on_side_stream(function: Callable[[], object]):
        """Run eager warm-up work on a side stream, as capture requires of work before it."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            result = function()
        torch.cuda.current_stream().wait_stream(stream)
        return result
