"""Device and precision choice: CUDA, XPU, MPS or CPU; never a hard-coded `cuda`.

`pick_device("auto")` takes the first available of CUDA, XPU, MPS, CPU. `pick_dtype` maps a
precision name to the dtype of the FROZEN weights; the LoRA weights and the optimizer state
always stay in float32.
"""

from __future__ import annotations

import torch

from .errors import SISOInputError, setting

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _xpu_available() -> bool:
    return hasattr(torch, "xpu") and torch.xpu.is_available()


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def pick_device(name: str = "auto") -> torch.device:
    """Resolve 'auto', 'cuda', 'cuda:1', 'xpu', 'mps' or 'cpu' to an available torch.device."""
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _xpu_available():
            return torch.device("xpu")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise SISOInputError(f"device {name!r} is not a device name: use auto, cuda, cuda:N, xpu, mps or cpu") from error
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "xpu": _xpu_available(),
        "mps": _mps_available(),
    }.get(device.type, False)
    if not available:
        raise SISOInputError(f"device {name!r} is not available on this machine: use {setting('device', 'auto')} or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SISOInputError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def bf16_supported(device: torch.device) -> bool:
    """Native bf16 math: NVIDIA Ampere (sm 8.0) or newer, and XPU. (T4 / V100 only emulate it.)
    The meta device, the memory probe's stand-in for a current GPU, counts as one."""
    if device.type == "meta":
        return True
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    return device.type == "xpu"


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """Dtype of the frozen weights. 'auto' = bf16 where the GPU has native bf16, fp16 on older
    NVIDIA GPUs (T4, V100: with loss scaling and an fp32 VAE), fp32 on MPS and CPU."""
    if precision == "auto":
        if bf16_supported(device):
            return torch.bfloat16
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in _DTYPES:
        raise ValueError(f"precision {precision!r} is unknown: use auto, fp32, bf16 or fp16")
    return _DTYPES[precision]


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in _DTYPES.items()}[dtype]


def generator_device(device: torch.device) -> torch.device:
    """Where a seeded torch.Generator for `device` lives: the device itself, except meta (the memory
    probe's simulated GPU), which has none: its random numbers come from the CPU."""
    return torch.device("cpu") if device.type == "meta" else device


def free_memory_bytes(device: torch.device) -> int | None:
    """Free memory of an accelerator for the memory plan; None on a CPU (and the probe's meta device).

    CUDA and XPU report the driver's free bytes (what other processes hold is already taken);
    MPS shares the system's memory: the recommended working set minus what the driver holds.
    """
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "xpu" and hasattr(torch.xpu, "mem_get_info"):
        return torch.xpu.mem_get_info(device)[0]
    if device.type == "mps" and hasattr(torch.mps, "recommended_max_memory"):
        return max(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory(), 0)
    return None


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so that wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "xpu":
        torch.xpu.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def is_out_of_memory(error: BaseException) -> bool:
    """True for an accelerator or host out-of-memory error, whatever the backend."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, (RuntimeError, MemoryError)) and ("out of memory" in text or isinstance(error, MemoryError))


def torch_layers_only(model) -> None:
    """Keep a transformers model on PyTorch's own layers.

    Since 5.2x transformers swaps some layers (RMSNorm, attention, ...) for kernels it downloads
    from the hub whenever its `kernels` dependency is installed. SISO must run offline, give the
    same numbers as the authors' scripts and back-propagate through every layer, so a model it
    loads keeps torch's layers (the same as `USE_HUB_KERNELS=0` for this model only).
    """
    if getattr(model, "use_kernels", False) and hasattr(model, "set_use_kernels"):
        model.set_use_kernels(False)
