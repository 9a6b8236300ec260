"""Triplet loss and miners against a naive per-triplet loop (values and gradients)."""

from __future__ import annotations

import itertools

import pytest
import torch

from hashcli.errors import HashretError
from hashcli.train.losses import TripletMarginLoss, build_loss
from hashcli.train.miners import BatchAllMiner


def _naive_loss(u, labels, miner, margin, reduction, quantization_weight):
    """Oracle: explicit loops over anchors, positives and negatives, float64."""
    labels = labels.tolist()
    n = len(labels)

    def d(i, j):
        return ((u[i] - u[j]) ** 2).sum()

    triplets = []
    for a in range(n):
        positives = [p for p in range(n) if p != a and labels[p] == labels[a]]
        negatives = [q for q in range(n) if labels[q] != labels[a]]
        if not positives or not negatives:
            continue
        if miner == "batch-all":
            triplets += [(a, p, q) for p, q in itertools.product(positives, negatives)]
        elif miner == "batch-hard":
            p = max(positives, key=lambda p: d(a, p).item())
            q = min(negatives, key=lambda q: d(a, q).item())
            triplets.append((a, p, q))
        else:  # semi-hard: closest negative farther than the positive, else the farthest
            for p in positives:
                farther = [q for q in negatives if d(a, q) > d(a, p)]
                if farther:
                    q = min(farther, key=lambda q: d(a, q).item())
                else:
                    q = max(negatives, key=lambda q: d(a, q).item())
                triplets.append((a, p, q))
    losses = [torch.clamp(d(a, p) - d(a, q) + margin, min=0) for a, p, q in triplets]
    if reduction == "nonzero":
        losses = [x for x in losses if x > 0]
    total = sum(losses) / len(losses) if losses else u.sum() * 0
    if quantization_weight:
        total = total + quantization_weight * ((u.abs() - 1) ** 2).mean()
    return total, len(triplets)


@pytest.mark.parametrize("miner", ["batch-all", "batch-hard", "semi-hard"])
@pytest.mark.parametrize("reduction", ["all", "nonzero"])
@pytest.mark.parametrize("quantization_weight", [0.0, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_matches_naive_loop(miner, reduction, quantization_weight, seed):
    generator = torch.Generator().manual_seed(seed)
    bits = 16
    raw = torch.randn(12, bits, generator=generator) * 1.5
    labels = torch.randint(0, 4, (12,), generator=generator)
    assert len(labels.unique()) > 1 and len(labels.unique()) < 12

    loss_fn = build_loss(
        bits=bits, miner=miner, reduction=reduction, quantization_weight=quantization_weight
    )
    assert loss_fn.margin == bits / 4
    raw_a = raw.clone().requires_grad_()
    terms = loss_fn.loss_terms(torch.tanh(raw_a), labels)
    terms.loss.backward()

    raw_b = raw.double().requires_grad_()
    expected, num_triplets = _naive_loss(
        torch.tanh(raw_b), labels, miner, loss_fn.margin, reduction, quantization_weight
    )
    expected.backward()

    assert terms.num_triplets == num_triplets > 0
    assert 0 < terms.num_active.item() < num_triplets or miner != "batch-all"
    torch.testing.assert_close(terms.loss.double(), expected.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(raw_a.grad.double(), raw_b.grad, rtol=1e-3, atol=1e-5)
    assert raw_a.grad.abs().sum() > 0


def test_reductions_differ_when_some_triplets_are_zero():
    generator = torch.Generator().manual_seed(0)
    u = torch.tanh(torch.randn(12, 16, generator=generator) * 1.5)
    labels = torch.randint(0, 4, (12,), generator=generator)
    terms_all = build_loss(bits=16, reduction="all").loss_terms(u, labels)
    terms_nonzero = build_loss(bits=16, reduction="nonzero").loss_terms(u, labels)
    active, total = terms_all.num_active.item(), terms_all.num_triplets
    assert 0 < active < total
    torch.testing.assert_close(terms_all.loss * total / active, terms_nonzero.loss)


def test_hand_computed_batch_all():
    # Two classes at opposite corners: d(a, p) = 0, d(a, n) = 4 * 2 bits = 8; margin 10.
    u = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    loss = TripletMarginLoss(10.0, miner=BatchAllMiner())
    terms = loss.loss_terms(u, labels)
    # anchors of class 0: 2 x 1 positive x 3 negatives; class 1: 3 x 2 positives x 2 negatives
    assert terms.num_triplets == 6 + 12
    torch.testing.assert_close(terms.loss, torch.tensor(2.0))  # every triplet: 0 - 8 + 10
    quantized = TripletMarginLoss(10.0, quantization_weight=3.0).loss_terms(u * 0.5, labels)
    # distances scale by 1/4: 0 - 2 + 10 = 8; quantisation 3 * (0.5 - 1)^2 = 0.75
    torch.testing.assert_close(quantized.loss, torch.tensor(8.75))


@pytest.mark.parametrize("miner", ["batch-all", "batch-hard", "semi-hard"])
@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [5, 5, 5, 5], [7]])
@pytest.mark.parametrize("reduction", ["all", "nonzero"])
def test_batch_without_triplets_gives_connected_zero(miner, labels, reduction):
    raw = torch.randn(len(labels), 8, requires_grad=True)
    loss_fn = build_loss(bits=8, miner=miner, reduction=reduction)
    terms = loss_fn.loss_terms(torch.tanh(raw), torch.tensor(labels))
    assert terms.num_triplets == 0
    assert terms.loss.item() == 0.0 and terms.loss.grad_fn is not None
    terms.loss.backward()
    assert torch.isfinite(raw.grad).all() and (raw.grad == 0).all()


def test_nonzero_reduction_with_no_active_triplet_is_zero():
    u = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [-1.0, -1.0]], requires_grad=True)
    loss = build_loss(bits=8, margin=1.0, reduction="nonzero")(u, torch.tensor([0, 0, 1, 1]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(u.grad).all()


def test_quantization_only_batch_still_trains():
    raw = torch.randn(3, 8, requires_grad=True)
    loss = build_loss(bits=8, quantization_weight=1.0)(torch.tanh(raw), torch.tensor([0, 1, 2]))
    assert loss.item() > 0
    loss.backward()
    assert raw.grad.abs().sum() > 0


def test_shape_checks_and_bad_options():
    loss = build_loss(bits=8)
    with pytest.raises(ValueError, match="embeddings"):
        loss(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        loss(torch.zeros(4, 8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(HashretError, match="all, nonzero"):
        build_loss(bits=8, reduction="mean")
    with pytest.raises(HashretError, match="batch-all, batch-hard, semi-hard"):
        build_loss(bits=8, miner="hardest")


@pytest.mark.gpu
@pytest.mark.parametrize("miner", ["batch-all", "batch-hard", "semi-hard"])
def test_loss_on_cuda_under_bf16_autocast(miner):
    generator = torch.Generator().manual_seed(0)
    raw = torch.randn(64, 32, generator=generator)
    labels = torch.randint(0, 8, (64,), generator=generator)
    loss_fn = build_loss(bits=32, miner=miner, quantization_weight=0.1)
    expected = loss_fn(torch.tanh(raw), labels)
    raw_cuda = raw.cuda().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        # bf16 outputs, as a bf16 network gives: distances are still computed in float32.
        loss = loss_fn(torch.tanh(raw_cuda).to(torch.bfloat16), labels.cuda())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.cpu(), expected, rtol=5e-2, atol=5e-2)
    loss.backward()
    assert torch.isfinite(raw_cuda.grad).all()
