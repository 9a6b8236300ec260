"""The library behind ``hashret index`` and ``hashret query``, held to independent oracles.

Oracle: the query codes come from the model's forward pass on the eval transform, packed with
``np.packbits(outputs >= 0)``; neighbours from a numpy XOR-popcount over the database codes,
ordered by (distance, row). The fake run (``make_fake_run``) is also used by the CLI tests.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hashcli.codes import CodeFile, read_codes, write_codes
from hashcli.data.images import load_image
from hashcli.data.transforms import eval_transform
from hashcli.errors import HashretError
from hashcli.index import BinaryIndex, faiss_threads, read_index_metadata
from hashcli.model.checkpoint import model_state, save_checkpoint
from hashcli.model.factory import create_model
from hashcli.workflows.index import add_to_index, build_index, default_index_path
from hashcli.workflows.query import DEFAULT_TOP, query_images

IMAGE_SIZE = 16
BITS = 16
CLASSES = ["cat", "dog", "owl"]  # sorted: the folder reader numbers classes in this order
RUN_NAME = "fake-run"


@dataclass
class FakeRun:
    workdir: Path
    run_dir: Path
    data_root: Path
    model: torch.nn.Module
    db_paths: list[Path]
    db_codes: np.ndarray
    db_labels: np.ndarray
    test_paths: list[Path]  # dataset images outside the database (the test split)
    photos: list[Path]  # images from elsewhere: class unknown

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "model.pt"

    @property
    def store(self) -> Path:
        return self.run_dir / "codes" / "database.h5"

    @property
    def index(self) -> Path:
        return self.run_dir / "index" / "database.faiss"


def random_image(path: Path, seed: int, size: tuple[int, int] = (9, 8)) -> Path:
    """2 x 2 random colour blocks (pixel noise would pool to the same features everywhere)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = Image.fromarray(rng.integers(0, 256, (2, 2, 3), dtype=np.uint8))
    blocks.resize(size, Image.Resampling.NEAREST).save(path)
    return path


def _inputs(paths: list[Path]) -> torch.Tensor:
    transform = eval_transform(IMAGE_SIZE)
    return torch.stack([transform(load_image(p)) for p in paths])


def oracle_codes(model: torch.nn.Module, paths: list[Path], check: bool = True) -> np.ndarray:
    """Codes by the definition: sign of the forward pass, packed MSB first."""
    with torch.no_grad():
        outputs = torch.cat([model(x.unsqueeze(0)) for x in _inputs(paths)])
    if check:  # no sign flips from rounding differences between batchings
        assert outputs.abs().min().item() > 1e-5
    return np.packbits((outputs >= 0).numpy(), axis=1)


def brute_force(xq: np.ndarray, xb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query, (distances, rows) of the whole database, ordered by (distance, row)."""
    out = []
    for q in xq:
        dist = np.unpackbits(np.bitwise_xor(xb, q), axis=1).sum(axis=1)
        order = np.lexsort((np.arange(len(xb)), dist))
        out.append((dist[order], order))
    return out


def make_model(bits: int = BITS, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("tiny", bits, pretrained=False, image_size=IMAGE_SIZE).eval()


def make_fake_run(root: Path, n_db: int = 18, seed: int = 0) -> FakeRun:
    """A run folder as training leaves it, built without training.

    Database: ``n_db`` images of a folder dataset (``<data>/train/<class>/``), labels i % 3;
    rows 4 and 11 are copies of row 1 (ties at distance 0). Two test-split images and two
    loose photos beside it.
    """
    workdir, data_root = root / "runs", root / "data"
    run_dir = workdir / RUN_NAME
    model = make_model(seed=seed)
    db_paths, labels = [], []
    for i in range(n_db):
        label = i % 3
        path = data_root / "train" / CLASSES[label] / f"{i:03d}.png"
        if i in (4, 11):
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(db_paths[1], path)
        else:
            random_image(path, seed=100 + i, size=(8 + i % 5, 8 + i % 3))
        db_paths.append(path)
        labels.append(label)
    test_paths = [random_image(data_root / "test" / CLASSES[c] / "t.png", 500 + c) for c in (2, 0)]
    photos = [random_image(root / "photos" / f"p{i}.png", 900 + i, (20, 14)) for i in range(2)]
    # An untrained head maps every image to nearly the same code; centred on the database's
    # features, its bits split the images (distances spread over 0..16).
    with torch.no_grad():
        features = model.backbone(_inputs(db_paths))
        model.head.bias.copy_(-(model.head.weight @ features.mean(0)))
    save_checkpoint(run_dir / "model.pt", model_state(model))
    codes = oracle_codes(model, db_paths)
    db_labels = np.array(labels, dtype=np.int64)
    (run_dir / "codes").mkdir(parents=True)
    write_codes(
        run_dir / "codes" / "database.h5",
        CodeFile(
            codes,
            BITS,
            labels=db_labels,
            paths=[str(p) for p in db_paths],
            attrs={
                "model_fingerprint": model.fingerprint(),
                "dataset": "folder",
                "split": "train",
                "class_names": json.dumps(CLASSES),
            },
        ),
    )
    index = BinaryIndex.build(
        codes,
        BITS,
        model_fingerprint=model.fingerprint(),
        source_path=run_dir / "codes" / "database.h5",
    )
    index.save(run_dir / "index" / "database.faiss")
    config = {
        "dataset": "folder",
        "data_root": str(data_root),
        "backbone": "tiny",
        "bits": BITS,
        "classes": CLASSES,
        "train": {"dataset": "folder", "data_root": str(data_root), "val_fraction": 0.0},
    }
    (run_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (workdir / "CURRENT").write_text(RUN_NAME + "\n", encoding="utf-8")
    return FakeRun(
        workdir, run_dir, data_root, model, db_paths, codes, db_labels, test_paths, photos
    )


def tree_snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` and its bytes (to show that nothing was written), less the
    runs' empty lock files (``.lock``, made by the first command that takes the lock)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not (p.name == ".lock" and p.stat().st_size == 0)
    }


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine: a second intra-op thread only waits."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def fake(tmp_path, monkeypatch) -> FakeRun:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HASHRET_WORKDIR", str(tmp_path / "runs"))
    return make_fake_run(tmp_path)


def _queries(fake: FakeRun) -> list[Path]:
    return [fake.db_paths[1], fake.photos[0], fake.test_paths[0], fake.db_paths[7]]


def test_results_equal_a_brute_force_over_the_database_ties_by_row(fake):
    queries = _queries(fake)
    expected = brute_force(oracle_codes(fake.model, queries), fake.db_codes)
    report = query_images([str(q) for q in queries], top=7, device="cpu", batch_size=3)
    assert [r.query for r in report.results] == [str(q) for q in queries]
    for result, (dist, rows), xq in zip(
        report.results, expected, oracle_codes(fake.model, queries), strict=True
    ):
        np.testing.assert_array_equal(result.code, xq)
        assert [n.row for n in result.neighbours] == rows[:7].tolist()
        assert [n.distance for n in result.neighbours] == dist[:7].tolist()
        assert [n.rank for n in result.neighbours] == list(range(1, 8))
        for n in result.neighbours:
            assert n.path == str(fake.db_paths[n.row])
            assert n.label == fake.db_labels[n.row] and n.class_name == CLASSES[n.label]
    # the copies of row 1 tie with it at distance 0, in row order
    first = report.results[0].neighbours
    assert [(n.row, n.distance) for n in first[:3]] == [(1, 0), (4, 0), (11, 0)]
    assert (report.ntotal, report.bits, report.index_type, report.top) == (18, BITS, "flat", 7)


def test_default_top_and_top_beyond_the_database(fake):
    ((dist, rows),) = brute_force(oracle_codes(fake.model, fake.photos[:1]), fake.db_codes)
    report = query_images([str(fake.photos[0])], device="cpu")
    assert report.top == DEFAULT_TOP == 20 and len(report.results[0].neighbours) == 18
    report = query_images([str(fake.photos[0])], top=1000, device="cpu")
    assert [n.row for n in report.results[0].neighbours] == rows.tolist()
    assert [n.distance for n in report.results[0].neighbours] == dist.tolist()
    report = query_images([str(fake.photos[0])], top=5, device="cpu")
    assert [n.row for n in report.results[0].neighbours] == rows[:5].tolist()


def test_radius_is_inclusive_and_capped_only_by_an_explicit_top(fake):
    queries = [fake.photos[1], fake.db_paths[1]]
    expected = brute_force(oracle_codes(fake.model, queries), fake.db_codes)
    radius = int(np.median(expected[0][0]))  # a distance that occurs: inclusive matters
    assert (expected[0][0] == radius).any()
    report = query_images([str(q) for q in queries], radius=radius, device="cpu")
    assert report.top is None
    for result, (dist, rows) in zip(report.results, expected, strict=True):
        keep = dist <= radius
        assert [n.row for n in result.neighbours] == rows[keep].tolist()
        assert [n.distance for n in result.neighbours] == dist[keep].tolist()
    assert len(report.results[0].neighbours) > 2
    capped = query_images([str(q) for q in queries], radius=radius, top=2, device="cpu")
    assert [n.row for n in capped.results[0].neighbours] == expected[0][1][:2].tolist()
    zero = query_images([str(fake.db_paths[1])], radius=0, device="cpu")
    assert [n.row for n in zero.results[0].neighbours] == [1, 4, 11]


def test_the_query_class_comes_from_the_database_or_the_runs_dataset(fake):
    queries = [fake.db_paths[5], fake.test_paths[0], fake.photos[0]]
    report = query_images([str(q) for q in queries], top=3, device="cpu")
    db, test, photo = report.results
    assert (db.label, db.class_name, db.label_source) == (2, "owl", "database")
    assert (test.label, test.class_name, test.label_source) == (2, "owl", "dataset")
    assert (photo.label, photo.class_name, photo.label_source) == (None, None, None)
    assert all(db.relevant(n) == (n.label == 2) for n in db.neighbours)
    assert all(photo.relevant(n) is None for n in photo.neighbours)
    line = db.to_dict()
    assert set(line) == {"query", "code", "label", "class", "results"}
    assert line["code"] == db.code.tobytes().hex() and len(line["code"]) == BITS // 4


def test_checkpoint_and_index_without_a_run(fake, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(fake.run_dir / "index", elsewhere)
    shutil.copy(fake.checkpoint, tmp_path / "model.pt")
    monkeypatch.setenv("HASHRET_WORKDIR", str(tmp_path / "no-runs-here"))
    report = query_images(
        [str(fake.db_paths[2])],
        checkpoint=tmp_path / "model.pt",
        index=elsewhere / "database.faiss",
        top=2,
        device="cpu",
    )
    assert report.store == fake.store
    assert [n.path for n in report.results[0].neighbours][0] == str(fake.db_paths[2])
    with pytest.raises(HashretError, match="--index"):
        query_images([str(fake.db_paths[2])], checkpoint=tmp_path / "model.pt", device="cpu")


def test_build_index_default_paths_and_round_trip(fake, tmp_path):
    assert default_index_path(fake.store) == fake.index
    assert default_index_path(tmp_path / "x" / "photos.h5") == tmp_path / "x" / "photos.faiss"
    fake.index.unlink()
    summary = build_index(index_type="hnsw", params={"m": 8, "nlist": None})
    assert summary.out == fake.index and summary.ntotal == 18 and summary.index_type == "hnsw"
    meta = read_index_metadata(fake.index)
    assert meta.sources[0]["path"] == "../codes/database.h5"  # relative: the run can move
    assert meta.model_fingerprint == fake.model.fingerprint()
    assert meta.params["m"] == 8

    copy = tmp_path / "copy.h5"
    shutil.copy(fake.store, copy)
    summary = build_index(copy, index_type="ivf", params={"nlist": 64})
    assert summary.out == tmp_path / "copy.faiss"
    assert summary.params["nlist"] == 1 and "nlist lowered" in summary.notes[0]
    loaded = BinaryIndex.load(summary.out)
    brute = brute_force(fake.db_codes[:3], fake.db_codes)
    result = loaded.search(fake.db_codes[:3], 18)  # nprobe = nlist = 1: exact
    for q, (dist, rows) in enumerate(brute):
        assert result.rows[q].tolist() == rows.tolist()
        assert result.distances[q].tolist() == dist.tolist()
    with pytest.raises(HashretError, match="unknown parameter"):
        build_index(copy, index_type="flat", params={"nlist": 4})


def new_code_file(fake: FakeRun, tmp_path: Path, model=None, labelled: bool = False) -> tuple:
    model = model or fake.model
    paths = [random_image(tmp_path / "new" / f"n{i}.png", 700 + i, (11, 9)) for i in range(3)]
    codes = oracle_codes(model, paths, check=model is fake.model)
    new = tmp_path / "new.h5"
    write_codes(
        new,
        CodeFile(
            codes,
            model.bits,
            labels=np.array([0, 1, 2]) if labelled else None,
            paths=[str(p) for p in paths],
            attrs={"model_fingerprint": model.fingerprint()},
        ),
    )
    return new, paths, codes


def test_add_extends_the_index_and_its_code_store(fake, tmp_path):
    new, paths, codes = new_code_file(fake, tmp_path)
    summary = add_to_index(new)
    assert summary.rows == range(18, 21) and summary.ntotal == 21 and summary.store == fake.store
    store = read_codes(fake.store)
    np.testing.assert_array_equal(store.codes, np.concatenate([fake.db_codes, codes]))
    assert store.paths == [str(p) for p in fake.db_paths + paths]
    assert store.labels.tolist() == fake.db_labels.tolist() + [-1, -1, -1]
    assert store.attrs["model_fingerprint"] == fake.model.fingerprint()
    meta = read_index_metadata(fake.index)
    assert meta.ntotal == 21
    assert [s["rows"] for s in meta.sources] == [18, 3]
    assert meta.sources[1]["path"] == str(new.resolve())
    assert not [p for p in fake.store.parent.iterdir() if p.name.startswith(".")]

    report = query_images([str(p) for p in paths], top=21, device="cpu")
    everything = np.concatenate([fake.db_codes, codes])
    for result, (dist, rows) in zip(report.results, brute_force(codes, everything), strict=True):
        assert [n.row for n in result.neighbours] == rows.tolist()
        assert [n.distance for n in result.neighbours] == dist.tolist()
        assert result.label_source is None  # found in the database, but without a label
    assert report.results[1].neighbours[0].row in (18, 19, 20)
    top = report.results[1].neighbours[0]
    assert top.path == str(paths[top.row - 18]) and top.label is None and top.class_name is None


def refused_code_file(fake: FakeRun, tmp_path: Path, problem: str) -> tuple[Path, str]:
    """A code file that `index add` must refuse, and words its error says (CLI tests too)."""
    if problem in ("bits", "model"):
        model = make_model(bits=24) if problem == "bits" else make_model(seed=5)
        return new_code_file(fake, tmp_path, model=model)[0], {
            "bits": "24-bit codes",
            "model": "another model",
        }[problem]
    raise ValueError(problem)


@pytest.mark.parametrize("problem", ["bits", "model", "no fingerprint", "itself", "classes"])
def test_add_refuses_codes_that_do_not_belong_and_writes_nothing(fake, tmp_path, problem):
    if problem in ("bits", "model"):
        new, match = refused_code_file(fake, tmp_path, problem)
    elif problem == "no fingerprint":
        new = tmp_path / "bare.h5"
        write_codes(new, CodeFile(fake.db_codes[:2], BITS))
        match = "no model fingerprint"
    elif problem == "itself":
        new, match = fake.store, "own code file"
    else:
        new, _, _ = new_code_file(fake, tmp_path, labelled=True)
        cf = read_codes(new)
        cf.attrs["class_names"] = json.dumps(["a", "b", "c"])
        write_codes(new, cf)
        match = "other classes"
    before = tree_snapshot(fake.run_dir)
    with pytest.raises(HashretError, match=match):
        add_to_index(new)
    assert tree_snapshot(fake.run_dir) == before


def test_an_index_out_of_step_with_its_code_store_is_reported(fake):
    store = read_codes(fake.store)
    write_codes(fake.store, CodeFile(store.codes[:10], BITS, attrs=store.attrs))
    with pytest.raises(HashretError, match="holds 18 codes .* holds 10"):
        query_images([str(fake.photos[0])], device="cpu")


def test_faiss_threads_are_restored():
    import faiss

    before = faiss.omp_get_max_threads()
    with faiss_threads(1):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before
