"""``torchrun -m hashcli encode``: two gloo processes write the file one process writes.

Each test launches ``python -m torch.distributed.run --standalone --nproc_per_node 2`` (a free
port is picked by the standalone rendezvous) on the CPU, and holds the result to an in-process,
single-process ``encode_to_file`` of the same input.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import build_cub
from train.test_distributed import torchrun

from hashcli.codes import read_codes
from hashcli.model.checkpoint import model_state, save_checkpoint
from hashcli.model.factory import create_model
from hashcli.workflows.encode import encode_to_file


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model's checkpoint and a CUB tree of 11 images (3 classes), one unreadable."""
    base = tmp_path_factory.mktemp("encode-dist")
    torch.manual_seed(3)
    model = create_model("tiny", 16, pretrained=False, image_size=16)
    checkpoint = save_checkpoint(base / "model.pt", model_state(model))
    images = [(100 + i, 1 + i % 3, i % 4 != 0) for i in range(11)]
    names = {1: "001.Alpha", 2: "002.Beta", 3: "003.Gamma"}
    written = build_cub(base / "data", images, names)
    bad = next(rel for rel, v in written.items() if v["id"] == 105)
    (base / "data" / "CUB_200_2011" / "images" / bad).write_bytes(b"\xff\xd8 not a jpeg")
    return base, checkpoint


def encode_args(base: Path, checkpoint: Path, out: str) -> list[str]:
    return [
        "encode",
        "--dataset",
        "cub",
        "--split",
        "all",
        "--data-root",
        str(base / "data"),
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(base / out),
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--workers",
        "0",
    ]


def test_two_processes_write_the_single_process_file(setup):
    base, checkpoint = setup
    done = torchrun(
        *encode_args(base, checkpoint, "two.h5"), "--skip-bad-images", "--json", cwd=base
    )
    assert done.returncode == 0, done.stderr[-3000:]
    single = encode_to_file(
        dataset="cub",
        split="all",
        data_root=base / "data",
        checkpoint=checkpoint,
        out=base / "one.h5",
        device="cpu",
        batch_size=3,
        workers=0,
        skip_bad_images=True,
    )
    one, two = read_codes(base / "one.h5"), read_codes(base / "two.h5")
    assert len(one) == 10  # 11 listed, one unreadable
    np.testing.assert_array_equal(two.codes, one.codes)
    np.testing.assert_array_equal(two.labels, one.labels)
    assert two.paths == one.paths
    assert len({row.tobytes() for row in one.codes}) > 1  # codes that tell images apart
    attrs_one = {k: v for k, v in one.attrs.items() if k != "created"}
    attrs_two = {k: v for k, v in two.attrs.items() if k != "created"}
    assert attrs_two == attrs_one
    # The skipped image is reported (rank 0's summary) as the single process reports it.
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["skipped"] == single.skipped and len(single.skipped) == 1
    assert summary["encoded"] == 10
    assert sorted(p.name for p in base.iterdir() if p.suffix == ".h5") == ["one.h5", "two.h5"]


def test_an_unreadable_image_stops_every_process_and_writes_nothing(setup):
    base, checkpoint = setup
    done = torchrun(*encode_args(base, checkpoint, "strict.h5"), cwd=base)
    assert done.returncode != 0
    assert "img_00105.jpg" in done.stderr and "nothing written" in done.stderr
    assert not (base / "strict.h5").exists()
