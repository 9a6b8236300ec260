"""Several processes: hashcli.runtime.distributed, then ``torchrun -m hashcli train`` end to end.

The multi-process tests launch ``python -m torch.distributed.run --standalone
--nproc_per_node 2`` (gloo on the CPU; the standalone rendezvous picks a free port) and hold
the run to what a single process would write or compute.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import build_cub

from hashcli.codes import read_codes
from hashcli.errors import DataError, HashretError
from hashcli.runtime.distributed import (
    _resolve_device,
    cpu_threads_per_process,
    distributed_session,
    is_main_process,
    launched_by_torchrun,
    shard_range,
)
from hashcli.workflows import runs

REPO = Path(__file__).resolve().parents[2]
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR")


def torchrun(*args: str, cwd: Path, module: bool = True, timeout: float = 180):
    """``python -m torch.distributed.run --standalone --nproc_per_node 2 -m hashcli ARGS``
    (``module=False``: ARGS start with a script)."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", *(["-m", "hashcli"] if module else []), *args]
    proc = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode and _only_gloo_teardown_abort(proc.stderr):
        # Seen in about 1 of 20 two-process CPU runs on the 2-core machines, not on demand:
        # a process dies with "terminate called without an active exception" (a C++ thread
        # of gloo) and no error of hashret's. The callers check every output file and figure,
        # so a run that stopped early still fails them; the abort is reported as a warning.
        warnings.warn(f"torchrun: gloo aborted a process: {args[0]}", stacklevel=2)
        proc.returncode = 0
    return proc


def _only_gloo_teardown_abort(stderr: str) -> bool:
    """The abort above, and neither a hashret error line nor a traceback through hashret."""
    return (
        "terminate called without an active exception" in stderr
        # a hashret error is a line of its own; torchrun's "ChildFailedError: " is not one
        and re.search(r"^(\[rank\d+\]:)?\s*Error: ", stderr, re.MULTILINE) is None
        and re.search(r'File "[^"]*hashcli/', stderr) is None
    )


# -- one process ---------------------------------------------------------------------------------


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)


def test_without_torchrun_the_session_is_one_process(no_torchrun):
    assert not launched_by_torchrun() and is_main_process()
    with distributed_session("cpu") as dist:
        assert (dist.rank, dist.world_size, dist.is_main, dist.is_distributed) == (
            0,
            1,
            True,
            False,
        )
        assert dist.device == torch.device("cpu") and dist.backend is None
        dist.barrier()
        assert dist.broadcast_object({"a": 1}) == {"a": 1}
        assert dist.gather_object(5) == [5] and dist.all_gather_object("x") == ["x"]
        assert dist.all_reduce_sum([1, 2.5]) == [1.0, 2.5]
        assert dist.run_on_main(lambda: 42) == 42
        with pytest.raises(DataError, match="broken"):
            dist.run_on_main(lambda: (_ for _ in ()).throw(DataError("broken")))
    assert not torch.distributed.is_initialized()


def test_rank_comes_from_torchrun_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launched_by_torchrun() and not is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()
    monkeypatch.delenv("LOCAL_RANK")  # not a torchrun process after all
    monkeypatch.setenv("RANK", "3")
    assert not launched_by_torchrun() and is_main_process()


@pytest.mark.parametrize("world_size", [1, 2, 3, 7])
def test_shards_cover_every_item_once_in_order(world_size):
    for n in range(0, 23):
        shards = [shard_range(n, r, world_size) for r in range(world_size)]
        assert [i for shard in shards for i in shard] == list(range(n))
        sizes = [len(shard) for shard in shards]
        assert max(sizes) - min(sizes) <= 1


def test_a_numbered_gpu_is_refused_under_torchrun():
    with pytest.raises(HashretError, match="CUDA_VISIBLE_DEVICES"):
        _resolve_device("cuda:1", local_rank=0, world_size=2)
    assert _resolve_device("cpu", local_rank=1, world_size=2) == torch.device("cpu")


def test_cpu_threads_share_the_cores_unless_omp_says(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads_per_process(4) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cpu_threads_per_process(1) == cores
    assert cpu_threads_per_process(10_000) == 1


# -- two processes: the collectives ----------------------------------------------------------

COLLECTIVES = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import torch
    from hashcli.runtime.distributed import distributed_session
    from hashcli.errors import DataError, HashretError

    out = sys.argv[1]
    with distributed_session("cpu") as dist:
        r = dist.rank
        result = {"rank": r, "world_size": dist.world_size, "backend": dist.backend}
        # numpy arrays of unequal length, in rank order
        mine = np.arange(10 * r, 10 * r + 3 + 2 * r, dtype=np.int64)
        gathered = dist.gather_object(mine)
        result["gathered"] = None if gathered is None else [a.tolist() for a in gathered]
        result["all_gathered"] = [a.tolist() for a in dist.all_gather_object(mine)]
        result["broadcast"] = dist.broadcast_object(f"from {r}")
        result["sum"] = dist.all_reduce_sum([r + 1, 0.5])
        result["max"] = dist.all_reduce_max([r])
        result["main"] = dist.run_on_main(lambda: f"computed by {r}")
        try:
            dist.run_on_main(lambda: (_ for _ in ()).throw(DataError("rank 0 failed")))
        except DataError as exc:
            result["main_error"] = str(exc)
        try:
            dist.agree(("error", (HashretError, "rank 1 failed")) if r == 1 else ("ok", r))
        except HashretError as exc:
            result["agree_error"] = str(exc)
        result["agree"] = dist.agree(("ok", r * 10))
        bn = torch.nn.BatchNorm1d(2)
        bn.running_mean.fill_(float(r + 1))
        dist.broadcast_buffers(bn)
        result["running_mean"] = bn.running_mean.tolist()
        weight = torch.nn.Parameter(torch.zeros(2))
        weight.grad = torch.tensor([r + 1.0, 4.0 * r])
        no_grad = torch.nn.Parameter(torch.zeros(1))
        dist.average_gradients([weight, no_grad])
        result["averaged"] = weight.grad.tolist()
        result["no_grad"] = no_grad.grad is None
        dist.barrier()
    result["destroyed"] = not torch.distributed.is_initialized()
    with open(f"{out}/rank{r}.json", "w") as fh:
        json.dump(result, fh)
    """
)


def test_collectives_between_two_gloo_processes(tmp_path):
    script = tmp_path / "collectives.py"
    script.write_text(COLLECTIVES)
    done = torchrun(str(script), str(tmp_path), cwd=tmp_path, module=False, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    zero, one = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    for r, result in enumerate((zero, one)):
        assert result["rank"] == r and result["world_size"] == 2 and result["backend"] == "gloo"
        assert result["all_gathered"] == [[0, 1, 2], [10, 11, 12, 13, 14]]
        assert result["broadcast"] == "from 0"
        assert result["sum"] == [3.0, 1.0] and result["max"] == [1.0]
        assert result["main"] == "computed by 0"
        assert result["main_error"] == "rank 0 failed"
        assert result["agree_error"] == "rank 1 failed"
        assert result["agree"] == [0, 10]
        assert result["running_mean"] == [1.0, 1.0]
        assert result["averaged"] == [1.5, 2.0] and result["no_grad"]  # (1 + 2) / 2, (0 + 4) / 2
        assert result["destroyed"]
    assert zero["gathered"] == [[0, 1, 2], [10, 11, 12, 13, 14]] and one["gathered"] is None


# -- two processes: training ---------------------------------------------------------------------

N_CLASSES, TRAIN_PER_CLASS, TEST_PER_CLASS = 4, 6, 3


def make_cub(base: Path) -> None:
    images, image_id = [], 1000
    for class_id in range(1, N_CLASSES + 1):
        for i in range(TRAIN_PER_CLASS + TEST_PER_CLASS):
            images.append((image_id, class_id, i < TRAIN_PER_CLASS))
            image_id += 7
    build_cub(base, images, {c: f"{c:03d}.Class_{c}" for c in range(1, N_CLASSES + 1)})


def train_args(data: Path, workdir: Path, *extra: str) -> list[str]:
    # No --run: torchrun's own parser takes --run for an abbreviation of its --run-path
    # (pytorch/pytorch#120601); runs get the default name and --resume the current run.
    return [
        "train",
        *("--dataset", "cub", "--data-root", str(data), "--backbone", "tiny", "--bits", "16"),
        *("--batch-size", "4", "--per-class", "2", "--image-size", "16", "--workers", "0"),
        *("--device", "cpu", "--workdir", str(workdir), "--epochs", "3"),
        *extra,
    ]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A 3-epoch training run by two processes: (data root, workdir, CompletedProcess)."""
    base = tmp_path_factory.mktemp("ddp-train")
    make_cub(base / "data")
    done = torchrun(*train_args(base / "data", base / "runs", "--json"), cwd=base)
    assert done.returncode == 0, done.stderr[-3000:]
    return base / "data", base / "runs", done


def test_two_processes_write_one_run_a_single_process_can_use(full_run, tmp_path):
    data, workdir, done = full_run
    folders = [p for p in workdir.iterdir() if p.is_dir()]
    assert len(folders) == 1  # one name for both ranks, chosen by rank 0
    run_dir = folders[0]
    assert runs.current_run_name(workdir) == run_dir.name
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["run"] == run_dir.name and summary["finished"]
    assert done.stderr.count("Distributed: 2 processes (gloo)") == 1  # rank 0 speaks alone

    config = json.loads((run_dir / "config.json").read_text())
    resolved = config["resolved"]
    assert resolved["world_size"] == 2 and resolved["backend"] == "gloo"
    assert resolved["batch_size_per_process"] == 4 and resolved["effective_batch_size"] == 8
    assert resolved["lr"] == 1e-3 and resolved["lr_scaling"] == "none"
    # 20 train images (4 for validation) // 4 per batch // 2 ranks = 2 steps per epoch
    assert resolved["steps_per_epoch"] == 2 and summary["steps"] == 6
    metrics = runs.read_metrics(run_dir)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]  # one line per epoch, not per rank
    assert all(m["images_per_s"] > 0 and 0 <= m["val_map"] <= 1 for m in metrics)

    # The checkpoint holds the unwrapped model: no DDP "module." prefixes, loads alone.
    from hashcli.model.checkpoint import load_checkpoint, load_model

    state = load_checkpoint(run_dir / runs.BEST_CHECKPOINT)
    assert not [key for key in state["model"] if key.startswith("module.")]
    assert len(load_checkpoint(run_dir / runs.LAST_CHECKPOINT)["rng_per_rank"]) == 2
    fingerprint = load_model(run_dir / runs.BEST_CHECKPOINT).fingerprint()

    # A single-process `hashret encode` of the test split with that model equals the codes
    # the two processes gathered (same rows, same order).
    from hashcli.workflows.encode import encode_to_file

    encode_to_file(
        dataset="cub",
        split="test",
        data_root=data,
        run=run_dir,
        out=tmp_path / "test.h5",
        device="cpu",
        workers=0,
    )
    alone, gathered = read_codes(tmp_path / "test.h5"), read_codes(run_dir / runs.QUERY_CODES)
    assert gathered.attrs["model_fingerprint"] == fingerprint
    assert gathered.paths == alone.paths and len(alone) == N_CLASSES * TEST_PER_CLASS
    np.testing.assert_array_equal(gathered.codes, alone.codes)
    np.testing.assert_array_equal(gathered.labels, alone.labels)
    database = read_codes(run_dir / runs.DATABASE_CODES)
    assert len(database) == N_CLASSES * TRAIN_PER_CLASS and len(set(database.paths)) == 24


@pytest.mark.slow  # two torchrun launches: ~11 s alone, ~20 s on a loaded machine
def test_resume_under_torchrun_continues_exactly(full_run, tmp_path):
    data, workdir, _ = full_run
    cut = torchrun(
        *train_args(data, tmp_path / "runs", "--max-steps", "3", "--quiet"), cwd=tmp_path
    )
    assert cut.returncode == 0, cut.stderr[-3000:]
    run_dir = tmp_path / "runs" / runs.current_run_name(tmp_path / "runs")
    assert not (run_dir / runs.QUERY_CODES).exists()
    resumed = torchrun(*train_args(data, tmp_path / "runs", "--resume", "--quiet"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    full_dir = next(p for p in workdir.iterdir() if p.is_dir())
    full, again = runs.read_metrics(full_dir), runs.read_metrics(run_dir)
    assert [m["epoch"] for m in again] == [1, 2, 3]
    # Same batches, same random augmentation per rank: the same models, epoch after epoch.
    assert [m["val_map"] for m in again] == [m["val_map"] for m in full]
    summaries = [json.loads((d / runs.SUMMARY_FILE).read_text()) for d in (full_dir, run_dir)]
    assert summaries[0]["test_map"] == summaries[1]["test_map"] and summaries[1]["finished"]

    # A single process may not continue a two-process run (its batches would differ).
    from hashcli.workflows.train import TrainConfig, train

    with pytest.raises(HashretError, match="trained by 2 process"):
        train(
            TrainConfig(dataset="cub", data_root=str(data), device="cpu"),
            workdir=tmp_path / "runs",
            resume=True,
        )


def test_gloo_teardown_abort_is_told_from_hashret_errors():
    """The abort seen in CI (torchrun's own ChildFailedError traceback around it) is tolerated;
    a hashret error line, or a traceback through hashret, is not."""
    abort = (
        "Wrote two.h5 (10 codes of 16 bits, 318 images/s)\n"
        "terminate called without an active exception\n"
        'File "/venv/lib/python3.11/site-packages/torch/distributed/run.py", line 1142\n'
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
        "exitcode  : -6 (pid: 5848)  (SIGABRT)\n"
    )
    assert _only_gloo_teardown_abort(abort)
    assert not _only_gloo_teardown_abort(abort + "Error: the run is locked\n")
    assert not _only_gloo_teardown_abort(abort + "[rank1]: Error: the run is locked\n")
    assert not _only_gloo_teardown_abort(abort + 'File "/repo/hashcli/workflows/encode.py"\n')
    assert not _only_gloo_teardown_abort(abort.replace("terminate called", "killed"))
