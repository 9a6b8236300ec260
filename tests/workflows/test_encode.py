"""Encoding: codes against a per-image oracle, row order, paths, bad images, dataset splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hashcli.codes import read_codes
from hashcli.data import load_dataset
from hashcli.data.images import load_image
from hashcli.data.records import ImageRecord
from hashcli.data.transforms import eval_transform
from hashcli.errors import DataError, HashretError
from hashcli.model.checkpoint import model_state, save_checkpoint
from hashcli.model.factory import create_model
from hashcli.model.inference import encode_records, split_eval_transform
from hashcli.workflows.encode import encode_to_file

IMAGE_SIZE = 16
BITS = 16


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(checkpoint path, the model object it was saved from)."""
    torch.manual_seed(0)
    model = create_model("tiny", BITS, pretrained=False, image_size=IMAGE_SIZE).eval()
    path = tmp_path_factory.mktemp("checkpoint") / "model.pt"
    save_checkpoint(path, model_state(model))
    return path, model


def write_noise(path: Path, seed: int) -> Path:
    """A random RGB image of a seed-dependent size (format from the extension)."""
    rng = np.random.default_rng(seed)
    height, width = 12 + seed % 5, 14 + (3 * seed) % 7
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def oracle_codes(model: torch.nn.Module, paths: list[Path]) -> np.ndarray:
    """One image at a time: load_image -> eval_transform -> model -> (output >= 0) -> packbits."""
    transform = eval_transform(IMAGE_SIZE)
    rows = []
    with torch.no_grad():
        for path in paths:
            output = model(transform(load_image(path)).unsqueeze(0))
            # An output this close to 0 could flip between batched and single forwards.
            assert output.abs().min().item() > 1e-5
            rows.append(np.packbits((output >= 0).numpy(), axis=1))
    codes = np.concatenate(rows)
    assert len({row.tobytes() for row in codes}) > 1, "the oracle must tell images apart"
    return codes


@pytest.fixture
def photos(tmp_path):
    """photos/{0..4}.png|.jpg (3 PNG, 2 JPEG) in a fresh folder."""
    return [
        write_noise(tmp_path / "photos" / f"{i}.{'jpg' if i % 2 else 'png'}", i) for i in range(5)
    ]


def _left_behind(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_loose_images_match_the_oracle_in_input_order(tiny, photos, tmp_path):
    checkpoint, model = tiny
    listing = tmp_path / "list.txt"
    listing.write_text("photos/1.jpg\nphotos/0.png\n")
    out = tmp_path / "codes.h5"
    # Argument order: a glob (sorted), then a file already seen, then the list file's entries.
    summary = encode_to_file(
        [str(tmp_path / "photos" / "*.png"), str(photos[2])],
        list_file=listing,
        checkpoint=checkpoint,
        out=out,
        device="cpu",
        batch_size=2,
    )
    expected = [photos[0], photos[2], photos[4], tmp_path / "photos/1.jpg"]
    cf = read_codes(out)
    assert cf.bits == BITS and cf.labels is None
    assert cf.paths == [str(p) for p in expected]
    np.testing.assert_array_equal(cf.codes, oracle_codes(model, expected))
    assert cf.attrs["model_fingerprint"] == model.fingerprint()
    assert cf.attrs["backbone"] == "tiny" and cf.attrs["dataset"] == "images"
    assert cf.attrs["checkpoint"] == str(checkpoint) and "class_names" not in cf.attrs
    assert "created" in cf.attrs
    assert summary.out == out and summary.encoded == 4 and summary.skipped == []
    assert summary.bits == BITS and summary.images_per_second > 0 and summary.run is None


@pytest.mark.parametrize("size", [16, 224])
def test_split_eval_transform_equals_eval_transform_exactly(size, photos):
    per_image, per_batch = split_eval_transform(size)
    assert per_batch is not None
    images = [load_image(p) for p in photos]
    halves = [per_image(image) for image in images]
    assert all(h.dtype == torch.uint8 and h.shape == (3, size, size) for h in halves)
    expected = torch.stack([eval_transform(size)(image) for image in images])
    assert torch.equal(per_batch(torch.stack(halves)), expected)


def test_encode_records_with_a_worker_matches_the_oracle_and_keeps_threads(tiny, photos):
    _, model = tiny
    records = [ImageRecord(p, label=i % 2, split="test") for i, p in enumerate(photos)]
    threads = torch.get_num_threads()
    calls = []
    result = encode_records(
        model,
        records,
        device=torch.device("cpu"),
        batch_size=2,
        workers=1,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert torch.get_num_threads() == threads
    assert result.workers == 1
    np.testing.assert_array_equal(result.codes, oracle_codes(model, photos))
    np.testing.assert_array_equal(result.rows, np.arange(5))
    np.testing.assert_array_equal(result.labels, [0, 1, 0, 1, 0])
    assert calls == [(0, 5), (2, 5), (4, 5), (5, 5)]


def test_encoding_runs_in_float32_even_inside_a_callers_bf16_autocast(tiny, photos):
    """Codes are signs, and bf16 flips bits near 0: encoding turns autocast off (a database
    encoded on a GPU must match queries encoded on a CPU)."""
    _, model = tiny
    records = [ImageRecord(p, label=0, split="test") for p in photos]
    seen = []

    def spy(module, inputs):
        seen.append((torch.is_autocast_enabled("cpu"), inputs[0].dtype))

    hook = model.register_forward_pre_hook(spy)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.is_autocast_enabled("cpu")  # the spy can see an autocast region
            result = encode_records(model, records, device=torch.device("cpu"), workers=0)
    finally:
        hook.remove()
    assert seen and all(state == (False, torch.float32) for state in seen)
    np.testing.assert_array_equal(result.codes, oracle_codes(model, photos))


def test_a_corrupt_image_fails_naming_it_and_writes_nothing(tiny, photos, tmp_path):
    checkpoint, _ = tiny
    bad = tmp_path / "photos" / "3.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a JPEG")
    out = tmp_path / "out" / "codes.h5"
    out.parent.mkdir()
    with pytest.raises(DataError) as caught:
        encode_to_file(
            [str(tmp_path / "photos")], checkpoint=checkpoint, out=out, device="cpu", batch_size=2
        )
    message = str(caught.value)
    assert str(bad) in message and "--skip-bad-images" in message and "\n" not in message
    assert _left_behind(out.parent) == []


def test_skip_bad_images_leaves_them_out_and_lists_them(tiny, photos, tmp_path):
    checkpoint, model = tiny
    bad = tmp_path / "photos" / "3.jpg"
    bad.write_bytes(b"junk")
    out = tmp_path / "codes.h5"
    summary = encode_to_file(
        [str(tmp_path / "photos")],
        checkpoint=checkpoint,
        out=out,
        device="cpu",
        batch_size=2,
        workers=1,
        skip_bad_images=True,
    )
    good = [photos[i] for i in (0, 1, 2, 4)]
    assert summary.skipped == [str(bad)] and summary.encoded == 4
    cf = read_codes(out)
    assert cf.paths == [str(p) for p in good]
    np.testing.assert_array_equal(cf.codes, oracle_codes(model, good))
    assert cf.attrs["skipped_images"] == 1


def test_all_images_bad_is_an_error_even_when_skipping(tiny, tmp_path):
    checkpoint, _ = tiny
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"junk")
    out = tmp_path / "codes.h5"
    with pytest.raises(HashretError, match="none of the 2 images could be read"):
        encode_to_file(
            [str(tmp_path / "*.png")], checkpoint=checkpoint, out=out, skip_bad_images=True
        )
    assert not out.exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "nothing to encode"),
        ({"images": ["x.png"], "dataset": "digits", "split": "test"}, "not both"),
        ({"dataset": "digits"}, "needs --split"),
        ({"dataset": "digits", "split": "validation"}, "unknown split"),
        ({"images": ["x.png"], "split": "test"}, "--split needs --dataset"),
    ],
)
def test_bad_arguments_fail_before_anything_is_loaded(kwargs, message, tmp_path):
    # The checkpoint does not exist: the argument check must come first.
    with pytest.raises(HashretError, match=message):
        encode_to_file(checkpoint=tmp_path / "missing.pt", out=tmp_path / "x.h5", **kwargs)


def test_loose_images_need_an_out_path(tiny, photos):
    checkpoint, _ = tiny
    with pytest.raises(HashretError, match="give --out"):
        encode_to_file([str(photos[0])], checkpoint=checkpoint)


def build_folder_dataset(root: Path) -> dict[str, list[tuple[Path, int]]]:
    """root/{train,test}/{ant,bee}/: 4 train and 2 test images per class; returns the oracle."""
    layout: dict[str, list[tuple[Path, int]]] = {"train": [], "test": []}
    seed = 0
    for split, count in (("train", 4), ("test", 2)):
        for label, name in enumerate(("ant", "bee")):
            for i in range(count):
                path = write_noise(root / split / name / f"{i}.png", seed)
                layout[split].append((path, label))
                seed += 1
    return layout


def test_dataset_split_with_a_loose_checkpoint(tiny, tmp_path):
    checkpoint, model = tiny
    root = tmp_path / "tree"
    layout = build_folder_dataset(root)
    with pytest.raises(HashretError, match="give --out"):
        encode_to_file(dataset="folder", split="test", data_root=root, checkpoint=checkpoint)
    out = tmp_path / "test.h5"
    summary = encode_to_file(
        dataset="folder", split="test", data_root=root, checkpoint=checkpoint, out=out
    )
    cf = read_codes(out)
    expected = layout["test"]
    assert cf.paths == [str(p) for p, _ in expected]
    np.testing.assert_array_equal(cf.labels, [label for _, label in expected])
    np.testing.assert_array_equal(cf.codes, oracle_codes(model, [p for p, _ in expected]))
    assert cf.attrs["dataset"] == "folder" and cf.attrs["split"] == "test"
    assert json.loads(cf.attrs["class_names"]) == ["ant", "bee"]
    assert summary.labels and summary.encoded == 4


def make_folder_run(tmp_path: Path, checkpoint: Path, val_fraction: float, seed: int) -> Path:
    """A folder dataset at ``tmp_path/tree`` and a run trained on it with this carve."""
    root = tmp_path / "tree"
    build_folder_dataset(root)
    train = {"dataset": "folder", "data_root": str(root), "val_fraction": val_fraction}
    return make_run(tmp_path / "runs", checkpoint, {**train, "seed": seed})


def make_run(workdir: Path, checkpoint: Path, train: dict) -> Path:
    """A run folder (config.json, model.pt) made current in ``workdir``."""
    run_dir = workdir / "run1"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"train": train, "dataset": train["dataset"]}))
    (run_dir / "model.pt").write_bytes(checkpoint.read_bytes())
    (workdir / "CURRENT").write_text("run1\n")
    return run_dir


def test_dataset_split_of_the_current_run_carves_val_as_training_did(tiny, tmp_path):
    checkpoint, model = tiny
    run_dir = make_folder_run(tmp_path, checkpoint, val_fraction=0.5, seed=3)
    root = tmp_path / "tree"
    # Neither --data-root nor --out: the run's data root, and the run's codes folder.
    summary = encode_to_file(dataset="folder", split="val", workdir=tmp_path / "runs")
    assert summary.out == run_dir / "codes" / "folder-val.h5"
    expected = load_dataset("folder", root, val_fraction=0.5, seed=3).split("val")
    default_carve = load_dataset("folder", root).split("val")
    assert len(expected) == 4 and len(default_carve) == 2  # the run's carve, not the default
    cf = read_codes(summary.out)
    assert cf.paths == [str(r.path) for r in expected]
    np.testing.assert_array_equal(cf.labels, [r.label for r in expected])
    np.testing.assert_array_equal(cf.codes, oracle_codes(model, [r.path for r in expected]))
    assert cf.attrs["run"] == "run1" and summary.run == "run1"


def test_an_empty_split_is_an_error(tiny, tmp_path):
    checkpoint, _ = tiny
    run_dir = make_folder_run(tmp_path, checkpoint, val_fraction=0.0, seed=0)
    with pytest.raises(HashretError, match="no images in the val split"):
        encode_to_file(dataset="folder", split="val", run=str(run_dir))
    assert not (run_dir / "codes").exists()


def test_the_database_split_is_the_datasets_database_role(tiny, tmp_path, monkeypatch):
    """--split database: the train split for a folder tree; CIFAR-10's own database images
    (none of them train or test images) for the cifar10 protocol."""
    from builders import build_cifar

    from hashcli.data import cifar, load_dataset

    checkpoint, model = tiny
    layout = build_folder_dataset(tmp_path / "tree")
    out = tmp_path / "db.h5"
    encode_to_file(
        dataset="folder",
        split="database",
        data_root=tmp_path / "tree",
        checkpoint=checkpoint,
        out=out,
    )
    assert read_codes(out).paths == [str(p) for p, _ in layout["train"]]

    monkeypatch.setattr(cifar, "PROTOCOLS", {"cifar10": (2, 5, False, True)})
    build_cifar(tmp_path / "c", per_class=12)
    out = tmp_path / "cifar-db.h5"
    encode_to_file(
        dataset="cifar10",
        split="database",
        data_root=tmp_path / "c",
        checkpoint=checkpoint,
        out=out,
    )
    cf = read_codes(out)
    dataset = load_dataset("cifar10", tmp_path / "c")
    expected = [r.path for r in dataset.records if r.split == "database"]
    assert cf.paths == [str(p) for p in expected] and len(expected) == 50
    assert cf.attrs["split"] == "database"
    np.testing.assert_array_equal(cf.codes[:5], oracle_codes(model, expected[:5]))


def test_a_multi_label_split_gets_multi_hot_labels(tiny, tmp_path):
    from builders import build_lists

    checkpoint, _ = tiny
    rows = {"train": [(0, 1), (2,), ()], "test": [(1,), (0, 2)], "database": [(), (0, 1, 2)]}
    build_lists(tmp_path / "l", rows, 3)
    out = tmp_path / "db.h5"
    encode_to_file(
        dataset="lists", split="database", data_root=tmp_path / "l", checkpoint=checkpoint, out=out
    )
    np.testing.assert_array_equal(read_codes(out).labels.astype(bool), [[0, 0, 0], [1, 1, 1]])
