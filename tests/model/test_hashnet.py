"""HashNet: shapes, codes with sign(0) = +1, config and fingerprint."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from hashcli.errors import HashretError
from hashcli.model.factory import create_model
from hashcli.model.hashnet import config_digest, sign_codes


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return create_model("tiny", 16).eval()


@pytest.mark.parametrize("image_size", [32, 224])
def test_tiny_forward_shape_and_pre_activation_output(image_size):
    torch.manual_seed(0)
    model = create_model("tiny", 24, image_size=image_size)
    images = torch.randn(3, 3, image_size, image_size)
    out = model(images)
    assert out.shape == (3, 24) and out.dtype == torch.float32
    # The linear head's output itself: each method applies its own activation.
    torch.testing.assert_close(out, model.backbone(images) @ model.head.weight.T + model.head.bias)
    assert out.std() > 0
    assert model.config == {
        "backbone": "tiny",
        "bits": 24,
        "feature_dim": 128,
        "image_size": image_size,
        "output_layer": "none",
        "init": "random",
    }
    assert 50_000 < sum(p.numel() for p in model.backbone.parameters()) < 150_000


def test_batchnorm_output_layer_normalises_the_head_output():
    torch.manual_seed(0)
    model = create_model("tiny", 16, output_layer="batchnorm").train()
    images = torch.randn(8, 3, 32, 32)
    out = model(images)
    raw = model.backbone(images) @ model.head.weight.T + model.head.bias
    # BatchNorm1d in training mode by hand: (x - batch mean) / sqrt(biased var + eps).
    expected = (raw - raw.mean(0)) / torch.sqrt(raw.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    assert model.config["output_layer"] == "batchnorm"
    assert {k for k in model.state_dict() if k.startswith("output.")} == {
        "output.weight",
        "output.bias",
        "output.running_mean",
        "output.running_var",
        "output.num_batches_tracked",
    }
    with pytest.raises(HashretError, match="unknown output layer 'relu'"):
        create_model("tiny", 16, output_layer="relu")


def test_fingerprints_of_models_from_before_output_layers_are_unchanged():
    # The config part is sha256 of the canonical JSON of the architecture keys, by hand; an
    # output layer of "none" (every earlier model's) adds nothing to it.
    model = create_model("tiny", 16)
    arch = {"backbone": "tiny", "bits": 16, "feature_dim": 128, "image_size": 32}
    expected = hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:8]
    assert model.fingerprint()[:8] == expected
    assert config_digest({**arch}) == config_digest({**arch, "output_layer": "none"})
    batchnorm = create_model("tiny", 16, output_layer="batchnorm")
    assert batchnorm.fingerprint()[:8] != expected


def test_encode_matches_sign_of_forward(tiny_model):
    images = torch.randn(5, 3, 32, 32)
    codes = tiny_model.encode(images)
    assert codes.dtype == torch.bool and codes.shape == (5, 16)
    assert torch.equal(codes, tiny_model(images) >= 0)
    assert codes.any() and not codes.all()


def test_zero_output_codes_as_plus_one(tiny_model):
    assert sign_codes(torch.tensor([[0.0, -0.0, 1e-30, -1e-30, -1.0]])).tolist() == [
        [True, True, True, False, False]
    ]
    with torch.no_grad():
        tiny_model.head.weight.zero_()
        tiny_model.head.bias.zero_()
    codes = tiny_model.encode(torch.randn(2, 3, 32, 32))
    assert codes.all()


@pytest.mark.parametrize("bits", [0, 12, 1032, -8])
def test_bits_must_be_whole_bytes(bits):
    with pytest.raises(HashretError, match="multiple of 8"):
        create_model("tiny", bits)


def test_fingerprint_stable_and_sensitive(tiny_model):
    fingerprint = tiny_model.fingerprint()
    assert fingerprint == tiny_model.fingerprint()
    assert len(fingerprint) == 25 and fingerprint[8] == "-"

    twin = create_model("tiny", 16)
    twin.load_state_dict(tiny_model.state_dict())
    assert twin.fingerprint() == fingerprint

    with torch.no_grad():
        twin.head.bias[0] += 1e-6
    assert twin.fingerprint() != fingerprint
    assert twin.fingerprint()[:8] == fingerprint[:8]  # same architecture

    # A different architecture changes the config part even with equal-looking weights.
    wider = create_model("tiny", 24)
    assert wider.fingerprint()[:8] != fingerprint[:8]


def test_vit_needs_multiple_of_patch_size():
    with pytest.raises(HashretError, match="multiple of 16"):
        create_model("vit_b_16", 32, pretrained=False, image_size=100)
