"""The numpy eval transform (ONNX engine) against torchvision's (the reference), element for
element, over image sizes that exercise the resize rounding and the crop anchor."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hashcli.data.preprocess import Preprocessing, eval_array
from hashcli.data.transforms import eval_transform


@pytest.mark.parametrize("image_size", [32, 112, 224])
def test_equals_torchvision_eval_transform(image_size):
    rng = np.random.default_rng(image_size)
    reference = eval_transform(image_size)
    shapes = [(image_size, image_size), (37, 500), (500, 37), (333, 334), (1, 1), (8, 8)]
    shapes += [tuple(int(v) for v in rng.integers(1, 400, 2)) for _ in range(12)]
    for height, width in shapes:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        expected = reference(image).numpy()
        got = eval_array(image, image_size)
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.array_equal(got, expected), (height, width)


def test_round_trips_through_metadata():
    settings = Preprocessing.for_size(112)
    assert settings.resize == 128
    assert Preprocessing.from_dict(settings.to_dict()) == settings
    with pytest.raises(ValueError, match="interpolation"):
        Preprocessing.from_dict({**settings.to_dict(), "interpolation": "nearest"})
