"""Cold `hashret query` with each engine, side by side with a bare `import torch`, in one run.

    python benchmarks/bench_query.py --run runs/cub-48          # a trained run
    python benchmarks/bench_query.py                            # trains a tiny digits run first
    python benchmarks/bench_query.py --run runs/cub-48 --repeats 9 --agreement

Each repetition launches, in turn, `python -c "import torch"`, `hashret query IMAGE --top 20
--engine onnx` and the same with `--engine torch`, each a fresh process (the page cache warm,
as for anyone's second query). Reported: the median wall time of each, and the stages of the
queries: start-up (interpreter, CLI and library imports before the query begins), imports
(torch and torchvision, torch engine only), model, index, encode, search (from the command's
own timings line) and exit (from that line to the end of the process: interpreter tear-down).

``--agreement``: encodes every database and test image of the run's dataset with both engines
in this process and reports how many codes differ, and by how many bits, with the smallest
absolute pre-sign output among the differing bits (a flip there is float rounding, not a bug).
Markdown on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import load_average, log

STAGES = ("start-up", "imports", "model", "index", "encode", "search", "exit")


def timed(command: list[str]) -> tuple[float, dict[str, float]]:
    """Wall seconds of ``command`` and the stages parsed from its timings line (seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stages: dict[str, float] = {}
    line_at = None
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("Searched"):
            line_at = time.perf_counter()
            for part in line.split(": ", 1)[1].split(", "):
                name, value, unit = part.strip().rsplit(" ", 2)
                stages[name] = float(value) / (1000 if unit == "ms" else 1)
    if proc.wait() != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    wall = time.perf_counter() - start
    if line_at is not None:
        stages["exit"] = time.perf_counter() - line_at
        stages["start-up"] = wall - stages["exit"] - stages.get("total", 0.0)
    return wall, stages


def trained_digits_run(folder: Path) -> Path:
    log("training a tiny digits run (about a minute)")
    subprocess.run(
        [sys.executable, "-m", "hashcli", "train", "--dataset", "digits", "--backbone", "tiny"]
        + ["--bits", "32", "--epochs", "3", "--workdir", str(folder), "--run", "bench", "-q"],
        check=True,
    )
    return folder / "bench"


def query_image(run: Path) -> Path:
    """The first test image of the run's dataset (a photo the database does not hold)."""
    from hashcli.data import load_dataset
    from hashcli.workflows.runs import RunDir

    train = RunDir(run).train_config()
    dataset = load_dataset(train.dataset, train.data_root, val_fraction=train.val_fraction)
    return Path(next(r.path for r in dataset.records if r.split == "test"))


def agreement(run: Path) -> str:
    """Codes of every database and test image with both engines (see the module docstring)."""
    import numpy as np
    import torch

    from hashcli.data import load_dataset
    from hashcli.data.images import load_image
    from hashcli.data.transforms import eval_transform
    from hashcli.model.checkpoint import load_model
    from hashcli.model.onnx_engine import OnnxEncoder
    from hashcli.workflows.runs import RunDir

    train = RunDir(run).train_config()
    dataset = load_dataset(train.dataset, train.data_root, val_fraction=train.val_fraction)
    records = dataset.records
    model = load_model(run / "model.pt")
    encoder = OnnxEncoder(run / "model.onnx")
    transform = eval_transform(model.config["image_size"])
    differing, flipped, smallest, largest_gap = 0, 0, float("inf"), 0.0
    for start in range(0, len(records), 64):
        images = [load_image(r.path) for r in records[start : start + 64]]
        with torch.no_grad():
            reference = model(torch.stack([transform(i) for i in images])).numpy()
        outputs = encoder.outputs(images)
        largest_gap = max(largest_gap, float(np.abs(outputs - reference).max()))
        flips = (outputs >= 0) != (reference >= 0)
        differing += int(flips.any(axis=1).sum())
        flipped += int(flips.sum())
        if flips.any():
            smallest = min(smallest, float(np.abs(reference[flips]).max()))
    note = f"; largest |output| at a flipped bit {smallest:.2e}" if flipped else ""
    return (
        f"{len(records):,} images ({train.dataset}): {differing} codes differ "
        f"({flipped} bits){note}; largest output difference {largest_gap:.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained run folder (default: train one)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--agreement", action="store_true", help="compare every image's code")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run.resolve() if args.run else trained_digits_run(Path(tmp))
        if not (run / "model.onnx").exists():
            log("exporting model.onnx")
            subprocess.run([sys.executable, "-m", "hashcli", "export", "--run", str(run), "-q"])
        image = query_image(run)
        hashret = [sys.executable, "-m", "hashcli", "query", str(image), "--run", str(run)]
        commands = {
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "hashret query --engine onnx": [*hashret, "--top", "20", "--engine", "onnx"],
            "hashret query --engine torch": [*hashret, "--top", "20", "--engine", "torch"],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        stages: dict[str, dict[str, list[float]]] = {name: {} for name in commands}
        loads = []
        for repeat in range(args.repeats):
            log(f"repeat {repeat + 1} of {args.repeats}")
            for name, command in commands.items():
                wall, parts = timed(command)
                walls[name].append(wall)
                for stage, value in parts.items():
                    stages[name].setdefault(stage, []).append(value)
            loads.append(load_average())
        torch_wall = statistics.median(walls["python -c 'import torch'"])
        print(
            f"Cold query on {run.name} ({image.name}), median of {args.repeats} runs each, "
            f"load average {', '.join(loads)}\n"
        )
        print("| command | wall (median) | vs import torch | " + " | ".join(STAGES) + " |")
        print("| --- | --- | --- |" + " --- |" * len(STAGES))
        for name in commands:
            wall = statistics.median(walls[name])
            cells = [
                f"{1e3 * statistics.median(stages[name][s]):.0f} ms" if s in stages[name] else "-"
                for s in STAGES
            ]
            print(
                f"| {name} | {wall:.2f} s | {wall / torch_wall:.2f}x | " + " | ".join(cells) + " |"
            )
        if args.agreement:
            print(f"\nEngines agree: {agreement(run)}")
        print("\n" + json.dumps({n: [round(w, 3) for w in v] for n, v in walls.items()}))


if __name__ == "__main__":
    main()
