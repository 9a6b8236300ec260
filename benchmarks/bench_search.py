"""Search benchmark: hashret's FAISS binary indexes against a numpy brute force.

    python benchmarks/bench_search.py            # 1,000,000 random 64-bit codes (a few minutes)
    python benchmarks/bench_search.py --quick    # 100,000 codes, for a smoke test
    python benchmarks/bench_search.py --sections padding   # one part only
    python benchmarks/bench_search.py --sections query     # `hashret query` end to end only

Prints markdown tables on stdout (progress on stderr):

* flat (exact) search: one query at a time and per query in batches of 1,000, next to a numpy
  XOR-popcount brute force over the same codes that follows the same (distance, row) rule; the
  answers are checked equal;
* the cost of enforcing the tie rule by range search (the path used where FAISS does not keep
  the lowest rows of a cut tie group) next to the default flat path;
* hnsw and ivf: build time, latency and recall@10 against flat;
* 16- and 48-bit codes with and without the zero padding to 4 / 8 bytes;
* `hashret query` on one image, end to end in a cold process, split into start-up, imports,
  model load, index load, encode and search (a digits run is trained first, about 10 s).

Timings: one query, the median over 100 queries, best of three rounds; batch, the best of five
runs (one for the slow brute force), because the development machine (2 cores) is shared with
other processes that stall FAISS's OpenMP threads in bursts.
"""

# ruff: noqa: E741  (D, I: FAISS's own names for distances and ids)

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import log

from hashcli.index import BinaryIndex
from hashcli.index import binary_index as binary_index_module

K = 10
BATCH = 1000


def random_codes(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    return rng.integers(0, 256, (n, nbytes), dtype=np.uint8)


def single_query_ms(
    search: Callable[[np.ndarray], object], xq: np.ndarray, rounds: int = 3
) -> float:
    """Searching each query of ``xq`` on its own: the median per round, the best round.

    Other processes on a shared machine stall FAISS's OpenMP threads in bursts; the best of a
    few rounds is the figure a quiet machine gives.
    """
    search(xq[:1])  # warm up
    medians = []
    for _ in range(rounds):
        times = []
        for q in range(len(xq)):
            start = time.perf_counter()
            search(xq[q : q + 1])
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times))
    return 1e3 * min(medians)


def batch_ms_per_query(
    search: Callable[[np.ndarray], object], xq: np.ndarray, runs: int = 5
) -> float:
    """Best of ``runs`` searches of the whole batch, per query."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        search(xq)
        best = min(best, time.perf_counter() - start)
    return 1e3 * best / len(xq)


class BruteForce:
    """numpy XOR-popcount over all codes, (distance, row) order: the reference to beat."""

    def __init__(self, xb: np.ndarray) -> None:
        self.words = xb.view(np.uint64).ravel() if xb.shape[1] == 8 else None
        self.xb = xb

    def distances(self, xq: np.ndarray) -> np.ndarray:
        if self.words is not None:  # one uint64 word per code: XOR + popcount, no byte loop
            return np.bitwise_count(self.words[None, :] ^ xq.view(np.uint64))
        return np.bitwise_count(self.xb[None, :, :] ^ xq[:, None, :]).sum(axis=2, dtype=np.int32)

    def search(self, xq: np.ndarray, k: int = K, block: int = 8) -> tuple[np.ndarray, np.ndarray]:
        D = np.empty((len(xq), k), dtype=np.int32)
        I = np.empty((len(xq), k), dtype=np.int64)
        for s in range(0, len(xq), block):
            dist = self.distances(xq[s : s + block])
            kth = np.partition(dist, k - 1, axis=1)[:, k - 1]
            for j, row in enumerate(dist):
                cand = np.flatnonzero(row <= kth[j])  # whole tie group at the k-th distance
                cand = cand[np.lexsort((cand, row[cand]))][:k]
                D[s + j], I[s + j] = row[cand], cand
        return D, I


def recall_at_k(approx_d: np.ndarray, exact_d: np.ndarray) -> float:
    """Tie-aware recall@k: an answer counts when it is as near as the k-th exact neighbour.

    Per query: answers nearer than the k-th exact distance d_k are all true neighbours; answers
    at d_k count up to the number of exact neighbours at d_k (any member of that tie group is
    a valid k-th neighbour). Missing answers (distance -1) count as misses.
    """
    hits = 0
    for a, e in zip(approx_d, exact_d, strict=True):
        a = a[a >= 0]
        dk = e[-1]
        hits += int((a < dk).sum()) + min(int((a == dk).sum()), int((e == dk).sum()))
    return hits / exact_d.size


def bench_flat(xb: np.ndarray, xq1: np.ndarray, xq: np.ndarray, brute_queries: int) -> list[str]:
    log("flat: build")
    start = time.perf_counter()
    index = BinaryIndex.build(xb, 64)
    build_s = time.perf_counter() - start
    brute = BruteForce(xb)

    log("flat: check against brute force")
    D, I = brute.search(xq[:brute_queries])
    result = index.search(xq[:brute_queries], K)
    assert np.array_equal(result.rows, I) and np.array_equal(result.distances, D)

    log("flat: time")
    flat_one = single_query_ms(lambda q: index.search(q, K), xq1)
    flat_batch = batch_ms_per_query(lambda q: index.search(q, K), xq)
    brute_one = single_query_ms(lambda q: brute.search(q), xq1[:20], rounds=1)
    brute_batch = batch_ms_per_query(lambda q: brute.search(q), xq[:brute_queries], runs=1)

    # The range-search tie repair, forced on flat to show what it costs where it is needed.
    log("flat: time with the range-search tie repair")
    saved = binary_index_module._flat_keeps_lowest_rows
    binary_index_module._flat_keeps_lowest_rows = lambda code_size: False
    try:
        repaired = index.search(xq[:brute_queries], K)
        assert np.array_equal(repaired.rows, I)
        repair_one = single_query_ms(lambda q: index.search(q, K), xq1)
        repair_batch = batch_ms_per_query(lambda q: index.search(q, K), xq)
    finally:
        binary_index_module._flat_keeps_lowest_rows = saved
    probe = index.search(xq, K + 1).distances
    cut = float(np.mean(probe[:, K] == probe[:, K - 1]))

    return [
        f"Flat (exact), {len(xb):,} random 64-bit codes, k={K}; build {build_s:.2f} s.",
        "",
        "| search | one query (ms) | per query, batch of 1,000 (ms) |",
        "|---|---:|---:|",
        f"| numpy brute force (XOR + popcount) | {brute_one:.2f} | {brute_batch:.2f} |",
        f"| hashret flat | {flat_one:.3f} | {flat_batch:.3f} |",
        f"| speed-up | {brute_one / flat_one:.1f}x | {brute_batch / flat_batch:.1f}x |",
        f"| hashret flat, tie rule by range search | {repair_one:.3f} | {repair_batch:.3f} |",
        "",
        f"Brute force batch timed on {brute_queries} queries; its answers equal flat's. "
        f"{cut:.0%} of queries have a tie group cut at the {K}th distance.",
    ]


def bench_approximate(xb: np.ndarray, xq1: np.ndarray, xq: np.ndarray) -> list[str]:
    exact_d = BinaryIndex.build(xb, 64).search(xq, K).distances
    lines = [
        f"Approximate indexes, same {len(xb):,} codes, recall@{K} against flat (tie-aware).",
        "",
        "| index | parameters | build (s) | one query (ms) | per query, batch (ms) | recall@10 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    configs = [
        ("hnsw", {"m": 32, "ef_construction": 40}, [{"ef_search": 64}, {"ef_search": 256}]),
        ("ivf", {"nlist": 1024}, [{"nprobe": 16}, {"nprobe": 64}]),
    ]
    for index_type, build_params, search_params in configs:
        log(f"{index_type}: build")
        start = time.perf_counter()
        index = BinaryIndex.build(xb, 64, index_type, params=build_params)
        build_s = time.perf_counter() - start
        for sp in search_params:
            log(f"{index_type}: search {sp}")
            index.set_search_params(**sp)
            one = single_query_ms(lambda q, ix=index: ix.search(q, K), xq1)
            batch = batch_ms_per_query(lambda q, ix=index: ix.search(q, K), xq)
            recall = recall_at_k(index.search(xq, K).distances, exact_d)
            shown = ", ".join(f"{k}={v}" for k, v in index.params.items())
            row = f"| {index_type} | {shown} | {build_s:.1f} | {one:.3f} | {batch:.3f} |"
            lines.append(f"{row} {recall:.3f} |")
    return lines


def bench_padding(n: int, rng: np.random.Generator) -> list[str]:
    import faiss  # the unpadded baseline is FAISS itself, outside hashret

    lines = [
        f"Flat on {n:,} random codes, k={K}: FAISS on the codes as they are vs hashret's index,"
        " which pads them with zero bytes.",
        "",
        "| bits | stored bytes | search | one query (ms) | per query, batch (ms) |",
        "|---:|---:|---|---:|---:|",
    ]
    for bits in (16, 48, 64):
        nbytes = bits // 8
        xb = random_codes(rng, n, nbytes)
        xq = random_codes(rng, BATCH, nbytes)
        raw = faiss.IndexBinaryFlat(bits)
        raw.add(xb)
        index = BinaryIndex.build(xb, bits)
        log(f"padding: {bits} bits")
        assert np.array_equal(raw.search(xq[:50], K)[0], index.search(xq[:50], K).distances)
        for name, stored, search in [
            ("FAISS, unpadded", nbytes, lambda q, ix=raw: ix.search(q, K)),
            ("hashret (padded)", index.padded_bytes, lambda q, ix=index: ix.search(q, K)),
        ]:
            one = single_query_ms(search, xq[:100])
            batch = batch_ms_per_query(search, xq)
            lines.append(f"| {bits} | {stored} | {name} | {one:.3f} | {batch:.3f} |")
    return lines


QUERY_ROUNDS = 5
_PART = re.compile(r"\b(imports|model|index|encode|search|total) ([\d.]+) (s|ms)\b")


def _parts(stderr: str) -> dict[str, float]:
    """Seconds per part from the timing line `hashret query` prints on stderr."""
    line = " ".join(stderr.split())
    line = line[line.rindex("Searched ") :] if "Searched " in line else ""
    parts = {k: float(v) / (1e3 if unit == "ms" else 1) for k, v, unit in _PART.findall(line)}
    if set(parts) != {"imports", "model", "index", "encode", "search", "total"}:
        raise RuntimeError(f"no timing line in the output of hashret query:\n{stderr}")
    return parts


def _tie_check_seconds() -> float:
    """FAISS's one-off tie-order check of a flat search (once per process and code size)."""
    code = (
        "import time; from hashcli.index import binary_index as b; b._faiss(); "
        "t = time.perf_counter(); b._flat_keeps_lowest_rows(4); print(time.perf_counter() - t)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(proc.stdout)


def _hashret(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    """Run the real console script in a fresh process; (wall seconds, the process)."""
    exe = Path(sys.executable).parent / "hashret"
    start = time.perf_counter()
    proc = subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"hashret {' '.join(args)} failed:\n{proc.stderr}")
    return wall, proc


def _torch_exit_seconds() -> float:
    """Wall time of a process that imports torch and torchvision, less the import itself and
    a bare interpreter's start and exit: what tearing those libraries down costs."""
    code = "import sys, time; t = time.perf_counter(); import torch, torchvision; "
    code += "sys.stdout.write(str(time.perf_counter() - t))"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    bare = time.perf_counter() - start
    return wall - float(proc.stdout) - bare


def bench_query_end_to_end() -> list[str]:
    """`hashret query` on one image, each time in a cold process, split into its parts.

    A run is trained first in a temporary workdir (`hashret train --dataset digits --backbone
    tiny --bits 32 --epochs 1`, not timed). Then, QUERY_ROUNDS times after one warm-up (so
    the files are in the page cache: "cold" is the process, not the disk), `hashret query
    IMAGE --top 20` on a test-split digit. The parts come from the timing line the command
    prints on stderr (the library's own clock): imports (torch, torchvision, the model code),
    model load (checkpoint read, weights, fingerprint), index (FAISS index and code file read),
    encode (one image), search. Start-up is a cold `hashret --version` (interpreter, the CLI's
    own imports, argument parsing), timed beside each query; "output and exit" is the rest of
    the wall time. Medians over the rounds.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hashret-bench-") as tmp:
        root = Path(tmp)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HASHRET_")},
            "HASHRET_WORKDIR": str(root / "runs"),
            "HASHRET_DATA": str(root / "data"),
        }
        log("query: training a digits run (tiny, 32 bits, 1 epoch)")
        train = ["train", "--dataset", "digits", "--backbone", "tiny", "--bits", "32"]
        _hashret([*train, "--epochs", "1", "--quiet"], env)
        image = sorted((root / "data" / "digits" / "test").rglob("*.png"))[0]
        query = ["query", str(image), "--top", "20"]
        _hashret(query, env)  # warm-up: page cache, FAISS's one-off checks are per process
        rows: dict[str, list[float]] = {
            k: []
            for k in (
                "version",
                "wall",
                "imports",
                "model",
                "index",
                "encode",
                "search",
                "exit",
                "torch_exit",
                "tie_check",
            )
        }
        for r in range(QUERY_ROUNDS):
            log(f"query: round {r + 1}/{QUERY_ROUNDS}")
            rows["version"].append(_hashret(["--version"], env)[0])
            wall, proc = _hashret(query, env)
            parts = _parts(proc.stderr)
            rows["wall"].append(wall)
            rows["exit"].append(wall - parts["total"] - rows["version"][-1])
            rows["torch_exit"].append(_torch_exit_seconds())
            for key in ("imports", "model", "index", "encode"):
                rows[key].append(parts[key])
            rows["search"].append(parts["search"])
            rows["tie_check"].append(_tie_check_seconds())
        ntotal = re.search(r"\(flat, ([\d,]+) codes", " ".join(proc.stderr.split()))
    med = {k: statistics.median(v) for k, v in rows.items()}
    share = {k: med[k] / med["wall"] for k in med}
    order = [
        ("start-up: interpreter, CLI imports, parsing (= `hashret --version`)", "version"),
        ("imports: torch, torchvision, model code", "imports"),
        ("model load (checkpoint, weights, fingerprint)", "model"),
        ("index load (FAISS index + code file)", "index"),
        ("encode (one image)", "encode"),
        ("search (flat, k=20)", "search"),
        ("output and exit (interpreter shutdown with torch loaded)", "exit"),
    ]
    lines = [
        f"`hashret query IMAGE --top 20`, one digit image, cold process, medians of "
        f"{QUERY_ROUNDS} runs; run: digits, tiny backbone, 32 bits, 1 epoch; database "
        f"{ntotal.group(1) if ntotal else '?'} codes.",
        "",
        "| part | ms | share |",
        "|---|---:|---:|",
    ]
    for label, key in order:
        lines.append(f"| {label} | {1e3 * med[key]:.1f} | {share[key]:.0%} |")
    lines += [
        f"| **total (wall)** | **{1e3 * med['wall']:.0f}** | 100% |",
        "",
        f"The search includes the flat index's one-off check of FAISS's tie order "
        f"(`_flat_keeps_lowest_rows`, once per process): {1e3 * med['tie_check']:.1f} ms of it. "
        f"The exit is mostly the interpreter tearing down torch and torchvision: "
        f"`python -c 'import torch, torchvision'` spends {1e3 * med['torch_exit']:.0f} ms after "
        "its imports.",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 codes instead of 1,000,000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sections",
        default="flat,approximate,padding,query",
        help="comma-separated subset of flat, approximate, padding, query (default: all)",
    )
    args = parser.parse_args(argv)
    chosen = set(args.sections.split(","))
    unknown = chosen - {"flat", "approximate", "padding", "query"}
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    n = 100_000 if args.quick else 1_000_000
    rng = np.random.default_rng(args.seed)
    xb = random_codes(rng, n, 8)
    xq = random_codes(rng, BATCH, 8)
    xq1 = xq[:100]

    import faiss

    started = time.perf_counter()
    sections = [
        f"Machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
        f"faiss {faiss.__version__}, numpy {np.__version__}, {faiss.omp_get_max_threads()} "
        "OpenMP threads.",
        "",
        *(bench_flat(xb, xq1, xq, brute_queries=100) + [""] if "flat" in chosen else []),
        *(bench_approximate(xb, xq1, xq) + [""] if "approximate" in chosen else []),
        *(bench_padding(n, rng) + [""] if "padding" in chosen else []),
        *(bench_query_end_to_end() + [""] if "query" in chosen else []),
        f"Total {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f} "
        "at the end.",
    ]
    print("\n".join(sections))


if __name__ == "__main__":
    main()
