"""Every hashing method through a real training run: what the run folder records, resume,
the classifier of GreedyHash, and the errors that leave no run behind."""

from __future__ import annotations

import json

import pytest
import torch
from train.test_loop import make_cub, outcome, small_config

from hashcli.errors import HashretError
from hashcli.model.checkpoint import load_checkpoint, save_checkpoint
from hashcli.train.codebook import hash_centres
from hashcli.train.names import METHOD_NAMES
from hashcli.workflows import runs
from hashcli.workflows.train import train

N_CLASSES = 4  # make_cub's
BITS = 16  # small_config's


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("method-data")
    make_cub(base / "data", textured=True)
    return base / "data"


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_each_method_trains_and_records_itself(method, data, tmp_path):
    workdir = tmp_path / "runs"
    result = train(small_config(data, method=method, epochs=1), workdir=workdir, run=method)
    assert result.finished and 0.0 <= result.test["map"] <= 1.0
    config = runs.read_config(workdir / method)
    record = config["method"]
    assert config["train"]["method"] == record["name"] == method
    assert all(value is not None for value in record["settings"].values())
    best = load_checkpoint(workdir / method / runs.BEST_CHECKPOINT)
    expects_centres = method in ("csq", "dpn", "orthohash")
    assert ("codebook" in best) == expects_centres == (record["codebook"] is not None)
    if expects_centres:
        # 4 classes of 16 bits: the first rows of the 16 x 16 Sylvester Hadamard matrix.
        centres = best["codebook"]["centres"].float()
        assert torch.equal(centres, hash_centres(N_CLASSES, BITS).centres)
        assert torch.equal(best["loss"]["codebook"], centres)
        assert (centres @ centres.T).diagonal().eq(BITS).all()
        assert (centres @ centres.T).fill_diagonal_(0).eq(0).all()  # orthogonal rows
    layer = "batchnorm" if method == "orthohash" else "none"
    assert best["model_config"]["output_layer"] == record["output_layer"] == layer


def test_settings_given_are_the_ones_recorded_and_used(data, tmp_path):
    config = small_config(data, method="orthohash", margin=0.5, quantization_weight=0.01, epochs=1)
    config.method_options = {"scale": "16"}
    train(config, workdir=tmp_path / "runs", run="tuned")
    record = runs.read_config(tmp_path / "runs" / "tuned")["method"]
    assert record["settings"] == {"scale": 16.0, "margin": 0.5, "quantization_weight": 0.01}


@pytest.mark.parametrize("method", ["orthohash", "greedyhash", "hashnet"])
def test_resume_continues_exactly_with_centres_classifier_and_step(method, data, tmp_path):
    """orthohash: hash centres and a batch norm; greedyhash: a classifier in the loss;
    hashnet: a loss that follows the step. Stopped in the middle of epoch 2 and resumed, each
    run ends with the same models and figures as the one nothing interrupted."""
    full = tmp_path / "full"
    train(small_config(data, method=method, epochs=3), workdir=full, run="run")
    cut = tmp_path / "cut"
    train(small_config(data, method=method, epochs=3, max_steps=3), workdir=cut, run="run")
    train(small_config(data, epochs=None), workdir=cut, run="run", resume=True)
    assert outcome(cut / "run") == outcome(full / "run")
    if method == "greedyhash":
        # The classifier was trained with the model: it moved from its initial weights.
        first = tmp_path / "first"
        train(small_config(data, method=method, epochs=3, max_steps=1), workdir=first, run="r")
        start = load_checkpoint(first / "r" / runs.LAST_CHECKPOINT)["loss"]["classifier.weight"]
        end = load_checkpoint(full / "run" / runs.LAST_CHECKPOINT)["loss"]["classifier.weight"]
        assert not torch.allclose(start, end)


def test_a_resumed_run_uses_the_centres_of_its_checkpoint(data, tmp_path):
    workdir = tmp_path / "runs"
    train(small_config(data, method="csq", epochs=2, max_steps=1), workdir=workdir, run="c")
    last_path = workdir / "c" / runs.LAST_CHECKPOINT
    last = load_checkpoint(last_path)
    swapped = last["codebook"]["centres"][[1, 0, 2, 3]].clone()  # two classes trade centres
    last["codebook"]["centres"] = swapped
    last["loss"]["codebook"] = swapped.float()
    last.pop("hashret_checkpoint")
    save_checkpoint(last_path, last)
    train(small_config(data, epochs=None), workdir=workdir, run="c", resume=True)
    best = load_checkpoint(workdir / "c" / runs.BEST_CHECKPOINT)
    assert torch.equal(best["codebook"]["centres"], swapped)
    assert torch.equal(best["loss"]["codebook"], swapped.float())


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"method": "spectral"}, "unknown method 'spectral'"),
        ({"method": "triplet", "miner": "hardest"}, "unknown miner 'hardest'"),
        ({"method": "csq", "miner": "batch-hard"}, "the csq method has no --miner option"),
        ({"method": "hashnet", "margin": 2.0}, "the hashnet method has no --margin option"),
        ({"method": "dpsh", "method_options": {"scale": "8"}}, "the dpsh method has no option"),
        ({"method": "orthohash", "method_options": {"scale": "0"}}, "scale must be > 0"),
    ],
)
def test_bad_method_settings_fail_before_anything_is_written(settings, words, data, tmp_path):
    workdir = tmp_path / "runs"
    with pytest.raises(HashretError, match=words):
        train(small_config(data, **settings), workdir=workdir, run="doomed")
    assert not (workdir / "doomed").exists()


@pytest.mark.parametrize("method", ["triplet", "greedyhash"])
def test_multi_label_data_is_refused_by_a_single_label_method(method, data, tmp_path, monkeypatch):
    import hashcli.data

    real = hashcli.data.load_dataset

    def multi_label(*args, **kwargs):
        dataset = real(*args, **kwargs)
        dataset.multi_label = True  # as the list-file datasets of multi-hot labels will be
        return dataset

    monkeypatch.setattr(hashcli.data, "load_dataset", multi_label)
    workdir = tmp_path / "runs"
    with pytest.raises(HashretError, match=f"the {method} method has no multi-label form"):
        train(small_config(data, method=method), workdir=workdir, run="doomed")
    assert not (workdir / "doomed").exists()


def test_a_run_from_before_the_methods_resumes_as_the_triplet_method(data, tmp_path):
    workdir = tmp_path / "runs"
    train(small_config(data, method="triplet", epochs=2, max_steps=1), workdir=workdir, run="old")
    config_path = workdir / "old" / "config.json"
    config = json.loads(config_path.read_text())
    for key in ("method", "method_options"):
        config["train"].pop(key)
    config["train"].update(loss="triplet", reduction="all")  # the keys older runs wrote
    config_path.write_text(json.dumps(config))
    result = train(small_config(data, epochs=None), workdir=workdir, run="old", resume=True)
    assert result.finished
    assert runs.read_config(workdir / "old")["method"]["name"] == "triplet"
