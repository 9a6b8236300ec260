"""Checkpoints: round trip, weights_only refusal of code, truncated and foreign files."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from hashcli.errors import FormatError, HashretError
from hashcli.model.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_model,
    model_state,
    restore_rng_state,
    save_checkpoint,
)
from hashcli.model.factory import create_model
from hashcli.train.sampler import PKSampler
from hashcli.train.schedule import build_optimizer, build_scheduler


class _CreatesFile:
    """Unpickling this calls open(path, "w"): it creates a file, as a hostile pickle could."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _trained_state(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny", 16)
    optimizer = build_optimizer(model, 1e-3, backbone_lr_mult=0.1)
    scheduler = build_scheduler(optimizer, "inverse-sqrt", warmup_steps=3)
    sampler = PKSampler([0, 0, 1, 1, 2, 2, 3, 3], p=2, k=2, seed=4)
    for _ in range(2):
        model(torch.randn(4, 3, 32, 32)).pow(2).sum().backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler, sampler


def test_round_trip_with_training_state(tmp_path):
    model, optimizer, scheduler, sampler = _trained_state(tmp_path)
    state = {
        **model_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "sampler": sampler.state_dict(position=1),
        "rng": capture_rng_state(),
        "config": {"bits": 16, "lr": 1e-3, "run": "demo", "tags": ["a", "b"]},
        "epoch": 3,
        "step": 2,
        "metrics": {"val_map": 0.5, "history": [0.1, 0.2]},
    }
    path = save_checkpoint(tmp_path / "run" / "last.pt", state)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left

    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["step"] == 2 and loaded["metrics"] == state["metrics"]
    assert loaded["config"] == state["config"] and loaded["sampler"] == state["sampler"]
    assert loaded["fingerprint"] == model.fingerprint()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded["model"][key], value)

    fresh = create_model("tiny", 16)
    fresh_optimizer = build_optimizer(fresh, 1e-3, backbone_lr_mult=0.1)
    fresh_scheduler = build_scheduler(fresh_optimizer, "inverse-sqrt", warmup_steps=3)
    fresh.load_state_dict(loaded["model"])
    fresh_optimizer.load_state_dict(loaded["optimizer"])
    fresh_scheduler.load_state_dict(loaded["scheduler"])
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert fresh_optimizer.state_dict()["state"][0]["step"] == 2


def test_load_model_rebuilds_without_pretrained_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    model, *_ = _trained_state(tmp_path)
    model.eval()
    path = save_checkpoint(tmp_path / "model.pt", model_state(model))
    restored = load_model(path)
    assert not restored.training
    assert restored.config == model.config
    assert restored.fingerprint() == model.fingerprint()
    images = torch.randn(3, 3, 32, 32)
    assert torch.equal(restored(images), model(images))


def test_damaged_weights_are_detected_by_fingerprint(tmp_path):
    model, *_ = _trained_state(tmp_path)
    state = model_state(model)
    state["model"]["head.bias"] = state["model"]["head.bias"] + 1
    path = save_checkpoint(tmp_path / "model.pt", state)
    with pytest.raises(FormatError, match="fingerprint"):
        load_model(path)


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_checkpoint_that_would_run_code_is_refused(tmp_path, writer):
    marker = tmp_path / "created_by_unpickling"
    payload = {"model": {}, "hashret_checkpoint": 1, "evil": _CreatesFile(marker)}
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))

    with pytest.raises(FormatError, match="refusing to load"):
        load_checkpoint(path)
    with pytest.raises(FormatError, match="refusing to load"):
        load_model(path)
    assert not marker.exists()

    # The payload is real: plain unpickling does create the file.
    witness = tmp_path / "witness"
    pickle.loads(pickle.dumps(_CreatesFile(witness))).close()
    assert witness.exists()


def test_truncated_foreign_and_missing_files(tmp_path):
    model, *_ = _trained_state(tmp_path)
    good = save_checkpoint(tmp_path / "good.pt", model_state(model))
    data = good.read_bytes()

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="truncated"):
        load_checkpoint(truncated)

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00hello, not a checkpoint" * 10)
    with pytest.raises(FormatError, match="junk.pt"):
        load_checkpoint(junk)

    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(FormatError, match="not a hashret checkpoint"):
        load_checkpoint(foreign)

    with pytest.raises(HashretError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")


def test_save_refuses_non_builtin_values(tmp_path):
    with pytest.raises(TypeError, match=r"state\['metrics'\]\['curve'\] is a ndarray"):
        save_checkpoint(tmp_path / "x.pt", {"metrics": {"curve": np.zeros(3)}})
    assert not any(tmp_path.iterdir())


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(11)
    np.random.seed(12)
    random.seed(13)
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's state
    state = capture_rng_state()
    path = save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    expected = (torch.rand(3), np.random.standard_normal(2), np.random.rand(2), random.random())

    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng_state(load_checkpoint(path)["rng"])
    actual = (torch.rand(3), np.random.standard_normal(2), np.random.rand(2), random.random())
    assert torch.equal(actual[0], expected[0])
    assert np.array_equal(actual[1], expected[1]) and np.array_equal(actual[2], expected[2])
    assert actual[3] == expected[3]


@pytest.mark.gpu
def test_cuda_model_fingerprint_and_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny", 16).eval()
    cpu_fingerprint = model.fingerprint()
    images = torch.randn(4, 3, 32, 32)
    cpu_out = model(images)
    model.cuda()
    assert model.fingerprint() == cpu_fingerprint  # independent of the device
    torch.testing.assert_close(model(images.cuda()).cpu(), cpu_out, atol=1e-4, rtol=1e-4)

    path = save_checkpoint(tmp_path / "m.pt", {**model_state(model), "rng": capture_rng_state()})
    loaded = load_checkpoint(path)
    assert all(t.device.type == "cpu" for t in loaded["model"].values())
    assert all(t.device.type == "cpu" for t in loaded["rng"]["cuda"])
    restore_rng_state(loaded["rng"])
    restored = load_model(path, device="cuda")
    assert next(restored.parameters()).is_cuda and restored.fingerprint() == cpu_fingerprint
