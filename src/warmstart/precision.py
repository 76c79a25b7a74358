"""precision: which autocast precision training and feature passes run in on this machine."""

from __future__ import annotations

from warmstart.errors import ConfigError


def native_bf16(cuda: bool) -> bool:
    """Whether this machine computes in bf16 natively: a GPU that supports it, or a CPU with AVX-512 BF16
    or AMX instructions (without them, CPU bf16 is emulated and far slower than fp32)."""
    import torch

    if cuda:
        return torch.cuda.is_bf16_supported()
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu, torch >= 2.1
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, cuda: bool, bf16_native: bool) -> str:
    """fp32, bf16 or fp16 for `train.precision` on this machine.

    auto: bf16 where the hardware computes it natively; otherwise fp16 on a GPU and fp32 on a CPU.
    """
    if precision == "auto":
        if bf16_native:
            return "bf16"
        return "fp16" if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise ConfigError("train.precision fp16 needs a CUDA GPU and this machine has none; use auto or bf16")
    return precision
