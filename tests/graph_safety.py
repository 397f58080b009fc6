"""Finds operations that would break a CUDA graph capture, on the CPU.

A CUDA graph replays recorded kernels; anything that needs the host during capture fails
there (or worse, is silently baked in). On a GPU-less machine we cannot capture, but every
such operation still passes through PyTorch's dispatcher, so a dispatch mode can list them:

* reading a device value on the host: `.item()`, `bool(t)`, `nonzero`, `unique`, ... (a sync)
* a new tensor from Python data: `torch.tensor([...], device=...)` (a pageable host copy)
* random numbers from a seeded generator: a replay would not re-seed them the way an eager
  iteration does (the default generator is fine: a capture registers it)

A copy from host memory to the device is invisible when both are the CPU; `HostToDeviceCheck`
finds those by running the iteration on the `meta` device, where any CPU tensor with data that
reaches a device op would be such a copy. CPU 0-dim tensors (the scheduler's sigmas) are fine:
PyTorch passes them to kernels as scalars, which a graph records as constants.
"""

from __future__ import annotations

import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

HOST_SYNC = {
    "_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "_unique2", "unique_dim",
    "unique_consecutive", "equal", "is_nonzero", "allclose", "_linalg_check_errors", "bincount", "histc",
    "argwhere", "repeat_interleave", "_assert_async",
}
HOST_DATA = {"lift_fresh", "lift_fresh_copy"}
RANDOM = {"randn", "rand", "randint", "normal", "normal_", "uniform_", "bernoulli", "bernoulli_", "multinomial",
          "randperm", "native_dropout", "random_", "exponential_"}


def _caller() -> str:
    frames = [f for f in traceback.extract_stack()[:-2] if "torch/utils/_python_dispatch" not in f.filename]
    return next((f"{f.filename}:{f.lineno}" for f in reversed(frames) if "/torch/" not in f.filename), "?")


class HostToDeviceCheck(TorchDispatchMode):
    """`with HostToDeviceCheck(device) as check: work()`; lists ops that copy host data to `device`."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = torch.device(device)
        self.violations: list[tuple[str, str]] = []
        self.op_count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        self.op_count += 1
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(result)[0] if isinstance(t, torch.Tensor)]
        on_device = any(t.device.type == self.device.type for t in outputs)
        from_host = any(t.device.type == "cpu" and (t.dim() > 0 or func._schema.name in ("aten::_to_copy", "aten::copy_"))
                        for t in inputs)
        if on_device and from_host:
            self.violations.append((func._schema.name.split("::")[-1], _caller()))
        return result


class CaptureSafetyCheck(TorchDispatchMode):
    """`with CaptureSafetyCheck() as check: step()`; then `check.violations` lists (op, where)."""

    def __init__(self):
        super().__init__()
        self.violations: list[tuple[str, str]] = []
        self.op_count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        self.op_count += 1
        seeded = (kwargs or {}).get("generator") is not None
        if name in HOST_SYNC or name in HOST_DATA or (name in RANDOM and seeded):
            self.violations.append((name, _caller()))
        return func(*args, **(kwargs or {}))
