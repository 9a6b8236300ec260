"""Train every hashing method with one command line and print docs/results.md's table.

    python scripts/compare_methods.py --workdir runs-digits -- \\
        --dataset digits --backbone tiny --bits 32
    python scripts/compare_methods.py --workdir runs-cub -- --dataset cub --data-root cub25 \\
        --backbone resnet18 --no-pretrained --image-size 112 --bits 48 --epochs 30 --eval-every 5

Everything after ``--`` goes to ``hashret train`` unchanged; each method trains in its own run
(``<prefix>-<method>``) with ``--method <method>`` added, then ``hashret eval --json`` scores
the best model's codes. A run that exists already is evaluated again, not retrained
(``--retrain`` removes it first), so a table can be rebuilt after the fact. Runs trained with
``--unseen-classes`` add a second table: seen@seen, unseen@unseen and unseen@all (tie-aware,
with bounds). Progress on stderr, the markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("triplet", "orthohash", "csq", "dpn", "greedyhash", "dsh", "dpsh", "hashnet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="where the runs go")
    parser.add_argument("--prefix", default="cmp", help="run names: <prefix>-<method>")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument("--retrain", action="store_true", help="train again over old runs")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- hashret train options")
    args = parser.parse_args()
    train_args = [a for a in args.train_args if a != "--"]
    rows = []
    for method in args.methods.split(","):
        run = f"{args.prefix}-{method}"
        run_dir = args.workdir / run
        wall = None
        if args.retrain and run_dir.exists():
            shutil.rmtree(run_dir)
        if not (run_dir / "summary.json").exists():
            command = ["hashret", "train", *train_args, "--method", method, "--run", run]
            command += ["--workdir", str(args.workdir), "--quiet"]
            print(" ".join(command), file=sys.stderr, flush=True)
            start = time.perf_counter()
            subprocess.run(command, check=True)
            wall = time.perf_counter() - start
        summary = json.loads((run_dir / "summary.json").read_text())
        report = json.loads(
            subprocess.run(
                ["hashret", "eval", "--run", run, "--workdir", str(args.workdir), "--json"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        rows.append((method, summary, report, wall))
        print(f"{method}: test mAP {report.get('map')}", file=sys.stderr, flush=True)
    print(
        "| method | best val mAP (epoch) | test mAP (tie-aware) | bounds | index order | "
        "effective bits | distinct codes | largest bucket | wall time |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for method, summary, report, wall in rows:
        stats = report.get("code_stats") or {}
        bucket = stats.get("largest_bucket_share")
        print(
            f"| {method} | {_f(summary.get('best_val_map'))} ({summary.get('best_epoch')}) | "
            f"{_f(report.get('map'))} | {_f(report.get('map_pessimistic'))} .. "
            f"{_f(report.get('map_optimistic'))} | {_f(report.get('map_index_order'))} | "
            f"{_f(stats.get('effective_bits'), 1)} of {report.get('bits', '?')} | "
            f"{stats.get('distinct_codes', '-')} of {stats.get('n_codes', '-')} | "
            f"{'-' if bucket is None else f'{bucket:.1%}'} | "
            f"{'-' if wall is None else f'{wall:.0f} s'} |"
        )
    unseen = [(method, report) for method, _, report, _ in rows if "unseen@unseen" in report]
    if unseen:
        protocol = ("seen@seen", "unseen@unseen", "unseen@all")
        print(f"\nUnseen classes: {unseen[0][1].get('unseen_classes')}\n")
        print("| method | " + " | ".join(protocol) + " |")
        print("| --- |" + " --- |" * len(protocol))
        for method, report in unseen:
            cells = []
            for name in protocol:
                figure = report[name]
                cells.append(
                    f"{_f(figure.get('map'))} ({_f(figure.get('map_pessimistic'))} .. "
                    f"{_f(figure.get('map_optimistic'))})"
                )
            print(f"| {method} | " + " | ".join(cells) + " |")


def _f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
