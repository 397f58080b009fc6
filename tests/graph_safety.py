"""Finds operations that would break a CUDA graph capture, on the CPU.

A CUDA graph replays recorded kernels; anything that needs the host during capture fails
there (or worse, is silently baked in). On a GPU-less machine we cannot capture, but every
such operation still passes through PyTorch's dispatcher, so a dispatch mode can list them:

* reading a device value on the host: `.item()`, `bool(t)`, `nonzero`, `unique`, ... (a sync)
* a new tensor from Python data: `torch.tensor([...], device=...)` (a pageable host copy)
* random numbers from a seeded generator: a replay would not re-seed them the way an eager
  iteration does (the default generator is fine: a capture registers it)

A device transfer from host memory cannot be seen on a CPU-only machine; the iteration code
keeps every input on the device from `prepare()` on, so none is expected.
"""

from __future__ import annotations

import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

HOST_SYNC = {
    "_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "_unique2", "unique_dim",
    "unique_consecutive", "equal", "is_nonzero", "allclose", "_linalg_check_errors", "bincount", "histc",
    "argwhere", "repeat_interleave", "_assert_async",
}
HOST_DATA = {"lift_fresh", "lift_fresh_copy"}
RANDOM = {"randn", "rand", "randint", "normal", "normal_", "uniform_", "bernoulli", "bernoulli_", "multinomial",
          "randperm", "native_dropout", "random_", "exponential_"}


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
            frames = [f for f in traceback.extract_stack()[:-1] if "torch/utils/_python_dispatch" not in f.filename]
            where = next((f"{f.filename}:{f.lineno}" for f in reversed(frames) if "/torch/" not in f.filename), "?")
            self.violations.append((name, where))
        return func(*args, **(kwargs or {}))
