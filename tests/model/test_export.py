"""Every backbone and output layer exports to ONNX, and ONNX Runtime gives the same outputs
(and so the same codes) as torch for a batch size other than the example's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hashcli.model.export import export_onnx
from hashcli.model.factory import create_model
from hashcli.model.onnx_engine import OnnxEncoder

# (backbone, image size): small sizes where the backbone allows, to keep the test short
CASES = [("tiny", 32), ("resnet18", 64), ("resnet34", 64), ("resnet50", 64), ("vit_b_16", 224)]


def _check(model, tmp_path, name):
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    encoder = OnnxEncoder(path)
    assert encoder.fingerprint() == model.fingerprint() and encoder.bits == model.bits
    size = model.config["image_size"]
    images = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(images).numpy()
    got = encoder.session.run(None, {"images": images.numpy()})[0]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())


@pytest.mark.parametrize("output_layer", ["none", "batchnorm"])
def test_tiny_with_each_output_layer(tmp_path, output_layer):
    torch.manual_seed(0)
    model = create_model(
        "tiny", 24, pretrained=False, image_size=32, output_layer=output_layer
    ).eval()
    if output_layer == "batchnorm":  # statistics other than the initial ones
        model.output.running_mean.normal_()
        model.output.running_var.uniform_(0.5, 2.0)
    _check(model, tmp_path, output_layer)


@pytest.mark.slow
@pytest.mark.parametrize(("backbone", "size"), CASES)
def test_every_backbone_exports(tmp_path, backbone, size):
    torch.manual_seed(0)
    model = create_model(backbone, 48, pretrained=False, image_size=size).eval()
    _check(model, tmp_path, backbone)
