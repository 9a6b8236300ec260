"""Hashing methods' losses against per-item / per-pair loops written from their formulas."""

from __future__ import annotations

import math
import re

import pytest
import torch

from hashcli.errors import HashretError
from hashcli.train.methods import (
    METHOD_NAMES,
    build_method,
    create_method_loss,
    csq,
    dpn,
    dpsh,
    dsh,
    get_method,
    greedyhash,
    hashnet,
    method_overrides,
    orthohash,
    registered_methods,
)
from hashcli.train.methods.greedyhash import sign_straight_through
from hashcli.train.methods.hashnet import hashnet_beta

BITS = 6
CLASSES = 3
MULTI_LABEL = ("csq", "dpn", "dpsh", "dsh", "hashnet", "orthohash")


def _codebook() -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.randint(0, 2, (CLASSES, BITS), generator=generator).float() * 2 - 1


def _batch(seed: int = 0, size: int = 7, scale: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    outputs = torch.randn(size, BITS, generator=generator) * scale
    labels = torch.randint(0, CLASSES, (size,), generator=generator)
    return outputs, labels


def _multi_hot(size: int = 7, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.rand(size, CLASSES, generator=generator) < 0.5
    labels[0] = torch.tensor([True, True, False])  # at least one item with two labels
    labels[1] = torch.tensor([False, True, True])
    return labels


def _loss(name: str, **hyperparameters):
    codebook = _codebook() if get_method(name).needs_codebook else None
    return create_method_loss(
        name, bits=BITS, num_classes=CLASSES, codebook=codebook, **hyperparameters
    )


def _label_sets(labels: torch.Tensor) -> list[set[int]]:
    if labels.ndim == 2:
        return [{c for c in range(CLASSES) if row[c]} for row in labels.tolist()]
    return [{c} for c in labels.tolist()]


def _sgn(value: float) -> float:
    return 1.0 if value >= 0 else -1.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _softplus(value: float) -> float:
    return math.log1p(math.exp(value))


def _pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(n) if i != j]


# ---------------------------------------------------------------- oracles, plain Python loops


def _csq_oracle(x, labels, codebook, tie_break, weight=1e-4):
    x, cb, tie = x.tolist(), codebook.tolist(), tie_break.tolist()
    terms, quant = [], []
    for row, classes in zip(x, _label_sets(labels), strict=True):
        for k, value in enumerate(row):
            total = sum(cb[c][k] for c in classes)
            centre = tie[k] if total == 0 else (1.0 if total > 0 else -1.0)
            u = math.tanh(value)
            p, t = (u + 1) / 2, (centre + 1) / 2
            terms.append(-(t * math.log(p) + (1 - t) * math.log(1 - p)))
            quant.append((abs(u) - 1) ** 2)
    return _mean(terms) + weight * _mean(quant)


def _dpn_oracle(v, labels, codebook, margin=1.0, reg=0.1):
    v, cb = v.tolist(), codebook.tolist()
    per_item = []
    for row, classes in zip(v, _label_sets(labels), strict=True):
        per_item.append(
            sum(max(0.0, margin - row[k] * cb[c][k]) for c in classes for k in range(BITS))
        )
    return _mean(per_item) + reg * _mean([value**2 for row in v for value in row])


def _cos(a, b):
    dot = sum(p * q for p, q in zip(a, b, strict=True))
    return dot / math.sqrt(sum(p * p for p in a)) / math.sqrt(sum(q * q for q in b))


def _orthohash_oracle(v, labels, codebook, scale=8.0, margin=0.2, quant=0.0):
    v, cb = v.tolist(), codebook.tolist()
    per_item = []
    for row, classes in zip(v, _label_sets(labels), strict=True):
        z = [scale * (_cos(row, cb[c]) - (margin if c in classes else 0.0)) for c in range(CLASSES)]
        log_norm = math.log(sum(math.exp(value) for value in z))
        per_item.append(-sum((z[c] - log_norm) / len(classes) for c in classes))
    loss = _mean(per_item)
    if quant:
        loss += quant * _mean([1 - _cos(row, [_sgn(value) for value in row]) for row in v])
    return loss


def _greedyhash_oracle(u, labels, weight, alpha=0.1):
    u, w = u.tolist(), weight.tolist()
    per_item = []
    for row, label in zip(u, labels.tolist(), strict=True):
        b = [_sgn(value) for value in row]
        logits = [sum(w[c][k] * b[k] for k in range(BITS)) for c in range(CLASSES)]
        per_item.append(math.log(sum(math.exp(z) for z in logits)) - logits[label])
    penalty = _mean([abs(abs(value) - 1) ** 3 for row in u for value in row])
    return _mean(per_item) + alpha * penalty


def _dsh_oracle(u, labels, margin, alpha=0.1, balanced=True):
    sets, u = _label_sets(labels), u.tolist()
    similar, dissimilar = [], []
    for i, j in _pairs(len(u)):
        d = sum((u[i][k] - u[j][k]) ** 2 for k in range(BITS))
        if sets[i] & sets[j]:
            similar.append(d / 2)
        else:
            dissimilar.append(max(margin - d, 0.0) / 2)
    if balanced:  # each group's mean, summed
        pair_loss = sum(_mean(group) for group in (similar, dissimilar) if group)
    else:
        pair_loss = _mean(similar + dissimilar) if similar + dissimilar else 0.0
    return pair_loss + alpha * _mean([abs(abs(value) - 1) for row in u for value in row])


def _dpsh_oracle(u, labels, alpha=0.1, balanced=True):
    sets, u = _label_sets(labels), u.tolist()
    per_pair, similar, dissimilar = [], [], []
    for i, j in _pairs(len(u)):
        theta = sum(u[i][k] * u[j][k] for k in range(BITS)) / 2
        s = 1.0 if sets[i] & sets[j] else 0.0
        per_pair.append(_softplus(theta) - s * theta)
        (similar if s else dissimilar).append(per_pair[-1])
    likelihood = _mean(per_pair) if per_pair else 0.0
    if balanced:  # cisip-FIRe's: each group's mean, summed
        likelihood = (_mean(similar) if similar else 0.0) + (
            _mean(dissimilar) if dissimilar else 0.0
        )
    quant = _mean([(value - _sgn(value)) ** 2 for row in u for value in row])
    return likelihood + alpha * quant


def _hashnet_oracle(x, labels, beta, alpha):
    sets = _label_sets(labels)
    u = [[math.tanh(beta * value) for value in row] for row in x.tolist()]
    similar, dissimilar = [], []
    for i, j in _pairs(len(u)):
        theta = alpha * sum(u[i][k] * u[j][k] for k in range(BITS))
        if sets[i] & sets[j]:
            similar.append(_softplus(theta) - theta)
        else:
            dissimilar.append(_softplus(theta))
    # Weighted likelihood w = S/S1, S/S0, divided by S, written out as in the paper.
    total = len(similar) + len(dissimilar)
    loss = 0.0
    if similar:
        loss += sum(similar) * (total / len(similar)) / total
    if dissimilar:
        loss += sum(dissimilar) * (total / len(dissimilar)) / total
    return loss


# ------------------------------------------------------------------------------ registry


def test_registry_names_match_the_torch_free_list():
    assert registered_methods() == METHOD_NAMES
    assert set(METHOD_NAMES) == {
        "csq",
        "dpn",
        "orthohash",
        "greedyhash",
        "dsh",
        "dpsh",
        "hashnet",
        "triplet",
    }
    for name in METHOD_NAMES:
        assert get_method(name).name == name


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(HashretError, match="unknown method 'nope'.*csq.*orthohash"):
        get_method("nope")


def test_codebook_required_refused_and_checked():
    with pytest.raises(HashretError, match="codebook"):
        create_method_loss("csq", bits=BITS, num_classes=CLASSES)
    with pytest.raises(HashretError, match="no codebook"):
        create_method_loss("dsh", bits=BITS, num_classes=CLASSES, codebook=_codebook())
    with pytest.raises(HashretError, match=r"\(3, 6\)"):
        create_method_loss("dpn", bits=BITS, num_classes=CLASSES, codebook=_codebook()[:, :4])
    with pytest.raises(HashretError, match=r"\+1 and -1"):
        create_method_loss("orthohash", bits=BITS, num_classes=CLASSES, codebook=_codebook() * 0.5)


def test_requirements_flags():
    needs_codebook = {name for name in METHOD_NAMES if get_method(name).needs_codebook}
    assert needs_codebook == {"csq", "dpn", "orthohash"}
    assert [n for n in METHOD_NAMES if get_method(n).needs_classifier] == ["greedyhash"]
    assert [n for n in METHOD_NAMES if get_method(n).needs_step] == ["hashnet"]
    assert {n for n in METHOD_NAMES if get_method(n).multi_label} == set(MULTI_LABEL)
    assert {n: get_method(n).output_layer for n in METHOD_NAMES} == {
        n: "batchnorm" if n == "orthohash" else "none" for n in METHOD_NAMES
    }


# ------------------------------------------------------------------------------ defaults


def test_defaults_are_the_papers_and_references():
    assert csq.DEFAULTS.quantization_weight == 1e-4  # DeepHash-pytorch CSQ.py lambda
    assert (dpn.DEFAULTS.margin, dpn.DEFAULTS.regularization_weight) == (1.0, 0.1)  # FIRe dpn.py
    assert (orthohash.DEFAULTS.scale, orthohash.DEFAULTS.margin) == (8.0, 0.2)  # orthohash.py
    assert orthohash.DEFAULTS.quantization_weight == 0.0
    assert greedyhash.DEFAULTS.alpha == 0.1
    assert dpsh.DEFAULTS.alpha == 0.1
    assert dpsh.DEFAULTS.balanced  # cisip-FIRe dpsh.py: HashNet's S / S1, S / S0 weights
    assert dsh.DEFAULTS.alpha == 0.1
    assert dsh.DEFAULTS.balanced  # ours, measured (the module docstring)
    assert _loss("dsh").margin == 2 * BITS  # m = 2k
    assert _loss("hashnet").alpha == pytest.approx(10 / BITS)
    assert (hashnet.DEFAULTS.step_size, hashnet.DEFAULTS.gamma) == (200, 0.005)
    assert (hashnet.DEFAULTS.power, hashnet.DEFAULTS.init_scale) == (0.5, 1.0)
    built = {name: _loss(name).settings for name in METHOD_NAMES}
    assert built["csq"].quantization_weight == 1e-4
    assert (built["dpn"].margin, built["dpn"].regularization_weight) == (1.0, 0.1)
    assert (built["orthohash"].scale, built["orthohash"].margin) == (8.0, 0.2)
    assert built["greedyhash"].alpha == built["dpsh"].alpha == built["dsh"].alpha == 0.1


@pytest.mark.parametrize(
    ("name", "options", "words"),
    [
        ("dpsh", {"margin": 1.0}, "the dpsh method has no option margin; its options: alpha"),
        ("csq", {"alpha": 0.1}, "the csq method has no option alpha"),
        ("dsh", {"alpha": -1.0}, "the dsh method's alpha must be >= 0, got -1.0"),
        ("orthohash", {"scale": 0.0}, "the orthohash method's scale must be > 0, got 0.0"),
        ("hashnet", {"step_size": 0}, "the hashnet method's step_size must be >= 1, got 0"),
    ],
)
def test_an_option_the_method_lacks_or_a_value_out_of_bounds_names_the_method(name, options, words):
    with pytest.raises(HashretError, match=re.escape(words)):
        _loss(name, **options)


# ------------------------------------------------------------------ values against oracles


def _check(loss, outputs, labels, expected):
    value = loss(outputs, labels)
    assert value.dtype == torch.float32 and value.ndim == 0
    assert expected > 0.05  # a loss returning 0 fails
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("multi", [False, True])
def test_csq(multi):
    loss = _loss("csq")
    outputs, labels = _batch()
    if multi:
        labels = _multi_hot()
        labels[2] = False  # an item without labels: every centre bit is a tie
    expected = _csq_oracle(outputs, labels, _codebook(), loss.tie_break)
    _check(loss, outputs, labels, expected)


def test_csq_multi_label_centres_break_ties_with_the_fixed_vector():
    codebook = torch.tensor([[1.0, 1, -1, -1, 1, 1], [1, -1, 1, -1, 1, 1], [-1, -1, -1, 1, 1, 1]])
    loss = create_method_loss("csq", bits=BITS, num_classes=CLASSES, codebook=codebook)
    both = torch.tensor([[True, True, False], [True, True, True]])
    tie = loss.tie_break.tolist()
    assert set(tie) <= {-1.0, 1.0}
    # Row 0: sums 2, 0, 0, -2, 2, 2; row 1: sums 1, -1, -1, -1, 3, 3.
    assert loss.centres(both).tolist() == [
        [1.0, tie[1], tie[2], -1.0, 1.0, 1.0],
        [1.0, -1.0, -1.0, -1.0, 1.0, 1.0],
    ]


@pytest.mark.parametrize("multi", [False, True])
def test_dpn(multi):
    outputs, labels = _batch(seed=2)
    labels = _multi_hot() if multi else labels
    _check(_loss("dpn"), outputs, labels, _dpn_oracle(outputs, labels, _codebook()))
    changed = _loss("dpn", margin=2.0, regularization_weight=0.5)
    _check(changed, outputs, labels, _dpn_oracle(outputs, labels, _codebook(), 2.0, 0.5))


@pytest.mark.parametrize("multi", [False, True])
def test_orthohash(multi):
    outputs, labels = _batch(seed=3)
    labels = _multi_hot() if multi else labels
    _check(_loss("orthohash"), outputs, labels, _orthohash_oracle(outputs, labels, _codebook()))
    changed = _loss("orthohash", scale=4.0, margin=0.5, quantization_weight=0.3)
    expected = _orthohash_oracle(outputs, labels, _codebook(), 4.0, 0.5, 0.3)
    _check(changed, outputs, labels, expected)


def test_greedyhash():
    outputs, labels = _batch(seed=4)
    loss = _loss("greedyhash")
    expected = _greedyhash_oracle(outputs, labels, loss.classifier.weight.detach())
    _check(loss, outputs, labels, expected)
    changed = _loss("greedyhash", alpha=1.0)
    expected = _greedyhash_oracle(outputs, labels, changed.classifier.weight.detach(), 1.0)
    _check(changed, outputs, labels, expected)


@pytest.mark.parametrize("multi", [False, True])
def test_dsh(multi):
    outputs, labels = _batch(seed=5)
    labels = _multi_hot() if multi else labels
    _check(_loss("dsh"), outputs, labels, _dsh_oracle(outputs, labels, 2 * BITS))
    changed = _loss("dsh", margin=3.0, alpha=0.5)
    _check(changed, outputs, labels, _dsh_oracle(outputs, labels, 3.0, 0.5))
    plain = _dsh_oracle(outputs, labels, 2 * BITS, balanced=False)
    assert abs(plain - _dsh_oracle(outputs, labels, 2 * BITS)) > 0.01  # the weighting matters
    _check(_loss("dsh", balanced=False), outputs, labels, plain)


@pytest.mark.parametrize("multi", [False, True])
def test_dpsh(multi):
    outputs, labels = _batch(seed=6)
    labels = _multi_hot() if multi else labels
    _check(_loss("dpsh"), outputs, labels, _dpsh_oracle(outputs, labels))
    _check(_loss("dpsh", alpha=1.0), outputs, labels, _dpsh_oracle(outputs, labels, 1.0))
    plain = _dpsh_oracle(outputs, labels, balanced=False)
    assert abs(plain - _dpsh_oracle(outputs, labels)) > 0.01  # the weighting matters here
    _check(_loss("dpsh", balanced=False), outputs, labels, plain)


@pytest.mark.parametrize("multi", [False, True])
def test_hashnet(multi):
    outputs, labels = _batch(seed=8)
    labels = _multi_hot() if multi else labels
    loss = _loss("hashnet")
    _check(loss, outputs, labels, _hashnet_oracle(outputs, labels, 1.0, 10 / BITS))
    loss.set_step(399)  # beta = sqrt(1 + 0.005 * 400) = sqrt(3)
    _check(loss, outputs, labels, _hashnet_oracle(outputs, labels, math.sqrt(3), 10 / BITS))


def test_hashnet_beta_schedule_by_hand():
    # Reference: iteration = step + 1, scale = (1 + 0.005 * iteration) ** 0.5 at multiples
    # of 200, held in between.
    assert hashnet_beta(0) == 1.0
    assert hashnet_beta(198) == 1.0
    assert hashnet_beta(199) == pytest.approx(math.sqrt(2.0))
    assert hashnet_beta(398) == pytest.approx(math.sqrt(2.0))
    assert hashnet_beta(399) == pytest.approx(math.sqrt(3.0))
    assert hashnet_beta(999) == pytest.approx(math.sqrt(6.0))
    assert hashnet_beta(9, step_size=10, gamma=0.1, power=1.0, init_scale=2.0) == 4.0
    loss = _loss("hashnet")
    assert loss.beta == 1.0
    loss.set_step(1999)
    assert loss.beta == pytest.approx(math.sqrt(11.0))


# ------------------------------------------------------------------- gradients, edge cases


def test_greedyhash_sign_passes_the_gradient_through_unchanged():
    u = torch.tensor([[-0.3, 0.0, 2.0, -1.5]], requires_grad=True)
    b = sign_straight_through(u)
    b.retain_grad()
    assert b.tolist() == [[-1.0, 1.0, 1.0, -1.0]]
    upstream = torch.tensor([[0.5, -2.0, 3.0, 0.25]])
    (b * upstream).sum().backward()
    assert torch.equal(b.grad, upstream)
    assert torch.equal(u.grad, b.grad)


def test_greedyhash_classifier_is_trained():
    loss = _loss("greedyhash")
    params = list(loss.parameters())
    assert len(params) == 1 and params[0] is loss.classifier.weight
    assert loss.classifier.weight.shape == (CLASSES, BITS)
    outputs, labels = _batch(seed=9)
    outputs.requires_grad_(True)
    loss(outputs, labels).backward()
    assert loss.classifier.weight.grad is not None
    assert loss.classifier.weight.grad.abs().sum() > 0
    assert outputs.grad.abs().sum() > 0


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_no_positive_pair_and_single_item_batches_are_finite(name):
    loss = _loss(name)
    outputs = torch.randn(3, BITS, requires_grad=True)
    for labels in (torch.tensor([0, 1, 2]), torch.tensor([1])):
        value = loss(outputs[: len(labels)], labels)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(outputs.grad).all()
        outputs.grad = None


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_float32_maths_under_bf16_autocast(name):
    loss = _loss(name)
    outputs, labels = _batch(seed=10)
    outputs = outputs.to(torch.bfloat16)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        value = loss(outputs, labels)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(loss(outputs.float(), labels).item(), rel=1e-6)


@pytest.mark.parametrize("name", sorted(set(METHOD_NAMES) - set(MULTI_LABEL)))
def test_multi_label_refused_by_single_label_methods(name):
    outputs, _ = _batch()
    with pytest.raises(HashretError, match="no multi-label form"):
        _loss(name)(outputs, _multi_hot())


def test_input_checks():
    loss = _loss("dsh")
    outputs, labels = _batch()
    with pytest.raises(ValueError, match="bits"):
        loss(outputs[:, :4], labels)
    with pytest.raises(ValueError, match="labels"):
        loss(outputs, labels.float())
    with pytest.raises(ValueError, match="labels"):
        loss(outputs, labels[:3])
    with pytest.raises(ValueError, match="multi-hot"):
        loss(outputs, _multi_hot()[:, :2])
    with pytest.raises(HashretError, match="0..2"):
        loss(outputs, labels + 5)


# ------------------------------------------------------------------ the triplet method


@pytest.mark.parametrize("miner", ["batch-all", "batch-hard", "semi-hard"])
def test_triplet_method_is_the_mined_triplet_loss_on_tanh_outputs(miner):
    # Oracle: every (anchor, positive, negative) by hand on u = tanh(outputs), margin bits/4.
    outputs, labels = _batch(seed=3, size=9)
    loss = _loss("triplet", miner=miner)
    u = torch.tanh(outputs.double())
    lab = labels.tolist()

    def d(i, j):
        return float(((u[i] - u[j]) ** 2).sum())

    losses = []
    for a in range(len(lab)):
        positives = [p for p in range(len(lab)) if p != a and lab[p] == lab[a]]
        negatives = [q for q in range(len(lab)) if lab[q] != lab[a]]
        if not positives or not negatives:
            continue
        if miner == "batch-all":
            chosen = [(p, q) for p in positives for q in negatives]
        elif miner == "batch-hard":
            chosen = [
                (max(positives, key=lambda p: d(a, p)), min(negatives, key=lambda q: d(a, q)))
            ]
        else:
            chosen = []
            for p in positives:
                farther = [q for q in negatives if d(a, q) > d(a, p)]
                pick = (
                    min(farther, key=lambda q: d(a, q))
                    if farther
                    else max(negatives, key=lambda q: d(a, q))
                )
                chosen.append((p, pick))
        losses += [max(0.0, d(a, p) - d(a, q) + BITS / 4) for p, q in chosen]
    _check(loss, outputs, labels, sum(losses) / len(losses))


# ------------------------------------------------------------- shared options, building


def test_shared_options_map_to_each_methods_own_setting():
    assert method_overrides("triplet", shared={"margin": 3.0, "miner": "semi-hard"}) == {
        "margin": 3.0,
        "miner": "semi-hard",
    }
    assert method_overrides("dsh", shared={"margin": 5.0, "quantization": 0.5}) == {
        "margin": 5.0,
        "alpha": 0.5,
    }
    assert method_overrides("greedyhash", shared={"quantization": 1.0}) == {"alpha": 1.0}
    assert method_overrides("csq", shared={"quantization": 0.0}) == {"quantization_weight": 0.0}
    # None means "not given": the defaults stay.
    assert method_overrides("hashnet", shared={"margin": None, "quantization": None}) == {}
    # The settings built from them are the ones asked for.
    assert _loss("dsh", **method_overrides("dsh", shared={"margin": 5.0})).margin == 5.0


@pytest.mark.parametrize(
    ("name", "shared", "options", "words"),
    [
        ("hashnet", {"margin": 1.0}, {}, "the hashnet method has no --margin option"),
        ("csq", {"miner": "batch-hard"}, {}, "the csq method has no --miner option"),
        ("hashnet", {"quantization": 0.1}, {}, "the hashnet method has no --quantization"),
        ("triplet", {"miner": "hardest"}, {}, "unknown miner 'hardest'"),
        ("orthohash", {}, {"scale": "big"}, "the orthohash method's scale must be a float"),
        ("orthohash", {}, {"sclae": "16"}, "the orthohash method has no option sclae"),
        ("orthohash", {}, {"scale": "-1"}, "the orthohash method's scale must be > 0"),
        ("hashnet", {}, {"step_size": "1.5"}, "the hashnet method's step_size must be a int"),
        ("dsh", {"margin": 4.0}, {"margin": "4"}, "the dsh method's margin is given twice"),
        ("triplet", {}, {"reduction": "mean"}, "reduction must be one of: all, nonzero"),
    ],
)
def test_bad_options_name_the_method(name, shared, options, words):
    with pytest.raises(HashretError, match=re.escape(words)):
        method_overrides(name, shared=shared, options=options)


def test_option_texts_take_the_settings_types():
    assert method_overrides("hashnet", options={"step_size": "50", "alpha": "none"}) == {
        "step_size": 50,
        "alpha": None,
    }
    assert method_overrides("orthohash", options={"scale": "16"}) == {"scale": 16.0}
    assert method_overrides("triplet", options={"reduction": "nonzero"}) == {"reduction": "nonzero"}


def test_build_method_draws_centres_as_each_reference_does():
    # 12 classes of 24 bits: no Hadamard matrix, so random centres.
    csq_method = build_method("csq", bits=24, num_classes=12, seed=5)
    orthohash_method = build_method("orthohash", bits=24, num_classes=12, seed=5)
    assert build_method("dsh", bits=24, num_classes=12).codebook is None
    for built in (csq_method, orthohash_method):
        assert built.codebook.method == "random" and built.codebook.seed == 5
        torch.testing.assert_close(built.loss.codebook, built.codebook.centres)
    # CSQ balances its centres (12 bits at -1 of 24); OrthoHash draws Bernoulli bits.
    assert ((csq_method.codebook.centres == -1).sum(1) == 12).all()
    assert not ((orthohash_method.codebook.centres == -1).sum(1) == 12).all()
    # A resumed run hands the saved centres back: they are used as they are.
    again = build_method("csq", bits=24, num_classes=12, seed=99, codebook=csq_method.codebook)
    assert torch.equal(again.loss.codebook, csq_method.codebook.centres)


def test_the_record_has_every_setting_with_derived_values_resolved():
    record = build_method("dsh", bits=16, num_classes=3).record()
    assert record == {
        "name": "dsh",
        "settings": {"margin_per_bit": 2.0, "alpha": 0.1, "margin": 32.0, "balanced": True},
        "activation": "none",
        "output_layer": "none",
        "codebook": None,
    }
    record = build_method("triplet", bits=32, num_classes=3).record()
    assert record["settings"] == {
        "miner": "batch-all",
        "margin": 8.0,
        "reduction": "all",
        "quantization_weight": 0.0,
    }
    record = build_method("orthohash", bits=32, num_classes=10).record()
    assert record["output_layer"] == "batchnorm"
    assert record["codebook"]["method"] == "hadamard" and record["codebook"]["min_distance"] == 16


def test_docs_list_every_method_and_every_setting():
    from dataclasses import fields
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "methods.md").read_text()
    for name in METHOD_NAMES:
        method = get_method(name)
        assert f"| `{name}` |" in text, name
        for setting in fields(method.settings_type):
            assert f"| {name} | `{setting.name}` |" in text, (name, setting.name)
        for shared, own in method.shared_options.items():
            line = next(line for line in text.splitlines() if line.startswith(f"  - `--{shared}`"))
            assert f"{name} `{own}`" in line, line
