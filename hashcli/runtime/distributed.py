"""Several processes, one job: the torch.distributed plumbing of ``torchrun ... -m hashcli``.

``torchrun`` starts one process per GPU (or per CPU slot) and tells each who it is through the
environment: ``RANK`` (0 .. WORLD_SIZE-1 over all nodes), ``WORLD_SIZE``, ``LOCAL_RANK`` (its
GPU on this node), ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``.
:func:`distributed_session` reads them, joins the process group (NCCL on CUDA, gloo on the CPU)
and hands back a :class:`Distributed` with the few collective operations hashret needs: a
barrier, broadcasting and gathering picklable objects (numpy arrays of unequal length
included), summing a few numbers, and making the module buffers of every rank equal to rank
0's. A plain ``hashret`` (no torchrun, or ``WORLD_SIZE=1``) gets a single-process
:class:`Distributed` whose operations do nothing, so callers need no second code path.

Objects travel over a gloo group even when the main group is NCCL (detectron2 does the same):
pickled payloads then stay in host memory instead of passing through the GPU.

torch is imported inside the functions: the CLI may import :func:`is_main_process` and stay
fast. Errors are :class:`~hashcli.errors.HashretError`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from hashcli.errors import HashretError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

#: Environment variables torchrun sets in every process it starts.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise HashretError(f"the environment variable {name}={value!r} is not an integer") from None


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun (RANK, WORLD_SIZE and LOCAL_RANK are set)."""
    return all(name in os.environ for name in TORCHRUN_ENV)


def env_rank() -> int:
    """This process's global rank from the environment (0 without torchrun)."""
    return _env_int("RANK", 0) if launched_by_torchrun() else 0


def is_main_process() -> bool:
    """True in a single process and in rank 0 of a torchrun job (no torch import)."""
    return env_rank() == 0


@dataclass
class Distributed:
    """This process's place in the job and the collectives between the processes.

    ``device`` is the torch device this process computes on (``cuda:LOCAL_RANK`` with NCCL).
    With ``world_size == 1`` every operation is local and immediate.
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None
    _object_group: Any = field(default=None, repr=False)

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- synchronisation ---------------------------------------------------------------------

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if not self.is_distributed:
            return
        import torch.distributed as dist

        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    # -- objects (pickled, over gloo) -----------------------------------------------------------

    def broadcast_object(self, obj: T, src: int = 0) -> T:
        """``obj`` of rank ``src`` on every rank (others pass anything, e.g. None)."""
        if not self.is_distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=src, group=self._object_group)
        return box[0]

    def gather_object(self, obj: T, dst: int = 0) -> list[T] | None:
        """Every rank's ``obj`` in rank order on rank ``dst``; None on the other ranks."""
        if not self.is_distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj, out, dst=dst, group=self._object_group)
        return out

    def all_gather_object(self, obj: T) -> list[T]:
        """Every rank's ``obj`` in rank order, on every rank."""
        if not self.is_distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self._object_group)
        return out

    def run_on_main(self, fn: Callable[[], T]) -> T:
        """Rank 0 calls ``fn``; every rank returns its result, or raises its HashretError.

        For steps that must happen once (creating the run folder) but whose outcome every rank
        needs, failures included, so that all ranks stop with the same message instead of the
        others waiting for a rank that has left.
        """
        if not self.is_distributed:
            return fn()
        outcome: tuple[str, Any] = ("", None)
        if self.is_main:
            try:
                outcome = ("ok", fn())
            except HashretError as exc:
                outcome = ("error", (type(exc), str(exc)))
        outcome = self.broadcast_object(outcome)
        return _unwrap(outcome)

    def agree(self, outcome: tuple[str, Any]) -> list[Any]:
        """All ranks' ``("ok", value)`` or ``("error", (type, message))`` outcomes: the values
        in rank order, or the first rank's error raised on every rank."""
        outcomes = self.all_gather_object(outcome)
        for item in outcomes:
            if item[0] == "error":
                _unwrap(item)
        return [item[1] for item in outcomes]

    # -- numbers and tensors ----------------------------------------------------------------

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over the ranks (float64)."""
        return self._all_reduce(values, "sum")

    def all_reduce_max(self, values: Sequence[float]) -> list[float]:
        """Element-wise maxima over the ranks (float64)."""
        return self._all_reduce(values, "max")

    def _all_reduce(self, values: Sequence[float], op: str) -> list[float]:
        if not self.is_distributed:
            return [float(v) for v in values]
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return tensor.cpu().tolist()

    def average_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        """Replace each parameter's gradient by its mean over the ranks (what DDP does for the
        parameters of the module it wraps); parameters without a gradient are left alone."""
        if not self.is_distributed:
            return
        import torch.distributed as dist

        for parameter in parameters:
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
                parameter.grad.div_(self.world_size)

    def broadcast_buffers(self, module: torch.nn.Module, src: int = 0) -> None:
        """Copy rank ``src``'s buffers (BatchNorm running statistics) into every rank's module.

        DDP broadcasts buffers at the start of each forward, so after the last step of an epoch
        the ranks' running statistics differ by their own last batch; this makes the model every
        rank encodes with the one rank 0 saves.
        """
        if not self.is_distributed:
            return
        import torch.distributed as dist

        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=src)


def _unwrap(outcome: tuple[str, Any]) -> Any:
    kind, value = outcome
    if kind == "error":
        error_type, message = value
        if not (isinstance(error_type, type) and issubclass(error_type, HashretError)):
            error_type = HashretError
        raise error_type(message)
    return value


def shard_range(n: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s contiguous shard of ``n`` items: ranks in order cover 0..n-1 once, the
    shard sizes differing by at most one."""
    return range(n * rank // world_size, n * (rank + 1) // world_size)


def _resolve_device(device: str, local_rank: int, world_size: int) -> torch.device:
    """The device of this process: the local rank's GPU for cuda/auto with GPUs, else CPU."""
    import torch

    from hashcli.runtime.device import resolve_device

    name = (device or "auto").strip().lower()
    if name.startswith("cuda:") and world_size > 1:
        raise HashretError(
            f"--device {device}: under torchrun every process uses the GPU of its LOCAL_RANK; "
            "give --device cuda (or auto) and choose the GPUs with CUDA_VISIBLE_DEVICES"
        )
    resolved = resolve_device(name)
    if resolved.type != "cuda":
        return resolved
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise HashretError(
            f"torchrun started process LOCAL_RANK={local_rank} on this node but only {count} "
            f"GPU(s) are visible; use --nproc_per_node {count} (one process per GPU)"
        )
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def distributed_session(device: str = "auto") -> Iterator[Distributed]:
    """The :class:`Distributed` of this process, joined to torchrun's job if there is one.

    ``device``: auto, cpu, cuda (cuda:N only in a single process). Under torchrun with
    WORLD_SIZE > 1 the process group is created here (backend nccl on CUDA, gloo on the CPU)
    and destroyed on exit; a group that already exists (a caller's own torch.distributed
    setup) is used as it is and left alone.
    """
    import torch

    if not launched_by_torchrun() or _env_int("WORLD_SIZE", 1) <= 1:
        yield Distributed(device=_resolve_device(device, 0, 1))
        return

    import torch.distributed as dist

    rank = _env_int("RANK", 0)
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", 1)
    resolved = _resolve_device(device, local_rank, world_size)
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend=backend)
    else:
        backend = dist.get_backend()
        if backend == "nccl" and resolved.type != "cuda":
            raise HashretError(
                "the existing process group uses NCCL, which needs CUDA; give --device cuda"
            )
    object_group = dist.new_group(backend="gloo") if backend == "nccl" else None
    ctx = Distributed(
        device=resolved,
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        local_world_size=local_world_size,
        backend=backend,
        _object_group=object_group,
    )
    if ctx.rank != rank or ctx.world_size != world_size:
        raise HashretError(
            f"the process group says rank {ctx.rank} of {ctx.world_size}, the environment "
            f"RANK={rank} WORLD_SIZE={world_size}"
        )
    finished = False
    try:
        yield ctx
        finished = True
    finally:
        if finished and created and dist.is_initialized():
            # Leave together: a rank that tears gloo down while its peer is still sending
            # can abort the peer ("terminate called without an active exception").
            with contextlib.suppress(Exception):
                ctx.barrier()
        if object_group is not None:
            with contextlib.suppress(Exception):
                dist.destroy_process_group(object_group)
        if created and dist.is_initialized():
            dist.destroy_process_group()


def cpu_threads_per_process(local_world_size: int) -> int:
    """Intra-op threads for one of ``local_world_size`` CPU processes on this node:
    ``OMP_NUM_THREADS`` when set (torchrun sets 1 unless told otherwise), else an even share
    of the cores."""
    threads = _env_int("OMP_NUM_THREADS", 0)
    if threads > 0:
        return threads
    from hashcli.runtime import usable_cores

    return max(1, usable_cores() // max(1, local_world_size))


__all__ = [
    "Distributed",
    "cpu_threads_per_process",
    "distributed_session",
    "env_rank",
    "is_main_process",
    "launched_by_torchrun",
    "shard_range",
]
