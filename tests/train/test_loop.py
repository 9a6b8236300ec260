"""The training run end to end on the CPU: files, model selection, resume, bad images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import build_cifar, build_cub, build_lists

from hashcli.codes import read_codes
from hashcli.errors import HashretError
from hashcli.train.names import METHOD_NAMES
from hashcli.workflows import runs
from hashcli.workflows.train import TrainConfig, TrainObserver, train

N_CLASSES = 4
TRAIN_PER_CLASS = 6
TEST_PER_CLASS = 3


def make_cub(base: Path, textured: bool = False) -> dict:
    """The tiny CUB; ``textured``: noise images instead of solid colours, so that random crops
    and flips change what the model sees (a resume that loses the random state shows)."""
    images = []
    image_id = 1000  # ids far from line numbers: the reader must join by id
    for class_id in range(1, N_CLASSES + 1):
        for i in range(TRAIN_PER_CLASS + TEST_PER_CLASS):
            images.append((image_id, class_id, i < TRAIN_PER_CLASS))
            image_id += 7
    names = {c: f"{c:03d}.Class_{c}" for c in range(1, N_CLASSES + 1)}
    written = build_cub(base, images, names)
    if textured:
        from PIL import Image

        rng = np.random.default_rng(0)
        for rel in written:
            pixels = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(base / "CUB_200_2011" / "images" / rel)
    return written


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
    assert queries.attrs["split"] == "test" and database.attrs["split"] == "database"

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
    # The database codes' statistics, recounted from database.h5 row by row.
    stats = summary["code_stats"]
    assert stats == result.code_stats
    rows = [tuple(row) for row in np.unpackbits(database.codes, axis=1)]
    assert stats["n_codes"] == len(rows) and stats["bits"] == 16
    assert stats["ones_share_per_bit"] == pytest.approx(
        [sum(row[k] for row in rows) / len(rows) for k in range(16)]
    )
    assert stats["distinct_codes"] == len(set(rows))
    assert stats["largest_bucket"] == max(rows.count(row) for row in rows)
    pairs = [(i, j) for i in range(len(rows)) for j in range(i + 1, len(rows))]
    same = [i_j for i_j in pairs if database.labels[i_j[0]] == database.labels[i_j[1]]]
    within = [sum(a != b for a, b in zip(rows[i], rows[j], strict=True)) for i, j in same]
    assert stats["mean_hamming_within_class"] == pytest.approx(sum(within) / len(within))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, Path]:
    """Textured data and a 3-epoch run on it that nothing interrupted: (data, run folder)."""
    base = tmp_path_factory.mktemp("uninterrupted")
    make_cub(base / "data", textured=True)
    train(small_config(base / "data", epochs=3), workdir=base / "runs", run="full")
    return base / "data", base / "runs" / "full"


def outcome(run_dir: Path) -> dict:
    """What a run computed: its best and last models, validation and test mAP."""
    from hashcli.model.checkpoint import load_model

    summary = json.loads((run_dir / runs.SUMMARY_FILE).read_text())
    return {
        "best": load_model(run_dir / runs.BEST_CHECKPOINT).fingerprint(),
        "last": load_model(run_dir / runs.LAST_CHECKPOINT).fingerprint(),
        "val_map": [m["val_map"] for m in runs.read_metrics(run_dir)],
        "epochs": [m["epoch"] for m in runs.read_metrics(run_dir)],
        "test_map": summary["test_map"],
        "steps": summary["steps"],
    }


def test_resume_after_interruption_continues_exactly(uninterrupted, tmp_path):
    """Stopped by --max-steps in the middle of epoch 2, then resumed: the same models and
    figures as the run that nothing interrupted (the CPU with workers=0 is deterministic)."""
    data, full_dir = uninterrupted
    workdir = tmp_path / "runs"
    partial = train(small_config(data, epochs=3, max_steps=3), workdir=workdir, run="cut")
    steps_per_epoch = runs.read_config(workdir / "cut")["resolved"]["steps_per_epoch"]
    assert steps_per_epoch == 2  # so step 3 is the middle of epoch 2
    assert not partial.finished and partial.steps == 3
    assert not (workdir / "cut" / runs.QUERY_CODES).exists()
    resumed = train(small_config(data, epochs=None), workdir=workdir, run="cut", resume=True)
    assert resumed.finished and resumed.steps == 6
    assert (workdir / "cut" / runs.QUERY_CODES).is_file()
    assert outcome(workdir / "cut") == outcome(full_dir)


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


# DSH reaches 0.70 on digits with its defaults (docs/results.md): a known shortfall, kept
# strict so that a fix shows.
_DSH_SHORT = pytest.mark.xfail(strict=True, reason="DSH reaches 0.70 on digits (results.md)")


@pytest.mark.slow
@pytest.mark.parametrize(
    "method", [pytest.param(m, marks=_DSH_SHORT) if m == "dsh" else m for m in METHOD_NAMES]
)
def test_digits_quick_start_reaches_090_test_map_with_every_method(method, tmp_path):
    """The README quick start (tiny backbone, 32 bits, default epochs, on the CPU) with each
    method: tie-aware test mAP at least 0.90."""
    config = TrainConfig(
        dataset="digits", data_root=str(tmp_path / "data"), backbone="tiny", bits=32, method=method
    )
    result = train(config, workdir=tmp_path / "runs")
    assert result.finished
    assert result.test["map"] >= 0.90, result.test


def test_ctrl_c_mid_epoch_saves_and_resume_continues_exactly(uninterrupted, tmp_path):
    """Ctrl-C (KeyboardInterrupt) between steps: last.pt is written, a clear error is raised,
    the lock is released, and the resumed run is the uninterrupted one."""

    class InterruptAtStep3(TrainObserver):
        def step(self, stats):
            if stats["step"] == 3:
                raise KeyboardInterrupt

    data, full_dir = uninterrupted
    workdir = tmp_path / "runs"
    config = small_config(data, epochs=3)
    with pytest.raises(HashretError, match="--resume --run cut"):
        train(config, workdir=workdir, run="cut", observer=InterruptAtStep3())
    assert (workdir / "cut" / "last.pt").is_file()
    assert lock_is_free(workdir / "cut")
    resumed = train(small_config(data, epochs=None), workdir=workdir, run="cut", resume=True)
    assert resumed.finished
    assert outcome(workdir / "cut") == outcome(full_dir)


def lock_is_free(run_dir: Path) -> bool:
    try:
        with runs.RunDir(run_dir).lock(timeout=0):
            return True
    except HashretError:
        return False


def test_the_run_is_locked_while_it_trains(tmp_path):
    """The run's writer lock is held from config.json on, a new run or a resumed one, and a
    second `train --resume` of a run being trained fails at once."""

    class TriesTheLock(TrainObserver):
        def __init__(self) -> None:
            self.free: list[bool] = []

        def start(self, info):
            self.free.append(lock_is_free(Path(info["run_dir"])))

        def step(self, stats):
            self.free.append(lock_is_free(workdir / "busy"))

        def evaluation(self, record):
            self.free.append(lock_is_free(workdir / "busy"))

    make_cub(tmp_path / "data")
    workdir = tmp_path / "runs"
    new, again = TriesTheLock(), TriesTheLock()
    train(small_config(tmp_path / "data", max_steps=2), workdir=workdir, run="busy", observer=new)
    assert new.free == [False] * 4  # start, steps 1 and 2, the evaluation of epoch 1
    assert lock_is_free(workdir / "busy")
    config = small_config(tmp_path / "data", epochs=None, max_steps=3)
    train(config, workdir=workdir, run="busy", resume=True, observer=again)
    assert again.free == [False] * 2  # start, step 3
    assert lock_is_free(workdir / "busy")

    last = (workdir / "busy" / runs.LAST_CHECKPOINT).read_bytes()
    with runs.RunDir(workdir / "busy").lock():
        # "is being written": it did not wait (a wait says "has been for N s").
        with pytest.raises(HashretError, match="the run busy is being written by another"):
            train(config, workdir=workdir, run="busy", resume=True)
    assert (workdir / "busy" / runs.LAST_CHECKPOINT).read_bytes() == last


def test_a_run_that_fails_before_training_leaves_no_folder(tmp_path):
    make_cub(tmp_path / "data")
    workdir = tmp_path / "runs"
    config = small_config(tmp_path / "data", weights=str(tmp_path / "missing.pt"))
    with pytest.raises(HashretError, match="missing.pt"):
        train(config, workdir=workdir, run="doomed")
    assert not (workdir / "doomed").exists()
    assert runs.current_run_name(workdir) is None


def test_a_database_apart_from_train_is_encoded_and_searched(tmp_path, monkeypatch):
    """CIFAR-10's protocol: the database role (not the train split) is what database.h5 holds
    and what the test mAP searches; queries are the test split."""
    from hashcli.data import cifar, load_dataset

    monkeypatch.setattr(cifar, "PROTOCOLS", {"cifar10": (2, 5, False, True)})
    build_cifar(tmp_path / "data", per_class=12)
    config = small_config(tmp_path / "data", dataset="cifar10", epochs=1, per_class=2)
    result = train(config, workdir=tmp_path / "runs", run="c")
    assert result.finished
    dataset = load_dataset("cifar10", tmp_path / "data")
    run_dir = tmp_path / "runs" / "c"
    database = read_codes(run_dir / runs.DATABASE_CODES)
    queries = read_codes(run_dir / runs.QUERY_CODES)
    assert [str(p) for p in database.paths] == [str(r.path) for r in dataset.role("database")]
    assert [str(p) for p in queries.paths] == [str(r.path) for r in dataset.role("test")]
    assert database.attrs["split"] == "database" and len(database.codes) == 50
    assert result.test["n_database"] == 50 and result.test["n_queries"] == 20


def test_unseen_classes_are_never_trained_on_and_the_figures_are_reproducible(
    tmp_path, monkeypatch
):
    """--unseen-classes 0.5 on 4 classes: two classes never reach the sampler nor validation;
    summary.json's seen@seen, unseen@unseen and unseen@all are what the code files give, and
    `hashret eval --run` prints the same."""
    from typer.testing import CliRunner

    from hashcli.cli.app import app
    from hashcli.metrics import evaluate
    from hashcli.workflows import train as train_workflow

    make_cub(tmp_path / "data")
    seen_by_training: list[int] = []
    build_parts, hooks = train_workflow._build_parts, train_workflow._hooks

    def spy_parts(config, recipe, dist, model, method, records, *args):
        seen_by_training.extend(r.label for r in records)
        return build_parts(config, recipe, dist, model, method, records, *args)

    def spy_hooks(config, run_dir, splits, *args):
        seen_by_training.extend(r.label for r in splits["train"] + splits["val"])
        return hooks(config, run_dir, splits, *args)

    monkeypatch.setattr(train_workflow, "_build_parts", spy_parts)
    monkeypatch.setattr(train_workflow, "_hooks", spy_hooks)
    config = small_config(tmp_path / "data", epochs=1, unseen_classes=0.5, seed=3)
    train(config, workdir=tmp_path / "runs", run="u")
    run_dir = tmp_path / "runs" / "u"
    unseen = json.loads((run_dir / "config.json").read_text())["unseen_classes"]
    assert len(unseen) == 2 and seen_by_training
    assert not set(seen_by_training) & set(unseen)
    assert set(seen_by_training) == set(range(N_CLASSES)) - set(unseen)

    summary = json.loads((run_dir / runs.SUMMARY_FILE).read_text())
    assert summary["unseen_classes"] == unseen
    q, d = read_codes(run_dir / runs.QUERY_CODES), read_codes(run_dir / runs.DATABASE_CODES)
    q_unseen, d_unseen = np.isin(q.labels, unseen), np.isin(d.labels, unseen)
    cases = {
        "seen@seen": (~q_unseen, ~d_unseen),
        "unseen@unseen": (q_unseen, d_unseen),
        "unseen@all": (q_unseen, np.ones(len(d.labels), bool)),
    }
    for key, (qm, dm) in cases.items():
        expected = evaluate(q.codes[qm], q.labels[qm], d.codes[dm], d.labels[dm], q.bits)
        assert summary[key]["map"] == pytest.approx(expected.map, abs=1e-12), key
        assert summary[key]["map_pessimistic"] == pytest.approx(expected.map_pessimistic)
        assert summary[key]["n_queries"] == int(qm.sum())
        assert summary[key]["n_database"] == int(dm.sum())
    result = CliRunner().invoke(
        app, ["eval", "--run", "u", "--workdir", str(tmp_path / "runs"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in cases:
        assert report[key] == pytest.approx(summary[key]), key


def test_too_many_unseen_classes_is_one_error_and_no_run(tmp_path):
    make_cub(tmp_path / "data")
    with pytest.raises(HashretError, match="--unseen-classes 0.9: .*fewer than 2"):
        train(
            small_config(tmp_path / "data", unseen_classes=0.9), workdir=tmp_path / "runs", run="x"
        )
    assert not (tmp_path / "runs" / "x").exists()


def test_multi_label_lists_train_encode_and_evaluate_end_to_end(tmp_path):
    """Multi-hot list files: csq trains on shuffled batches, the database codes carry the
    multi-hot rows of database.txt, and the test mAP is the multi-label evaluator's on them."""
    from hashcli.metrics import evaluate

    rng = np.random.default_rng(1)

    def rows(n):
        return [tuple(np.flatnonzero(rng.random(4) < 0.4).tolist()) for _ in range(n)]

    written = build_lists(
        tmp_path / "lists", {"train": rows(24), "test": rows(6), "database": rows(10)}, 4
    )
    config = small_config(tmp_path / "lists", dataset="lists", method="csq", epochs=1)
    result = train(config, workdir=tmp_path / "runs", run="m")
    run_dir = tmp_path / "runs" / "m"
    record = json.loads((run_dir / "config.json").read_text())
    assert (record["resolved"]["p"], record["resolved"]["k"]) == (8, 1)  # shuffled batches
    database = read_codes(run_dir / runs.DATABASE_CODES)
    queries = read_codes(run_dir / runs.QUERY_CODES)
    expected = np.zeros((10, 4), bool)
    for row, (path, labels) in enumerate(written["database"]):
        expected[row, list(labels)] = True
        assert database.paths[row] == str(path)
    np.testing.assert_array_equal(database.labels.astype(bool), expected)
    assert queries.labels.shape == (6, 4)
    report = evaluate(queries.codes, queries.labels, database.codes, database.labels, 16)
    assert report.multi_label and result.test["map"] == pytest.approx(report.map, abs=1e-12)
    # `hashret eval --run` on a list dataset gives the field's mAP@5000 unless told otherwise
    from typer.testing import CliRunner

    from hashcli.cli.app import app

    args = ["eval", "--run", "m", "--workdir", str(tmp_path / "runs"), "--json"]
    shown = json.loads(CliRunner().invoke(app, args).stdout)
    with_k = evaluate(
        queries.codes, queries.labels, database.codes, database.labels, 16, top_k=[5000]
    )
    assert shown["map_at_k_hashnet"] == pytest.approx({"5000": with_k.map_at_k_hashnet[5000]})
    shown = json.loads(CliRunner().invoke(app, [*args, "--top-k", "3"]).stdout)
    assert set(shown["map_at_k_hashnet"]) == {"3"}

    with pytest.raises(HashretError, match="the triplet method has no multi-label form"):
        train(
            small_config(tmp_path / "lists", dataset="lists", method="triplet"),
            workdir=tmp_path / "runs",
            run="t",
        )
    assert not (tmp_path / "runs" / "t").exists()
