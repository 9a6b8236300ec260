"""The training run end to end on the CPU: files, model selection, resume, bad images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import build_cub

from hashcli.codes import read_codes
from hashcli.errors import HashretError
from hashcli.workflows import runs
from hashcli.workflows.train import TrainConfig, train

N_CLASSES = 4
TRAIN_PER_CLASS = 6
TEST_PER_CLASS = 3


def make_cub(base: Path) -> dict:
    images = []
    image_id = 1000  # ids far from line numbers: the reader must join by id
    for class_id in range(1, N_CLASSES + 1):
        for i in range(TRAIN_PER_CLASS + TEST_PER_CLASS):
            images.append((image_id, class_id, i < TRAIN_PER_CLASS))
            image_id += 7
    names = {c: f"{c:03d}.Class_{c}" for c in range(1, N_CLASSES + 1)}
    return build_cub(base, images, names)


def small_config(root: Path, **overrides) -> TrainConfig:
    settings = dict(
        dataset="cub",
        data_root=str(root),
        backbone="tiny",
        bits=16,
        epochs=2,
        batch_size=8,
        per_class=2,
        image_size=16,
        workers=0,
        device="cpu",
        encode_batch_size=16,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def independent_codes(checkpoint: Path, paths: list[str], image_size: int) -> np.ndarray:
    """Oracle: each image through load_image, the eval transform and the model, one by one."""
    from hashcli.data.images import load_image
    from hashcli.data.transforms import eval_transform
    from hashcli.model.checkpoint import load_model

    model = load_model(checkpoint)
    transform = eval_transform(image_size)
    rows = []
    with torch.no_grad():
        for path in paths:
            x = transform(load_image(path)).unsqueeze(0)
            rows.append((model(x)[0] >= 0).numpy())
    return np.packbits(np.array(rows), axis=1)


def test_smoke_run_writes_every_file(tmp_path):
    written = make_cub(tmp_path / "data")
    workdir = tmp_path / "runs"
    result = train(small_config(tmp_path / "data"), workdir=workdir, run="smoke")

    run_dir = workdir / "smoke"
    assert result.run_dir == run_dir and result.finished
    for name in ("config.json", "model.pt", "last.pt", "metrics.jsonl", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert runs.current_run_name(workdir) == "smoke"

    config = json.loads((run_dir / "config.json").read_text())
    steps_per_epoch = config["resolved"]["steps_per_epoch"]
    assert result.steps == 2 * steps_per_epoch
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(0.0 <= m["val_map"] <= 1.0 for m in metrics)
    best = max(metrics, key=lambda m: m["val_map"])
    assert result.best_val_map == pytest.approx(best["val_map"])

    database = read_codes(run_dir / runs.DATABASE_CODES)
    queries = read_codes(run_dir / runs.QUERY_CODES)
    n_train = sum(1 for v in written.values() if v["split"] == "train")
    n_test = len(written) - n_train
    assert len(database) == n_train and len(queries) == n_test
    assert database.bits == queries.bits == 16
    assert queries.attrs["split"] == "test" and database.attrs["split"] == "train"

    from hashcli.model.checkpoint import load_model

    fingerprint = load_model(run_dir / "model.pt").fingerprint()
    assert queries.attrs["model_fingerprint"] == fingerprint
    expected = independent_codes(run_dir / "model.pt", queries.paths, 16)
    np.testing.assert_array_equal(queries.codes, expected)
    labels_by_path = {
        str(tmp_path / "data" / "CUB_200_2011" / "images" / rel): v["class"]
        for rel, v in written.items()
    }
    classes = json.loads(queries.attrs["class_names"])
    assert [classes[i] for i in queries.labels] == [labels_by_path[p] for p in queries.paths]

    from hashcli.index.binary_index import BinaryIndex

    index = BinaryIndex.load(run_dir / runs.INDEX_FILE)
    assert index.ntotal == n_train and index.model_fingerprint == fingerprint

    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0.0 <= summary["test_map"] <= 1.0


def test_resume_after_interruption_finishes_with_the_same_steps(tmp_path):
    make_cub(tmp_path / "data")
    workdir = tmp_path / "runs"
    full = train(small_config(tmp_path / "data", epochs=3), workdir=workdir, run="full")

    partial = train(
        small_config(tmp_path / "data", epochs=3, max_steps=3), workdir=workdir, run="cut"
    )
    assert not partial.finished and partial.steps == 3
    assert not (workdir / "cut" / runs.QUERY_CODES).exists()
    resumed = train(
        small_config(tmp_path / "data", epochs=None), workdir=workdir, run="cut", resume=True
    )
    assert resumed.finished
    assert resumed.steps == full.steps
    metrics = runs.read_metrics(workdir / "cut")
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert (workdir / "cut" / runs.QUERY_CODES).is_file()


def test_existing_run_is_not_overwritten(tmp_path):
    make_cub(tmp_path / "data")
    workdir = tmp_path / "runs"
    (workdir / "taken").mkdir(parents=True)
    (workdir / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(HashretError, match="already exists"):
        train(small_config(tmp_path / "data"), workdir=workdir, run="taken")
    assert (workdir / "taken" / "keep.txt").read_text() == "mine"


def test_bad_image_fails_or_is_skipped_and_counted(tmp_path):
    written = make_cub(tmp_path / "data")
    rel = next(r for r, v in written.items() if v["split"] == "train")
    bad = tmp_path / "data" / "CUB_200_2011" / "images" / rel
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    workdir = tmp_path / "runs"
    with pytest.raises(HashretError, match=bad.name):
        train(small_config(tmp_path / "data", epochs=1), workdir=workdir, run="strict")

    result = train(
        small_config(tmp_path / "data", epochs=1, skip_bad_images=True),
        workdir=workdir,
        run="lenient",
    )
    assert result.finished
    assert result.skipped_images == [str(bad)]
    config = json.loads((workdir / "lenient" / "config.json").read_text())
    assert config["skipped_images"] == [str(bad)]
    n_train = sum(1 for v in written.values() if v["split"] == "train")
    assert len(read_codes(workdir / "lenient" / runs.DATABASE_CODES)) == n_train - 1


@pytest.mark.slow
def test_digits_quick_start_reaches_090_test_map(tmp_path):
    """The README quick start: tiny backbone, 32 bits, default epochs, on the CPU."""
    result = train(
        TrainConfig(dataset="digits", data_root=str(tmp_path / "data"), backbone="tiny", bits=32),
        workdir=tmp_path / "runs",
    )
    assert result.finished
    assert result.test["map"] >= 0.90, result.test


def test_ctrl_c_mid_epoch_saves_and_resume_finishes_the_same_steps(tmp_path):
    """Ctrl-C (KeyboardInterrupt) between steps: last.pt is written, a clear error is raised."""
    from hashcli.workflows.train import TrainObserver

    class InterruptAtStep3(TrainObserver):
        def step(self, stats):
            if stats["step"] == 3:
                raise KeyboardInterrupt

    make_cub(tmp_path / "data")
    workdir = tmp_path / "runs"
    config = small_config(tmp_path / "data", epochs=3)
    with pytest.raises(HashretError, match="--resume --run cut"):
        train(config, workdir=workdir, run="cut", observer=InterruptAtStep3())
    assert (workdir / "cut" / "last.pt").is_file()
    resumed = train(
        small_config(tmp_path / "data", epochs=None), workdir=workdir, run="cut", resume=True
    )
    steps_per_epoch = json.loads((workdir / "cut" / "config.json").read_text())["resolved"][
        "steps_per_epoch"
    ]
    assert resumed.finished and resumed.steps == 3 * steps_per_epoch
    assert [m["epoch"] for m in runs.read_metrics(workdir / "cut")] == [1, 2, 3]


def test_a_run_that_fails_before_training_leaves_no_folder(tmp_path):
    make_cub(tmp_path / "data")
    workdir = tmp_path / "runs"
    config = small_config(tmp_path / "data", weights=str(tmp_path / "missing.pt"))
    with pytest.raises(HashretError, match="missing.pt"):
        train(config, workdir=workdir, run="doomed")
    assert not (workdir / "doomed").exists()
    assert runs.current_run_name(workdir) is None
