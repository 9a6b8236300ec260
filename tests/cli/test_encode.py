"""``hashret encode`` through the real app (CliRunner): output, errors, bad images, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hashcli.cli.app import app
from hashcli.codes import read_codes
from hashcli.data.images import load_image
from hashcli.data.transforms import eval_transform
from hashcli.model.checkpoint import model_state, save_checkpoint
from hashcli.model.factory import create_model

runner = CliRunner()
IMAGE_SIZE = 16


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHRET_WORKDIR", str(tmp_path / "runs"))
    monkeypatch.setenv("HASHRET_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("HASHRET_DEBUG", raising=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(1)
    model = create_model("tiny", 24, pretrained=False, image_size=IMAGE_SIZE).eval()
    path = tmp_path_factory.mktemp("checkpoint") / "model.pt"
    save_checkpoint(path, model_state(model))
    return path, model


@pytest.fixture
def photos(tmp_path):
    paths = []
    for i in range(4):
        rng = np.random.default_rng(i)
        path = tmp_path / "photos" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (10 + i, 13, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def oracle_codes(model, paths):
    transform = eval_transform(IMAGE_SIZE)
    with torch.no_grad():
        outputs = torch.cat([model(transform(load_image(p)).unsqueeze(0)) for p in paths])
    assert outputs.abs().min().item() > 1e-5
    return np.packbits((outputs >= 0).numpy(), axis=1)


def _errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def test_help_has_examples():
    result = runner.invoke(app, ["encode", "--help"])
    assert result.exit_code == 0
    assert "hashret encode --dataset digits --split test --out test.h5" in result.output
    assert "--skip-bad-images" in result.output


def test_encode_a_folder_writes_codes_and_reports_json(tiny, photos, tmp_path):
    checkpoint, model = tiny
    out = tmp_path / "photos.h5"
    result = runner.invoke(
        app,
        [
            "encode",
            str(tmp_path / "photos"),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--batch-size",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["out"] == str(out) and summary["encoded"] == 4
    assert summary["skipped"] == [] and summary["skipped_count"] == 0 and summary["bits"] == 24
    assert summary["model_fingerprint"] == model.fingerprint()
    assert f"Wrote {out}" in result.stderr
    cf = read_codes(out)
    assert cf.paths == [str(p) for p in photos] and cf.labels is None
    np.testing.assert_array_equal(cf.codes, oracle_codes(model, photos))


def test_corrupt_image_without_skip_is_one_error_line_and_no_file(tiny, photos, tmp_path):
    checkpoint, _ = tiny
    bad = tmp_path / "photos" / "2.png"
    bad.write_bytes(b"\x89PNG truncated")
    out = tmp_path / "photos.h5"
    args = ["encode", str(tmp_path / "photos"), "--checkpoint", str(checkpoint), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    errors = _errors(result)
    assert len(errors) == 1 and str(bad) in errors[0] and "--skip-bad-images" in errors[0]
    assert result.stdout == "" and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # no temporary file left

    result = runner.invoke(app, [*args, "--skip-bad-images", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["skipped"] == [str(bad)] and summary["skipped_count"] == 1
    assert summary["encoded"] == 3
    assert str(bad) in result.stderr  # listed for people too
    cf = read_codes(out)
    good = [p for p in photos if p != bad]
    assert cf.paths == [str(p) for p in good]
    np.testing.assert_array_equal(cf.codes, oracle_codes(tiny[1], good))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to encode"),
        (["x.png", "--dataset", "digits", "--split", "test"], "not both"),
        (["--dataset", "digits"], "--dataset needs --split"),
        (["--dataset", "digits", "--split", "everything"], "is not one of"),
        (["x.png", "--run", "r", "--checkpoint", "c.pt"], "not both"),
    ],
)
def test_usage_errors_exit_2(args, message):
    result = runner.invoke(app, ["encode", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.replace("│", " ").split())  # rich wraps in a box


def test_loose_images_without_out_say_so(tiny, photos):
    result = runner.invoke(app, ["encode", str(photos[0]), "--checkpoint", str(tiny[0])])
    assert result.exit_code == 1
    assert _errors(result) == [
        "Error: give --out for the code file of loose images (e.g. --out photos.h5)"
    ]


def test_no_current_run_is_a_clear_error(photos, tmp_path):
    result = runner.invoke(app, ["encode", str(photos[0]), "--out", str(tmp_path / "x.h5")])
    assert result.exit_code == 1
    assert "no current run" in _errors(result)[0]


def test_dataset_split_of_a_run_goes_to_the_run_codes_folder(tiny, tmp_path):
    checkpoint, model = tiny
    root = tmp_path / "tree"
    expected = []
    for label, name in enumerate(("cat", "dog")):
        for i in range(3):
            for split in ("train", "test"):
                path = root / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                seed = 10 * label + i + (5 if split == "test" else 0)
                pixels = np.random.default_rng(seed).integers(0, 256, (9, 11, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(path)
                if split == "test":
                    expected.append((path, label))
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    train = {"dataset": "folder", "data_root": None, "val_fraction": 0.1, "seed": 0}
    (run_dir / "config.json").write_text(json.dumps({"train": train, "dataset": "folder"}))
    (run_dir / "model.pt").write_bytes(Path(checkpoint).read_bytes())
    (tmp_path / "runs" / "CURRENT").write_text("r1\n")

    result = runner.invoke(
        app, ["encode", "--dataset", "folder", "--data-root", str(root), "--split", "test", "-q"]
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""  # --quiet, no --json
    cf = read_codes(run_dir / "codes" / "folder-test.h5")
    assert cf.paths == [str(p) for p, _ in expected]
    np.testing.assert_array_equal(cf.labels, [label for _, label in expected])
    np.testing.assert_array_equal(cf.codes, oracle_codes(model, [p for p, _ in expected]))
    assert cf.attrs["run"] == "r1" and json.loads(cf.attrs["class_names"]) == ["cat", "dog"]
