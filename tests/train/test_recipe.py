"""hashcli.train.recipe: the resolved figures of a run, against hand arithmetic."""

from __future__ import annotations

import pytest

from hashcli.errors import HashretError
from hashcli.train.config import TrainConfig
from hashcli.train.recipe import Recipe, resolve_recipe


def labels(n_classes: int, per_class: int) -> list[int]:
    return [c for c in range(n_classes) for _ in range(per_class)]


def test_defaults_on_a_small_split():
    # 10 classes x 7 images = 70. K = 4; P = 64 // 4 = 16, capped at the 10 classes present.
    # 70 // (10 * 4) = 1 step per epoch; cub's default epochs: 90, so 90 steps in all;
    # cosine warmup 90 // 20 = 4.
    recipe = resolve_recipe(TrainConfig(dataset="cub"), labels(10, 7), default_image_size=224)
    assert recipe == Recipe(
        epochs=90, image_size=224, p=10, k=4, world_size=1, steps_per_epoch=1, warmup_steps=4
    )
    assert recipe.total_steps == 90
    assert recipe.batch_size_per_process == recipe.effective_batch_size == 40


def test_batch_shape_rules():
    config = TrainConfig(dataset="digits", batch_size=3, per_class=1, image_size=20)
    recipe = resolve_recipe(config, labels(5, 10), default_image_size=32)
    # K = max(2, 1) = 2; P = max(2, 3 // 2 = 1) = 2; 50 // 4 = 12 steps; digits: 15 epochs.
    assert (recipe.k, recipe.p, recipe.steps_per_epoch, recipe.epochs) == (2, 2, 12, 15)
    assert recipe.image_size == 20  # given, not the dataset's 32
    assert recipe.total_steps == 180 and recipe.warmup_steps == 9  # 180 // 20


def test_steps_are_per_process():
    config = TrainConfig(dataset="cub", batch_size=16, per_class=4, epochs=2)
    recipe = resolve_recipe(config, labels(10, 10), default_image_size=224, world_size=2)
    # 100 images // 16 per batch = 6 batches, 3 per process; 16 x 2 images per step.
    assert recipe.steps_per_epoch == 3 and recipe.total_steps == 6
    assert recipe.batch_size_per_process == 16 and recipe.effective_batch_size == 32


def test_steps_per_epoch_is_what_the_sampler_hands_out():
    from hashcli.train.sampler import PKSampler

    config = TrainConfig(dataset="cub", batch_size=8, per_class=2)
    train_labels = labels(6, 9)  # 54 images, P = 4, K = 2: 54 // 8 = 6, 3 per process
    for world_size in (1, 2):
        recipe = resolve_recipe(config, train_labels, default_image_size=224, world_size=world_size)
        sampler = PKSampler(train_labels, recipe.p, recipe.k, world_size=world_size)
        assert recipe.steps_per_epoch == sampler.num_batches == 6 // world_size


@pytest.mark.parametrize(
    ("schedule", "warmup", "epochs", "expected"),
    [
        ("inverse-sqrt", None, 3, 4000),  # the original's, longer than the run: kept
        ("cosine", None, 50, 25),  # 50 x 10 = 500 steps, // 20
        ("cosine", None, 1, 1),  # 10 // 20 = 0, at least 1
        ("constant", None, 3, 1),  # 30 // 20
        ("cosine", 100, 3, 29),  # clamped below the 30 steps
        ("constant", 100, 3, 100),  # only the cosine is clamped
        ("cosine", 7, 3, 7),
    ],
)
def test_warmup_steps(schedule, warmup, epochs, expected):
    config = TrainConfig(
        dataset="cub", schedule=schedule, warmup_steps=warmup, epochs=epochs, batch_size=4
    )
    # P = 2, K = 4 (per_class default): 80 images // 8 = 10 steps per epoch.
    recipe = resolve_recipe(config, labels(4, 20), default_image_size=224)
    assert recipe.steps_per_epoch == 10
    assert recipe.warmup_steps == expected


def test_a_one_step_cosine_run_has_no_warmup():
    config = TrainConfig(dataset="cub", schedule="cosine", epochs=1, batch_size=4, per_class=2)
    recipe = resolve_recipe(config, labels(2, 2), default_image_size=224)
    assert recipe.total_steps == 1 and recipe.warmup_steps == 0


def test_splits_that_cannot_make_batches():
    with pytest.raises(HashretError, match="train split has 1 images"):
        resolve_recipe(TrainConfig(dataset="cub"), [3], default_image_size=224)
    with pytest.raises(HashretError, match="at least 2 classes"):
        resolve_recipe(TrainConfig(dataset="cub"), [3, 3, 3], default_image_size=224)
