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


def _resnet(arch: str) -> nn.Module:
    model = getattr(torchvision.models, arch)(weights=None)
    model.fc = nn.Identity()
    return model


@register_backbone(
    "resnet18",
    feature_dim=512,
    pretrained_weights="ResNet18_Weights.IMAGENET1K_V1",
    classifier_prefixes=("fc.",),
)
def resnet18(image_size: int) -> nn.Module:
    """ResNet-18 (torchvision), 512 features; any input size."""
    return _resnet("resnet18")


@register_backbone(
    "resnet34",
    feature_dim=512,
    pretrained_weights="ResNet34_Weights.IMAGENET1K_V1",
    classifier_prefixes=("fc.",),
)
def resnet34(image_size: int) -> nn.Module:
    """ResNet-34 (torchvision), 512 features; any input size."""
    return _resnet("resnet34")


@register_backbone(
    "resnet50",
    feature_dim=2048,
    pretrained_weights="ResNet50_Weights.IMAGENET1K_V1",
    classifier_prefixes=("fc.",),
)
def resnet50(image_size: int) -> nn.Module:
    """ResNet-50 (torchvision), 2048 features; any input size."""
    return _resnet("resnet50")


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
