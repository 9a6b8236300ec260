"""The built-in backbones: torchvision ResNets and ViT-B/16, and ``tiny`` for CPU runs and tests.

Each builder takes the square input size in pixels and returns a module mapping images
``(N, 3, S, S)`` float to features ``(N, feature_dim)`` float, with the classifier removed.
Builders never download: weights are loaded afterwards by :func:`~hashcli.model.factory.
create_model`.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer, interpolate_embeddings

from hashcli.errors import HashretError
from hashcli.model.registry import register_backbone


def _register_resnet(depth: int, feature_dim: int) -> None:
    """Register torchvision's ResNet-``depth``, classifier removed, as ``resnet<depth>``."""
    name = f"resnet{depth}"

    def build(image_size: int) -> nn.Module:
        model = getattr(torchvision.models, name)(weights=None)
        model.fc = nn.Identity()
        return model

    build.__doc__ = f"ResNet-{depth} (torchvision), {feature_dim} features; any input size."
    register_backbone(
        name,
        feature_dim=feature_dim,
        pretrained_weights=f"ResNet{depth}_Weights.IMAGENET1K_V1",
        classifier_prefixes=("fc.",),
    )(build)


for _depth, _features in ((18, 512), (34, 512), (50, 2048)):
    _register_resnet(_depth, _features)


def interpolate_vit_position_embedding(
    state: dict[str, torch.Tensor], backbone: nn.Module
) -> dict[str, torch.Tensor]:
    """Resize a ViT state dict's position embeddings to ``backbone``'s patch grid.

    The class-token embedding is kept; the patch grid is resized bicubically (torchvision's
    ``interpolate_embeddings``), never truncated. A state dict already of the right length is
    returned unchanged.
    """
    key = "encoder.pos_embedding"
    if not isinstance(backbone, VisionTransformer) or key not in state:
        return state
    if state[key].shape == backbone.encoder.pos_embedding.shape:
        return state
    try:
        # interpolate_embeddings writes into the dict it is given: hand it a copy.
        return dict(interpolate_embeddings(backbone.image_size, backbone.patch_size, dict(state)))
    except ValueError as error:  # not a square patch grid
        raise HashretError(f"cannot interpolate the ViT position embeddings: {error}") from error


@register_backbone(
    "vit_b_16",
    feature_dim=768,
    pretrained_weights="ViT_B_16_Weights.IMAGENET1K_V1",
    classifier_prefixes=("heads.",),
    adapt_state_dict=interpolate_vit_position_embedding,
)
def vit_b_16(image_size: int) -> nn.Module:
    """ViT-B/16 (torchvision), 768 features; input size a multiple of 16."""
    if image_size % 16:
        raise HashretError(
            f"vit_b_16 needs an image size that is a multiple of 16, got {image_size}"
        )
    model = torchvision.models.vit_b_16(weights=None, image_size=image_size)
    model.heads = nn.Identity()
    return model


class TinyCNN(nn.Module):
    """Three 3x3 conv blocks (BatchNorm, ReLU, 2x2 max-pool after the first two), then global
    average pooling: about 94k parameters, 128 features, any input size >= 4 pixels."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for i, width in enumerate(widths):
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


@register_backbone("tiny", feature_dim=128, default_image_size=32)
def tiny(image_size: int) -> nn.Module:
    """Small CNN for CPU runs and tests (no pretrained weights), 128 features."""
    return TinyCNN()
