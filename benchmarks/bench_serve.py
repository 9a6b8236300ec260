"""`hashret serve` under load, on 127.0.0.1 only, bounded in requests and time.

    python benchmarks/bench_serve.py --run runs/cub-48       # a trained run
    python benchmarks/bench_serve.py                         # trains a tiny digits run first
    python benchmarks/bench_serve.py --clients 8 --requests 300

Starts `hashret serve` on a free local port, then: (1) one client, searches one after another:
p50 latency, beside a cold `hashret query IMAGE --top 20` process (median of 3), target at
least 20x faster; (2) ``--clients`` concurrent clients, ``--requests`` searches each: zero
errors, p50 / p99 latency, throughput, the batch sizes the server reached (/api/stats); beside
(3) the same image bytes decoded, encoded and searched offline in this process in batches of
``--max-batch`` with the same engine: throughput under load should be at least 0.7x of it.
(2) and (3) alternate ``--rounds`` times and the best throughput of each counts, because the
machines are noisy; errors and latencies count over every round. The clients run in this
process, on the same cores as the server. Markdown on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import load_average, log
from bench_query import query_image, trained_digits_run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_images(run: Path, count: int) -> list[Path]:
    from hashcli.data import load_dataset
    from hashcli.workflows.runs import RunDir

    train = RunDir(run).train_config()
    dataset = load_dataset(train.dataset, train.data_root, val_fraction=train.val_fraction)
    paths = [Path(r.path) for r in dataset.records if r.split == "test"]
    return paths[:count]


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained run folder (default: train one)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="searches per client")
    parser.add_argument("--rounds", type=int, default=3, help="load / offline alternations")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, help="default: the server's")
    parser.add_argument("--batch-workers", type=int, help="default: the server's")
    parser.add_argument("--engine", default="auto")
    args = parser.parse_args()
    total = args.clients * args.requests
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run.resolve() if args.run else trained_digits_run(Path(tmp))
        images = test_images(run, 64)
        payloads = [(p.name, p.read_bytes()) for p in images]
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "hashcli", "serve", "--run", str(run), "--port", str(port)]
            + ["--engine", args.engine, "--max-batch", str(args.max_batch)]
            + (["--max-wait-ms", str(args.max_wait_ms)] if args.max_wait_ms is not None else [])
            + (["--batch-workers", str(args.batch_workers)] if args.batch_workers else [])
            + ["-q"],
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    health = httpx.get(f"{base}/api/health", timeout=2).json()
                    break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.3)
            plan = httpx.get(f"{base}/api/stats").json()
            log(f"serving {health}, {plan['workers']} workers, wait {plan['max_wait_ms']:g} ms")

            # (1) one client, sequential
            client = SearchClient(port)
            for payload in payloads[:5]:
                client.search(payload)  # warm-up
            single = [client.search(payloads[i % len(payloads)]) for i in range(100)]
            client.close()
            cold = []
            for _ in range(3):
                start = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "hashcli", "query", str(query_image(run))]
                    + ["--run", str(run), "--top", "20", "--engine", args.engine, "-q"],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                cold.append(time.perf_counter() - start)

            # (2) and (3), alternately
            from hashcli.workflows.retrieval import open_retriever

            retriever, _ = open_retriever(run, device="cpu", engine=args.engine)
            latencies: list[float] = []
            errors: list[str] = []
            rounds: list[dict[str, float]] = []
            batches: dict[int, int] = {}
            for number in range(args.rounds):
                log(f"round {number + 1} of {args.rounds}")
                before = httpx.get(f"{base}/api/stats").json()["batch_sizes"]
                measured = load(port, payloads, args.clients, args.requests, server.pid)
                after = httpx.get(f"{base}/api/stats").json()["batch_sizes"]
                for size, count in after.items():
                    batches[int(size)] = batches.get(int(size), 0) + count - before.get(size, 0)
                latencies += measured.pop("latencies")
                errors += measured.pop("errors")
                measured.update(offline(retriever, payloads, total, args.max_batch))
                rounds.append(measured)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)

    best = max(rounds, key=lambda r: r["served"])
    best_offline = max(rounds, key=lambda r: r["offline"])
    p50_single, p50_cold = statistics.median(single), statistics.median(cold)
    batches = {k: v for k, v in sorted(batches.items()) if v}
    mean_batch = sum(k * v for k, v in batches.items()) / max(1, sum(batches.values()))
    print(
        f"hashret serve on {run.name} ({health['n_database']:,} codes, {health['bits']} bits, "
        f"{health['engine']} on {health['device']}), --max-batch {args.max_batch} "
        f"--max-wait-ms {plan['max_wait_ms']:g} --batch-workers {plan['workers']}; "
        f"load average {load_average()}, {os.cpu_count()} CPUs\n"
    )
    print("| measure | value | baseline | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| one client, p50 latency (100 searches) | {1e3 * p50_single:.1f} ms | cold "
        f"`hashret query` {p50_cold:.2f} s | {p50_cold / p50_single:.0f}x faster | >= 20x |"
    )
    print(
        f"| {args.rounds} x {args.clients} clients x {args.requests} searches: errors "
        f"| {len(errors)} | | | 0 |"
    )
    print(
        f"| latency p50 / p99 | {1e3 * statistics.median(latencies):.1f} / "
        f"{1e3 * percentile(latencies, 0.99):.1f} ms | | | |"
    )
    print(
        f"| throughput, best of {args.rounds} | {best['served']:.1f} searches/s | offline "
        f"batched decode + encode + search {best_offline['offline']:.1f} images/s "
        f"| {best['served'] / best_offline['offline']:.2f}x | >= 0.7x |"
    )
    print(
        "| throughput per round (load / offline) | "
        + ", ".join(f"{r['served']:.1f} / {r['offline']:.1f}" for r in rounds)
        + " | | "
        + ", ".join(f"{r['served'] / r['offline']:.2f}x" for r in rounds)
        + " | |"
    )
    print(f"| batch sizes reached (size: batches) | {batches} (mean {mean_batch:.1f}) | | | |")
    print(
        f"| CPU time per search, best round | server {1e3 * best['cpu_server'] / total:.1f} ms, "
        f"clients {1e3 * best['cpu_clients'] / total:.1f} ms | offline "
        f"{1e3 * best_offline['cpu_offline'] / total:.1f} ms | | |"
    )
    if errors:
        print(f"\nfirst error: {errors[0]}")


class SearchClient:
    """One keep-alive connection posting searches, each upload's multipart body built once:
    the clients share the server's cores, so they are kept as light as a load generator in C
    (httpx, building each form anew, took 1.0-1.2 ms of CPU a search)."""

    BOUNDARY = "hashret-bench-7d3f0c"

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.bodies: dict[str, bytes] = {}

    def body(self, payload: tuple[str, bytes]) -> bytes:
        name, data = payload
        if name not in self.bodies:
            head = (
                f'--{self.BOUNDARY}\r\nContent-Disposition: form-data; name="image"; '
                f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            )
            self.bodies[name] = head.encode() + data + f"\r\n--{self.BOUNDARY}--\r\n".encode()
        return self.bodies[name]

    def search(self, payload: tuple[str, bytes]) -> float:
        """Seconds one search took; an exception for anything but 200 with a JSON body."""
        body = self.body(payload)
        headers = {"Content-Type": f"multipart/form-data; boundary={self.BOUNDARY}"}
        start = time.perf_counter()
        try:
            self.connection.request("POST", "/api/search?top=20", body, headers)
            response = self.connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()  # a fresh connection for the next search
            raise
        took = time.perf_counter() - start
        if response.status != 200 or not answer.startswith(b"{"):
            raise RuntimeError(f"HTTP {response.status}: {answer[:200]!r}")
        return took

    def close(self) -> None:
        self.connection.close()


def load(port: int, payloads, clients: int, requests: int, server_pid: int) -> dict:
    """``clients`` threads, ``requests`` searches each: throughput, latencies, errors, and the
    CPU time the server and the clients used."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        client = SearchClient(port)
        for _ in range(requests):
            try:
                took = client.search(rng.choice(payloads))
            except Exception as exc:  # counted, not raised: zero is the target
                with lock:
                    errors.append(repr(exc))
                continue
            with lock:
                latencies.append(took)
        client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    cpu_server, cpu_clients = process_cpu(server_pid), time.process_time()
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {
        "served": len(latencies) / wall,
        "cpu_server": process_cpu(server_pid) - cpu_server,
        "cpu_clients": time.process_time() - cpu_clients,
        "latencies": latencies,
        "errors": errors,
    }


def offline(retriever, payloads, total: int, batch: int) -> dict:
    """The same image bytes decoded, encoded and searched in batches of ``batch`` in this
    process (the server decodes every upload, so the baseline decodes every image too)."""
    from hashcli.data.images import decode_image

    start, cpu = time.perf_counter(), time.process_time()
    done = 0
    while done < total:
        part = [
            decode_image(payloads[i % len(payloads)][1])
            for i in range(done, min(done + batch, total))
        ]
        codes = retriever.encode_images(part)
        retriever.describe(codes, retriever.search(codes, k=20), ["x"] * len(part))
        done += len(part)
    return {
        "offline": total / (time.perf_counter() - start),
        "cpu_offline": time.process_time() - cpu,
    }


if __name__ == "__main__":
    main()
