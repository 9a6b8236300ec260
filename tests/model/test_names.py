"""The torch-free name tuples: cheap to import, and in agreement with the registries."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import hashcli.model
import hashcli.train
from hashcli.errors import HashretError
from hashcli.model.registry import get_backbone_spec, list_backbones
from hashcli.train.losses import build_loss
from hashcli.train.miners import build_miner
from hashcli.train.schedule import build_scheduler


def test_name_modules_do_not_import_torch():
    code = (
        "import sys, hashcli.model, hashcli.train\n"
        "assert hashcli.model.BACKBONE_NAMES and hashcli.train.MINER_NAMES\n"
        "heavy = [m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_backbone_names_match_registry():
    assert list_backbones() == list(hashcli.model.BACKBONE_NAMES)
    assert hashcli.model.DEFAULT_BACKBONE == "resnet18" == hashcli.model.BACKBONE_NAMES[0]
    for name in hashcli.model.BACKBONE_NAMES:
        spec = get_backbone_spec(name)
        assert spec.default_image_size == hashcli.model.DEFAULT_IMAGE_SIZES[name]


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(HashretError, match="resnet18, resnet34, resnet50, vit_b_16, tiny"):
        get_backbone_spec("resnet19")


def test_training_names_match_factories():
    for name in hashcli.train.MINER_NAMES:
        assert build_miner(name).name == name
    for reduction in hashcli.train.REDUCTION_NAMES:
        build_loss(bits=16, reduction=reduction)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    for name in hashcli.train.SCHEDULE_NAMES:
        build_scheduler(optimizer, name, warmup_steps=2, total_steps=10)
    with pytest.raises(HashretError, match="batch-all, batch-hard, semi-hard"):
        build_miner("hardest")
