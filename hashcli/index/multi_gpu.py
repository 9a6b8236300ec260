"""Exact (flat) binary search over several GPUs: the database sharded or replicated by FAISS.

FAISS clones an ``IndexBinaryFlat`` onto a list of GPUs with
``index_binary_cpu_to_gpu_multiple`` (reached through ``faiss.index_cpu_to_gpu_multiple_py``),
one ``GpuIndexBinaryFlat`` per GPU, in one of two layouts:

* ``shard``: ``IndexBinaryShards`` (threaded, ``successive_ids``): GPU i holds rows
  ``i*N/n .. (i+1)*N/n - 1``, every query is searched on every GPU and the n partial top-k
  lists are merged on the CPU, with row numbers shifted back to the whole database. Memory per
  GPU: N/n codes. The default: it fits databases n times larger, and even one query keeps
  every GPU busy.
* ``replicate``: ``IndexBinaryReplicas`` (threaded): every GPU holds all N codes and a query
  batch is split among the GPUs. No merge; pays off only for large query batches over a
  database that fits on each GPU.

Results follow the ordering rule of :mod:`hashcli.index.binary_index`: neighbours ordered by
(Hamming distance, row), and where the k-th neighbour's distance is shared by rows beyond k
(a cut tie group) the lowest rows are kept. The GPUs search k+1 neighbours; the queries whose
(k+1)-th ties the k-th are answered again, exactly, by the CPU copy's range search (which the
GPU side lacks, as for one GPU). A :class:`BinaryIndex` on the CPU therefore stays beside the
GPU copies, holding the codes once more in host memory.

faiss is imported inside the functions. One GPU works too (then FAISS returns a plain
``GpuIndexBinaryFlat``); a GPU listed twice gets two shards, which lets one GPU test the
sharded path.
"""

# ruff: noqa: E741  (D, I: FAISS's own names for distances and ids)

from __future__ import annotations

import os
from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np

from hashcli.errors import HashretError
from hashcli.index.binary_index import GPU_MAX_K, BinaryIndex, SearchResult, _faiss
from hashcli.index.layout import check_codes, pad_codes
from hashcli.index.ordering import cut_tie_groups, order_rows

#: How the database is spread over the GPUs (see the module docstring).
MULTI_GPU_MODES = ("shard", "replicate")


def visible_gpus() -> int:
    """GPUs this FAISS build can use (0 for a CPU-only build or a machine without GPUs)."""
    faiss = _faiss()
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def resolve_gpus(gpus: Sequence[int] | None = None) -> list[int]:
    """``gpus`` checked against the visible GPUs; None means all of them.

    HashretError when FAISS sees no GPU or a listed one does not exist.
    """
    count = visible_gpus()
    if count == 0:
        raise HashretError(
            "multi-GPU search needs a GPU build of FAISS (faiss-gpu) and visible GPUs, and "
            "this FAISS sees none; use --device cpu"
        )
    if gpus is None:
        return list(range(count))
    chosen = list(gpus)
    if not chosen:
        raise HashretError("the list of GPUs to search on is empty")
    for gpu in chosen:
        if isinstance(gpu, bool) or not isinstance(gpu, Integral) or not 0 <= int(gpu) < count:
            raise HashretError(f"GPU {gpu!r} does not exist: FAISS sees {count} GPU(s)")
    return [int(gpu) for gpu in chosen]


def _check_mode(mode: str) -> str:
    if mode not in MULTI_GPU_MODES:
        raise HashretError(
            f"unknown multi-GPU mode {mode!r}; choose {' or '.join(MULTI_GPU_MODES)}"
        )
    return mode


def clone_flat_to_gpus(flat: Any, gpus: Sequence[int], mode: str = "shard") -> tuple[Any, list]:
    """FAISS ``IndexBinaryFlat`` ``flat`` copied onto ``gpus`` (shard or replicate).

    Returns ``(gpu_index, resources)``: keep ``resources`` (one StandardGpuResources per
    entry of ``gpus``) alive as long as ``gpu_index``. The copy does not follow later
    additions to ``flat``.
    """
    faiss = _faiss()
    _check_mode(mode)
    resources = [faiss.StandardGpuResources() for _ in gpus]
    options = faiss.GpuMultipleClonerOptions()
    options.shard = mode == "shard"
    gpu_index = faiss.index_cpu_to_gpu_multiple_py(resources, flat, options, list(gpus))
    return gpu_index, resources


class _FromCpu:
    """A read-only attribute that the multi-GPU index takes from its CPU copy."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, index: Any, owner: type | None = None) -> Any:
        return self if index is None else getattr(index._cpu, self.name)


class MultiGpuBinaryIndex:
    """A flat :class:`BinaryIndex` whose k-NN search runs on several GPUs.

    Build one with :meth:`build` (codes) or :meth:`load` (a saved flat index); the
    constructor takes the parts: ``cpu`` a flat BinaryIndex on the CPU (range search, tie
    repair, metadata), ``searcher`` a FAISS binary index over the same rows in the same order
    (the GPU copy), ``gpus`` and ``mode`` for the record.
    """

    def __init__(
        self,
        cpu: BinaryIndex,
        searcher: Any,
        *,
        gpus: Sequence[int],
        mode: str,
        resources: list | None = None,
    ) -> None:
        if cpu.index_type != "flat":
            raise HashretError(
                f"multi-GPU search needs a flat index; this one is {cpu.index_type} "
                "(FAISS has GPU binary search for flat only); rebuild with --type flat"
            )
        if cpu.device != "cpu":
            raise HashretError("the CPU part of a multi-GPU index must be on device cpu")
        if int(searcher.ntotal) != cpu.ntotal:
            raise HashretError(
                f"the GPU copy holds {searcher.ntotal} codes, the index {cpu.ntotal}"
            )
        self._cpu = cpu
        self._searcher = searcher
        self._resources = resources or []
        self.gpus = list(gpus)
        self.mode = _check_mode(mode)

    @classmethod
    def build(
        cls,
        codes: np.ndarray,
        bits: int,
        *,
        gpus: Sequence[int] | None = None,
        mode: str = "shard",
        model_fingerprint: str | None = None,
    ) -> MultiGpuBinaryIndex:
        """An exact index over ``codes`` uint8 (N, ceil(bits/8)) on ``gpus`` (None: all)."""
        _check_mode(mode)
        chosen = resolve_gpus(gpus)
        cpu = BinaryIndex.build(codes, bits, "flat", model_fingerprint=model_fingerprint)
        flat = _faiss().IndexBinaryFlat(8 * cpu.padded_bytes)
        flat.add(pad_codes(check_codes(codes, bits, cpu.padded_bytes), cpu.padded_bytes))
        searcher, resources = clone_flat_to_gpus(flat, chosen, mode)
        return cls(cpu, searcher, gpus=chosen, mode=mode, resources=resources)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        gpus: Sequence[int] | None = None,
        mode: str = "shard",
    ) -> MultiGpuBinaryIndex:
        """A flat index saved by :meth:`BinaryIndex.save`, searched on ``gpus`` (None: all)."""
        _check_mode(mode)
        chosen = resolve_gpus(gpus)
        cpu = BinaryIndex.load(path)  # checks the file against its record
        if cpu.index_type != "flat":
            raise HashretError(
                f"{path} is a {cpu.index_type} index; multi-GPU search needs a flat one "
                "(FAISS has GPU binary search for flat only): rebuild it with --type flat"
            )
        flat = _faiss().read_index_binary(str(path))
        searcher, resources = clone_flat_to_gpus(flat, chosen, mode)
        del flat  # the GPUs and the checked CPU index hold the codes now
        return cls(cpu, searcher, gpus=chosen, mode=mode, resources=resources)

    # -- properties -------------------------------------------------------------------------

    bits = _FromCpu()  #: code length in bits
    ntotal = _FromCpu()  #: number of database codes
    padded_bytes = _FromCpu()  #: bytes per code inside the FAISS index
    model_fingerprint = _FromCpu()  #: the model that made the codes, or None

    @property
    def cpu_index(self) -> BinaryIndex:
        """The CPU copy (range search, saving)."""
        return self._cpu

    def __repr__(self) -> str:
        shown = f"bits={self.bits}, ntotal={self.ntotal}, mode={self.mode!r}, gpus={self.gpus}"
        return f"MultiGpuBinaryIndex({shown})"

    # -- searching --------------------------------------------------------------------------

    def search(self, xq: np.ndarray, k: int, *, exact_ties: bool = True) -> SearchResult:
        """The k nearest codes of each query ``xq`` uint8 (nq, ceil(bits/8)).

        Same contract as :meth:`BinaryIndex.search`: ordered by (distance, row), cut tie
        groups keep their lowest rows, k <= 2048 (FAISS's GPU limit). The repair of cut tie
        groups scans the whole database on the CPU for each such query; ``exact_ties=False``
        skips it (which rows of a cut tie group come back is then up to FAISS), for large
        databases where that scan would cost more than the GPU search.
        """
        xq, kk = self._cpu._search_input(xq, k, on_gpu=True)
        if kk == 0 or len(xq) == 0:
            return SearchResult.empty(len(xq), kk)
        probe = min(kk + 1, self.ntotal, GPU_MAX_K)
        D, I = self._searcher.search(xq, probe)
        D, I = order_rows(np.asarray(D), np.asarray(I))
        cut = cut_tie_groups(D, I, kk, self.ntotal)
        D = np.ascontiguousarray(D[:, :kk], dtype=np.int32)
        I = np.ascontiguousarray(I[:, :kk], dtype=np.int64)
        queries = np.flatnonzero(cut) if exact_ties else np.zeros(0, dtype=np.int64)
        if len(queries):
            last = D[queries, kk - 1]
            for d in np.unique(last):
                group = queries[last == d]
                # Every row within distance d, ordered by (distance, row): its first k are
                # the answer (at least k exist, the GPUs found them).
                for q, (dists, rows) in zip(
                    group, self._cpu.range_search(xq[group], int(d), top=kk), strict=True
                ):
                    D[q, : len(rows)], I[q, : len(rows)] = dists, rows
        return SearchResult.from_ordered(D, I)

    def range_search(
        self, xq: np.ndarray, radius: int, top: int | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every code within Hamming distance <= ``radius``; on the CPU copy (see
        :meth:`BinaryIndex.range_search`)."""
        return self._cpu.range_search(xq, radius, top=top)


__all__ = [
    "MULTI_GPU_MODES",
    "MultiGpuBinaryIndex",
    "clone_flat_to_gpus",
    "resolve_gpus",
    "visible_gpus",
]
