"""Evaluator benchmark: hashret's evaluator side by side with two baselines, in one run.

    python benchmarks/bench_eval.py                  # every case below (a few minutes)
    python benchmarks/bench_eval.py --classes 100    # case (b) with 100 classes only
    python benchmarks/bench_eval.py --quick          # 1,000 queries in case (b), a smoke test

(a) CUB size: 5,794 queries x 5,994 database codes, 48 bits, 200 classes, against a plain
    per-query evaluator (distances by a float matrix product, a stable argsort per query, AP
    from the cumulative hits), the way public deep-hashing evaluators work. Target: >= 10x.
    Its mAP must equal hashret's index-order mAP (same tie rule), which the script checks.
(b) 10,000 queries x 1,000,000 database codes, 64 bits, against a FAISS IndexBinaryFlat k=1
    search over the same codes: a floor, since it does the same popcounts and keeps almost
    nothing. With 1,000 classes (sparse relevance: 1,000 relevant items per query), 100 (dense:
    10,000, like CIFAR-10's database per class) and 10 (very dense: 100,000). Target: <= 2x its
    time for 1,000 and 100 classes, peak memory < 2 GB.
(c) NUS-WIDE size, multi-label: 2,100 queries x 193,734 database codes, 64 bits, 21 labels
    (each item one or more; relevant = a shared label, about half the database per query),
    against the same FAISS floor, with the portable path beside it (no target).

hashret computes everything ``hashret eval --top-k 100,1000`` reports: tie-aware mAP and its
bounds, index-order mAP, mAP@k / precision@k / recall@k, precision within radius 2 and the PR
curve. Codes are synthetic but clustered like trained codes (each class has a centre code;
items flip each bit with probability 0.2), so distances tie as they do in practice.

Each timing is the best of several runs taken in alternation with its baseline, because the
development machine (2 cores) is shared with other processes. Prints a markdown table on
stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
from _common import log

from hashcli.index.kernels import FaissKernels
from hashcli.runtime import usable_cores
from hashcli.workflows.evaluate import evaluate_codes as evaluate
from hashcli.workflows.evaluate import evaluation_kernels


def clustered_codes(
    rng: np.random.Generator, centres: np.ndarray, labels: np.ndarray, flip: float
) -> np.ndarray:
    """Packed codes: each item is its class centre with each bit flipped with prob. ``flip``."""
    bits = centres.shape[1]
    out = np.empty((len(labels), (bits + 7) // 8), dtype=np.uint8)
    for start in range(0, len(labels), 100_000):  # in slices, to keep the bool arrays small
        stop = min(start + 100_000, len(labels))
        noise = rng.random((stop - start, bits)) < flip
        out[start:stop] = np.packbits(centres[labels[start:stop]] ^ noise, axis=1)
    return out


def make_case(rng: np.random.Generator, nq: int, nd: int, bits: int, classes: int):
    centres = rng.random((classes, bits)) < 0.5
    query_labels = rng.integers(0, classes, nq)
    database_labels = rng.integers(0, classes, nd)
    return (
        clustered_codes(rng, centres, query_labels, 0.2),
        query_labels,
        clustered_codes(rng, centres, database_labels, 0.2),
        database_labels,
    )


def argsort_map(q_codes, q_labels, d_codes, d_labels, bits: int) -> float:
    """A plain per-query evaluator: Hamming distances from +-1 inner products, then a stable
    argsort of the whole database for every query (ties in index order)."""
    q_pm = np.unpackbits(q_codes, axis=1, count=bits).astype(np.float32) * 2 - 1
    d_pm = np.unpackbits(d_codes, axis=1, count=bits).astype(np.float32) * 2 - 1
    aps = []
    for i in range(len(q_codes)):
        hamming = 0.5 * (bits - d_pm @ q_pm[i])
        order = np.argsort(hamming, kind="stable")
        relevant = d_labels[order] == q_labels[i]
        total = int(relevant.sum())
        if total == 0:
            continue
        places = np.flatnonzero(relevant) + 1
        aps.append(np.mean(np.arange(1, total + 1) / places))
    return float(np.mean(aps))


def best_of(runs: int, *functions: Callable[[], object]) -> list[tuple[float, object]]:
    """Run the functions in alternation ``runs`` times; best time and last result of each."""
    best = [(float("inf"), None) for _ in functions]
    for _ in range(runs):
        for i, fn in enumerate(functions):
            start = time.perf_counter()
            result = fn()
            elapsed = time.perf_counter() - start
            best[i] = (min(best[i][0], elapsed), result)
    return best


def ours(case, bits: int) -> Callable[[], object]:
    return lambda: evaluate(*case, bits=bits, top_k=[100, 1000])


def bench_cub(rng: np.random.Generator, rows: list[str]) -> None:
    nq, nd, bits, classes = 5794, 5994, 48, 200
    log(f"(a) CUB size: {nq:,} x {nd:,}, {bits} bits, {classes} classes")
    case = make_case(rng, nq, nd, bits, classes)
    ours(case, bits)()  # warm-up: imports, FAISS loading
    (t_base, base_map), (t_ours, report) = best_of(
        1, lambda: argsort_map(*case, bits), ours(case, bits)
    )
    (t_ours2, report) = best_of(3, ours(case, bits))[0]
    t_ours = min(t_ours, t_ours2)
    if abs(base_map - report.map_index_order) > 1e-12:
        raise SystemExit(
            f"index-order mAP differs from the argsort evaluator: {report.map_index_order!r} "
            f"vs {base_map!r}"
        )
    rows.append(
        f"| (a) CUB size: {nq:,} x {nd:,}, {bits} bits | per-query argsort evaluator "
        f"| {t_base:.2f} s | {t_ours:.3f} s | {t_base / t_ours:.0f}x faster (target >= 10x) "
        f"| mAP {report.map:.4f} (bounds {report.map_pessimistic:.4f}-"
        f"{report.map_optimistic:.4f}); index order {report.map_index_order:.4f} = argsort |"
    )


def bench_large(rng: np.random.Generator, rows: list[str], nq: int, classes: int) -> None:
    import faiss

    nd, bits = 1_000_000, 64
    log(f"(b) {nq:,} x {nd:,}, {bits} bits, {classes:,} classes")
    case = make_case(rng, nq, nd, bits, classes)
    index = faiss.IndexBinaryFlat(bits)
    index.add(case[2])
    index.search(case[0][:100], 1)  # warm-up

    (t_faiss, _), (t_ours, report) = best_of(2, lambda: index.search(case[0], 1), ours(case, bits))
    # Peak memory in a separate, untimed run: tracemalloc hooks every allocation (numpy's too,
    # taking the GIL for each), which slowed the 2-thread evaluator by a third or more.
    tracemalloc.start()
    evaluate(*case, bits=bits, top_k=[100, 1000])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    rows.append(
        f"| (b) {nq:,} x {nd:,}, {bits} bits, {classes:,} classes | FAISS IndexBinaryFlat k=1 "
        f"| {t_faiss:.2f} s | {t_ours:.2f} s | {t_ours / t_faiss:.2f}x its time"
        f"{' (target <= 2x)' if classes >= 100 else ''} "
        f"| mAP {report.map:.4f}; evaluator allocations peak {peak / 2**20:.0f} MiB, "
        f"whole process max RSS {rss:.0f} MiB |"
    )

    # The same on one core, on the first 1,000 queries: FAISS's OpenMP threads wait for each
    # other at every database block, so other processes on the machine slow it down more than
    # hashret's independent worker threads; one thread each compares the work per core.
    # Beside it, the portable path (numpy passes over FAISS's loops, used without numba): its
    # time, and its numbers, which must equal the compiled kernels'.
    sub = (case[0][:1000], case[1][:1000], case[2], case[3])
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    kernels = evaluation_kernels()
    try:
        (t_faiss1, _), (t_ours1, compiled), (t_portable, portable) = best_of(
            2,
            lambda: index.search(sub[0], 1),
            lambda: evaluate(*sub, bits=bits, top_k=[100, 1000], threads=1),
            lambda: evaluate_with(*sub, bits, FaissKernels()),
        )
    finally:
        faiss.omp_set_num_threads(threads)
    a, b = compiled.to_dict(), portable.to_dict()
    for key in ("map", "map_index_order", "map_pessimistic", "map_optimistic"):
        if abs(a[key] - b[key]) > 1e-12:
            raise SystemExit(f"{key} differs between kernels: {a[key]!r} vs {b[key]!r}")
    for key in ("map_at_k_hashnet", "map_at_k_hashnet_index_order"):
        for k in a[key]:
            if abs(a[key][k] - b[key][k]) > 1e-12:
                raise SystemExit(f"{key}[{k}] differs between kernels")
    rows.append(
        f"| (b') {classes:,} classes, first 1,000 queries, one thread each "
        f"| FAISS IndexBinaryFlat k=1 "
        f"| {t_faiss1:.2f} s | {t_ours1:.2f} s | {t_ours1 / t_faiss1:.2f}x its time "
        f"| {kernels.name} kernels; the portable path (numpy passes over FAISS's loops) "
        f"{t_portable:.2f} s = {t_portable / t_faiss1:.2f}x, same numbers |"
    )


def evaluate_with(
    q_codes, q_labels, d_codes, d_labels, bits: int, kernels, threads: int | None = 1
) -> object:
    from hashcli.metrics import evaluate as evaluate_plain

    return evaluate_plain(
        q_codes,
        q_labels,
        d_codes,
        d_labels,
        bits,
        top_k=[100, 1000],
        threads=threads,
        kernels=kernels,
    )


def bench_multi_label(rng: np.random.Generator, rows: list[str]) -> None:
    import faiss

    nq, nd, bits, labels = 2100, 193_734, 64, 21
    log(f"(c) {nq:,} x {nd:,}, {bits} bits, {labels} labels, multi-label")
    centres = rng.random((labels, bits)) < 0.5

    def items(n: int) -> tuple[np.ndarray, np.ndarray]:
        multi_hot = rng.random((n, labels)) < 0.12
        multi_hot[np.arange(n), rng.integers(0, labels, n)] = True
        # the code of an item: the centre of one of its labels, bits flipped with prob. 0.2
        own = np.array([rng.choice(np.flatnonzero(row)) for row in multi_hot])
        return clustered_codes(rng, centres, own, 0.2), multi_hot

    (q_codes, q_labels), (d_codes, d_labels) = items(nq), items(nd)
    case = (q_codes, q_labels, d_codes, d_labels)
    index = faiss.IndexBinaryFlat(bits)
    index.add(d_codes)
    index.search(q_codes[:100], 1)  # warm-up
    ours(case, bits)()  # warm-up
    (t_faiss, _), (t_ours, report) = best_of(2, lambda: index.search(q_codes, 1), ours(case, bits))
    start = time.perf_counter()
    portable = evaluate_with(*case, bits, FaissKernels(), threads=None)
    t_portable = time.perf_counter() - start
    if abs(portable.map_index_order - report.map_index_order) > 1e-12:
        raise SystemExit("index-order mAP differs between kernels")
    share = float((q_labels[:100].astype(np.uint8) @ d_labels.T.astype(np.uint8) > 0).mean())
    rows.append(
        f"| (c) {nq:,} x {nd:,}, {bits} bits, {labels} labels, multi-label "
        f"| FAISS IndexBinaryFlat k=1 | {t_faiss:.2f} s | {t_ours:.2f} s "
        f"| {t_ours / t_faiss:.2f}x its time | mAP {report.map:.4f}, {share:.0%} of the database "
        f"relevant per query; the portable path {t_portable:.2f} s = "
        f"{t_portable / t_faiss:.1f}x, same numbers |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 queries in case (b)")
    parser.add_argument(
        "--classes", default="1000,100,10", help="case (b)'s class counts, comma-separated"
    )
    parser.add_argument("--no-multi-label", action="store_true", help="skip case (c)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows: list[str] = []
    bench_cub(rng, rows)
    for classes in args.classes.split(","):
        bench_large(rng, rows, 1000 if args.quick else 10_000, int(classes))
    if not args.no_multi_label:
        bench_multi_label(np.random.default_rng(1), rows)
    import faiss

    print(
        f"Evaluator benchmark ({usable_cores()} threads for hashret, "
        f"{faiss.omp_get_max_threads()} OpenMP threads for FAISS)\n"
    )
    print("| case | baseline | baseline time | hashret eval | result | notes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
