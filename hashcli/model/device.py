"""Device choice and per-device settings shared by training, encoding and querying."""

from __future__ import annotations

import os

import torch

from hashcli.errors import HashretError


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: cuda when available, else cpu; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    name = (device or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise HashretError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise HashretError(
                f"--device {device}: CUDA is not available on this machine; use --device cpu"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise HashretError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
    elif resolved.type != "cpu":
        raise HashretError(f"unsupported device {device!r}; use auto, cpu, cuda or cuda:N")
    return resolved


def default_workers() -> int:
    """Decoding workers: half the cores (at least 1), leaving the rest to the model."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def autocast(device: torch.device):
    """bf16 autocast on CUDA (tensor cores, no loss scaling needed); a no-op on the CPU."""
    import contextlib

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
