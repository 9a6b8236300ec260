"""The model factory (timm style): :func:`create_model` builds a registered backbone by name,
loads its starting weights and puts the hash head on top."""

from __future__ import annotations

from pathlib import Path

import torch

from hashcli.errors import HashretError
from hashcli.model.hashnet import HashNet, check_output_layer
from hashcli.model.names import check_whole_byte_bits
from hashcli.model.registry import get_backbone_spec
from hashcli.model.state_dict import load_backbone_state, read_state_dict


def create_model(
    name: str,
    bits: int,
    *,
    pretrained: bool = True,
    weights: Path | str | None = None,
    image_size: int | None = None,
    output_layer: str = "none",
    download_timeout: float = 5.0,
) -> HashNet:
    """Build backbone ``name`` with a ``bits``-bit hash head.

    Starting weights of the backbone, in order of precedence:

    - ``weights``: a state dict file (``torch.load(weights_only=True)``), either a full
      torchvision state dict (its classifier keys are ignored), a backbone-only one, or a
      hashret checkpoint/HashNet state dict (its backbone part is used);
    - ``pretrained=True``: the backbone's ImageNet weights, read from the torch cache
      (``$TORCH_HOME/hub/checkpoints/<file>``); when absent, one download is tried with a
      ``download_timeout``-second network timeout (0 disables it) and on failure a
      HashretError names the file to place, where, and the alternatives;
    - otherwise random initialisation.

    ``tiny`` has no pretrained weights, so ``pretrained=True`` is ignored for it (the config
    records ``init: "random"``). The head is always freshly initialised.
    ``image_size`` defaults to the backbone's native size; a ViT built at another size
    interpolates its pretrained position embeddings. ``output_layer``: what follows the head
    (:data:`hashcli.model.hashnet.OUTPUT_LAYERS`; a training method says which it needs).
    """
    spec = get_backbone_spec(name)
    check_whole_byte_bits(bits)
    if image_size is None:
        image_size = spec.default_image_size
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise HashretError(f"image size must be an integer >= 8, got {image_size!r}")

    check_output_layer(output_layer)
    # Resolve the weights file first, so a missing file fails before any slow construction.
    state: dict[str, torch.Tensor] | None = None
    if weights is not None:
        weights = Path(weights)
        state = read_state_dict(weights)
        init = f"file:{weights.name}"
    elif pretrained and spec.pretrained_weights is not None:
        from hashcli.model.weights import load_pretrained_state

        state = load_pretrained_state(
            spec.pretrained_weights, backbone=name, download_timeout=download_timeout
        )
        init = f"imagenet:{spec.pretrained_weights}"
    else:
        init = "random"

    backbone = spec.build(image_size)
    if state is not None:
        load_backbone_state(spec, backbone, state, source=str(weights or spec.pretrained_weights))
    config = {
        "backbone": name,
        "bits": bits,
        "image_size": image_size,
        "output_layer": output_layer,
        "init": init,
    }
    return HashNet(backbone, spec.feature_dim, bits, config=config)
