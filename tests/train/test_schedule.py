"""Optimiser groups and learning-rate schedules at hand-computed steps."""

from __future__ import annotations

import math

import pytest
import torch

from hashcli.errors import HashretError
from hashcli.model.factory import create_model
from hashcli.train.schedule import build_optimizer, build_scheduler


class _TwoPart(torch.nn.Module):
    """Stand-in with a backbone and a head, cheap to step thousands of times."""

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Linear(2, 2)
        self.head = torch.nn.Linear(2, 2)


@pytest.fixture
def model():
    return _TwoPart()


def _lrs_at(optimizer, scheduler, steps):
    """{step: [lr of each group]} for the update numbers in ``steps``, stepping as a loop does."""
    found = {}
    for step in range(max(steps) + 1):
        if step in steps:
            found[step] = [group["lr"] for group in optimizer.param_groups]
        optimizer.step()  # no gradients: parameters unchanged, cheap
        scheduler.step()
    return found


def test_optimizer_groups():
    torch.manual_seed(0)
    model = create_model("tiny", 8)
    optimizer = build_optimizer(model, 1e-3, backbone_lr_mult=0.1)
    assert isinstance(optimizer, torch.optim.Adam)
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert groups["backbone"]["lr"] == pytest.approx(1e-4) and groups["head"]["lr"] == 1e-3
    assert groups["head"]["betas"] == (0.9, 0.98)
    head_ids = {id(p) for p in model.head.parameters()}
    assert {id(p) for p in groups["head"]["params"]} == head_ids
    assert len(groups["backbone"]["params"]) == len(list(model.backbone.parameters()))


def test_original_inverse_sqrt_schedule(model):
    # XLM's AdamInverseSqrtWithWarmup: update n uses 1e-7 + n (1e-3 - 1e-7) / 4000 while
    # n < 4000, then 1e-3 * sqrt(4000 / n).
    optimizer = build_optimizer(model, 1e-3, backbone_lr_mult=0.5)
    scheduler = build_scheduler(optimizer, "inverse-sqrt", warmup_steps=4000)
    lrs = _lrs_at(optimizer, scheduler, {0, 1, 2000, 3999, 4000, 9000, 16000})
    expected_head = {
        0: 1e-7,
        1: 1e-7 + (1e-3 - 1e-7) / 4000,
        2000: 1e-7 + (1e-3 - 1e-7) / 2,
        3999: 1e-7 + (1e-3 - 1e-7) * 3999 / 4000,
        4000: 1e-3,
        9000: 1e-3 * math.sqrt(4000 / 9000),
        16000: 5e-4,
    }
    for step, head_lr in expected_head.items():
        backbone_lr, got_head = lrs[step]
        assert got_head == pytest.approx(head_lr, rel=1e-9), step
        assert backbone_lr == pytest.approx(head_lr * 0.5, rel=1e-9), step


def test_cosine_and_constant_schedules(model):
    optimizer = build_optimizer(model, 1e-2, backbone_lr_mult=0.1)
    scheduler = build_scheduler(
        optimizer, "cosine", warmup_steps=100, total_steps=1100, warmup_start_factor=0.01
    )
    lrs = _lrs_at(optimizer, scheduler, {0, 50, 100, 350, 600, 1100, 1500})
    expected = {
        0: 1e-4,
        50: 1e-4 + (1e-2 - 1e-4) * 0.5,
        100: 1e-2,
        350: 1e-2 * 0.5 * (1 + math.cos(math.pi / 4)),
        600: 5e-3,
        1100: 0.0,
        1500: 0.0,  # stays at the floor past the end, no second cosine period
    }
    for step, head_lr in expected.items():
        assert lrs[step][1] == pytest.approx(head_lr, rel=1e-9, abs=1e-15), step
        assert lrs[step][0] == pytest.approx(head_lr * 0.1, rel=1e-9, abs=1e-15), step

    optimizer = build_optimizer(model, 1e-3)
    scheduler = build_scheduler(optimizer, "constant", warmup_steps=10)
    lrs = _lrs_at(optimizer, scheduler, {0, 5, 10, 500})
    assert lrs[0][0] == pytest.approx(1e-7) and lrs[5][0] == pytest.approx(1e-7 + 5e-4 - 5e-8)
    assert lrs[10][0] == lrs[500][0] == pytest.approx(1e-3)


def test_scheduler_state_round_trip(model):
    optimizer = build_optimizer(model, 1e-3)
    scheduler = build_scheduler(optimizer, "inverse-sqrt", warmup_steps=10)
    _lrs_at(optimizer, scheduler, {0, 20})
    state = scheduler.state_dict()
    fresh_optimizer = build_optimizer(model, 1e-3)
    fresh = build_scheduler(fresh_optimizer, "inverse-sqrt", warmup_steps=10)
    fresh_optimizer.load_state_dict(optimizer.state_dict())
    fresh.load_state_dict(state)
    assert fresh.last_epoch == scheduler.last_epoch == 21
    assert _lrs_at(fresh_optimizer, fresh, {0, 5}) == _lrs_at(optimizer, scheduler, {0, 5})


def test_schedule_errors(model):
    optimizer = build_optimizer(model, 1e-3)
    with pytest.raises(HashretError, match="inverse-sqrt, cosine, constant"):
        build_scheduler(optimizer, "step")
    with pytest.raises(HashretError, match="total steps"):
        build_scheduler(optimizer, "cosine", warmup_steps=10, total_steps=10)
    with pytest.raises(HashretError, match="lr > 0"):
        build_optimizer(model, 0.0)
