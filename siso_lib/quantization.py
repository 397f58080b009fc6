"""Frozen denoiser weights in int8 or fp8, with the LoRA's gradients flowing through them (QLoRA).

Only the frozen base weights are quantized; the LoRA beside each layer stays fp32:

    W (out, in) bf16  ->  W_q = round(W / s) with one fp32 scale s per output row
                          (torchao's weight-only layouts: int8 + a zero point, or float8_e4m3)
    forward   y     = x W_q^T + b                   torchao's kernel for the quantized tensor
    backward  dL/dx = dL/dy deq(W_q)                 W is frozen: no dL/dW, and x is not needed

Why an autograd Function: under plain autograd torchao's linear dequantizes W and `F.linear`
saves that full-precision copy for backward, so every layer would hold a bf16 weight until the
backward pass - the very memory quantization is meant to save (measured: no saving at all).
`FrozenQuantizedLinear` keeps only a reference to W_q (a parameter that lives anyway) and
dequantizes one layer at a time in backward.

Two ways in: `load_pipeline(..., quantize=...)` passes diffusers' `TorchAoConfig` to
`from_pretrained`, so the weights are quantized as they load (a 12 B FLUX transformer never
exists in bf16 on the host); `quantize_frozen_weights` quantizes a pipeline already in memory
(offline models, a pipeline handed to the optimiser). Both end in the same layers.
torchao is imported only when quantization is asked for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import SISOInputError


def torchao_config(kind: str):
    """The torchao weight-only config for `kind` (int8 or fp8)."""
    try:
        from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig
    except ImportError as error:
        raise SISOInputError(
            f"quantized weights ({kind}) need torchao: pip install torchao (or run without --quantize)"
        ) from error
    return {"int8": Int8WeightOnlyConfig, "fp8": Float8WeightOnlyConfig}[kind]()


def diffusers_quantization_config(kind: str):
    """What `from_pretrained(quantization_config=...)` takes for the denoiser alone."""
    from diffusers import TorchAoConfig

    return TorchAoConfig(torchao_config(kind))


class _FrozenQuantizedLinearFunction(torch.autograd.Function):
    """y = x W_q^T + b; saves nothing but a reference to W_q (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.weight = weight  # a frozen parameter: referencing it keeps no extra memory alive
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_output):
        weight = ctx.weight.dequantize().to(grad_output.dtype)  # (out, in), this layer only
        return grad_output @ weight, None, None


class FrozenQuantizedLinear(torch.nn.Linear):
    """An nn.Linear whose weight is a torchao quantized tensor and never trains."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return F.linear(x, self.weight, self.bias)
        return _FrozenQuantizedLinearFunction.apply(x, self.weight, self.bias)


def is_quantized(linear: torch.nn.Module) -> bool:
    return isinstance(linear, torch.nn.Linear) and hasattr(linear.weight, "dequantize") and hasattr(linear.weight, "qdata")


def _quantizable(module: torch.nn.Module, name: str) -> bool:
    # LoRA's own layers (lora_A / lora_B) are trainable and stay fp32
    return type(module) is torch.nn.Linear and "lora_" not in name


def quantize_frozen_weights(denoiser: torch.nn.Module, kind: str) -> int:
    """Quantize the denoiser's frozen nn.Linear weights in place (before LoRA is attached);
    return how many layers are quantized. Layers quantized at load time are only switched to
    the memory-saving backward."""
    if kind == "none":
        return 0
    if not any(is_quantized(module) for module in denoiser.modules()):
        from torchao.quantization import quantize_

        quantize_(denoiser, torchao_config(kind), filter_fn=_quantizable)
    count = 0
    for module in denoiser.modules():
        if is_quantized(module) and type(module) in (torch.nn.Linear, FrozenQuantizedLinear):
            module.__class__ = FrozenQuantizedLinear
            module.weight.requires_grad_(False)
            count += 1
    return count


def quantized_kind(denoiser: torch.nn.Module) -> str:
    """none, int8 or fp8: what the denoiser's linear weights are stored in."""
    for module in denoiser.modules():
        if is_quantized(module):
            return "fp8" if "float8" in str(module.weight.qdata.dtype) else "int8"
    return "none"
