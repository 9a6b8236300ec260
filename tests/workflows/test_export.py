"""ONNX export and the onnx query engine: the same codes and results as torch, no torch imported,
and a missing, truncated or stale model.onnx never silently wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from workflows.test_query import make_fake_run, oracle_codes

from hashcli.errors import HashretError
from hashcli.model.checkpoint import model_state, save_checkpoint
from hashcli.model.onnx_engine import OnnxEncoder, checkpoint_fingerprint
from hashcli.workflows.export import export_model
from hashcli.workflows.query import query_images


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HASHRET_WORKDIR", str(tmp_path / "runs"))
    return make_fake_run(tmp_path)


def _results(report) -> list[dict]:
    return [r.to_dict() for r in report.results]


def test_export_writes_metadata_and_the_same_outputs(fake):
    result = export_model()
    assert result.path == fake.run_dir / "model.onnx"
    encoder = OnnxEncoder(result.path)
    assert encoder.fingerprint() == fake.model.fingerprint() == result.fingerprint
    assert encoder.bits == fake.model.bits
    # model.pt's fingerprint read without torch equals the one torch's loader sees
    assert checkpoint_fingerprint(fake.run_dir / "model.pt") == fake.model.fingerprint()
    from hashcli.data.images import load_image

    images = [load_image(p) for p in fake.db_paths + fake.photos]
    # codes: the onnx engine's against the torch model's (the oracle of test_query)
    assert np.array_equal(
        encoder.encode(images), oracle_codes(fake.model, fake.db_paths + fake.photos)
    )
    with torch.no_grad():
        from hashcli.data.transforms import eval_transform

        batch = torch.stack([eval_transform(fake.model.config["image_size"])(i) for i in images])
        expected = fake.model(batch).numpy()
    assert np.abs(encoder.outputs(images) - expected).max() < 1e-4


def test_onnx_and_torch_engines_give_the_same_results(fake):
    export_model()
    queries = [fake.db_paths[1], fake.photos[0], fake.test_paths[0], fake.db_paths[7]]
    onnx = query_images([str(q) for q in queries], top=6, engine="onnx")
    torch_report = query_images([str(q) for q in queries], top=6, engine="torch")
    auto = query_images([str(q) for q in queries], top=6)
    assert onnx.engine == auto.engine == "onnx" and torch_report.engine == "torch"
    assert _results(onnx) == _results(torch_report) == _results(auto)
    assert not auto.notes


def test_missing_truncated_and_stale_exports(fake):
    queries = [str(fake.photos[0])]
    # missing: auto uses torch without a word (nothing is wrong), onnx is an error
    assert query_images(queries, top=3).engine == "torch"
    with pytest.raises(HashretError, match="no model.onnx.*hashret export"):
        query_images(queries, top=3, engine="onnx")
    export_model()
    path = fake.run_dir / "model.onnx"
    good = path.read_bytes()
    # truncated: auto falls back to torch and says so once; onnx is an error
    path.write_bytes(good[: len(good) // 2])
    report = query_images(queries, top=3)
    assert report.engine == "torch" and len(report.notes) == 1
    assert "cannot load the exported model" in report.notes[0]
    with pytest.raises(HashretError, match="cannot load the exported model"):
        query_images(queries, top=3, engine="onnx")
    # stale: model.pt changed since the export (and the index with it)
    path.write_bytes(good)
    model = fake.model
    with torch.no_grad():
        model.head.bias.add_(0.5)
    save_checkpoint(fake.run_dir / "model.pt", model_state(model))
    with pytest.raises(HashretError, match="stale"):
        query_images(queries, top=3, engine="onnx")
    # auto falls back to torch, which then finds the index stale too: nothing silently wrong
    with pytest.raises(HashretError, match="fingerprint|model"):
        query_images(queries, top=3)


def test_onnx_query_imports_no_torch(fake):
    export_model()
    code = (
        "import sys, json\n"
        "from hashcli.workflows.query import query_images\n"
        f"report = query_images([{str(fake.photos[0])!r}], top=3, engine='onnx')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))\n"
        "print(json.dumps({'engine': report.engine, 'heavy': heavy}))\n"
    )
    env = {**os.environ, "HASHRET_WORKDIR": str(fake.workdir)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"engine": "onnx", "heavy": []}


def test_training_exports_the_best_model(tmp_path, monkeypatch):
    # A real digits run: model.onnx written at the end, and both engines give every test and
    # database image the same code.
    monkeypatch.setenv("HASHRET_EXPORT_ONNX", "1")
    from hashcli.codes import read_codes
    from hashcli.data.images import load_image
    from hashcli.train.config import TrainConfig
    from hashcli.workflows.train import train

    config = TrainConfig(dataset="digits", backbone="tiny", bits=16, epochs=1)
    result = train(config, workdir=tmp_path / "runs", run="onnx")
    run_dir = Path(result.run_dir)
    encoder = OnnxEncoder(run_dir / "model.onnx")
    assert encoder.fingerprint() == checkpoint_fingerprint(run_dir / "model.pt")
    for name in ("queries.h5", "database.h5"):
        written = read_codes(run_dir / "codes" / name)  # the torch engine's codes
        images = [load_image(p) for p in written.paths]
        assert np.array_equal(encoder.encode(images), written.codes), name


def test_engines_agree_on_real_photos(tmp_path, cub25_root):
    # Real CUB photos of every size and aspect, through a resnet18 (untrained: the engines are
    # compared, not the model): the same code for each.
    from hashcli.data.images import load_image
    from hashcli.data.transforms import eval_transform
    from hashcli.model.export import export_onnx
    from hashcli.model.factory import create_model

    torch.manual_seed(0)
    model = create_model("resnet18", 48, pretrained=False, image_size=64).eval()
    encoder = OnnxEncoder(export_onnx(model, tmp_path / "m.onnx"))
    photos = sorted((cub25_root / "CUB_200_2011" / "images").rglob("*.jpg"))[::25][:40]
    images = [load_image(p) for p in photos]
    with torch.no_grad():
        batch = torch.stack([eval_transform(64)(i) for i in images])
        reference = model(batch).numpy()
    outputs = encoder.outputs(images)
    assert np.abs(outputs - reference).max() < 1e-4
    assert np.array_equal(outputs >= 0, reference >= 0)


def test_a_turned_photo_finds_what_the_upright_one_finds(fake, tmp_path):
    # A database image stored turned a quarter with EXIF orientation 6 (as phones write
    # photos): the same code and the same results as the upright file.
    from PIL import Image

    upright = fake.db_paths[5]
    with Image.open(upright) as image:
        exif = Image.Exif()
        exif[0x0112] = 6
        turned = tmp_path / "turned.png"
        image.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(turned, exif=exif)
    report = query_images([str(upright), str(turned)], top=3, engine="torch")
    a, b = report.results
    assert a.code.tobytes() == b.code.tobytes()
    assert [n.row for n in a.neighbours] == [n.row for n in b.neighbours]
