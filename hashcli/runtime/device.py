"""Device choice and per-device settings shared by training, encoding and querying."""

from __future__ import annotations

import torch

from hashcli.errors import HashretError
from hashcli.runtime import usable_cores


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


def default_workers(device: torch.device, processes_per_node: int = 1) -> int:
    """Image-decoding worker processes for one training or encoding process.

    CUDA: half the cores, shared among the processes of the node (1 to 8): the GPU waits for
    images otherwise. CPU: the model and the decoding compete for the same cores; on a 2-core
    machine one worker costs 20-50% of the throughput (``benchmarks/bench_encode.py``,
    ``bench_train.py``), so decode in the process itself there, and use a quarter of the
    cores on larger machines.
    """
    cores = max(1, usable_cores() // max(1, processes_per_node))
    if device.type == "cuda":
        return max(1, min(8, cores // 2))
    return 0 if cores <= 2 else min(8, cores // 4)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (tensor cores, no loss scaling needed); a no-op on the CPU."""
    import contextlib

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
