"""hashcli.train.trainer: the step loop with tiny fake parts, and its hooks one at a time.

The fake run: a linear model y = w . x without bias, w = (0, 0) at the start, every image
x = (1, 1), loss = the sum of the batch's outputs, SGD at lr 0.25. A batch of 4 images has
gradient 4 on each weight, so every step takes 1 off each weight: before step n (from 1),
w = (-(n - 1), -(n - 1)) and the loss is 4 * (w0 + w1) = -8 (n - 1).
"""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hashcli.data.torch_data import BadImage, ImageBatch
from hashcli.errors import HashretError
from hashcli.model.checkpoint import load_checkpoint, model_from_state
from hashcli.model.inference import EncodedImages
from hashcli.runtime.distributed import Distributed
from hashcli.train.observer import TrainObserver
from hashcli.train.sampler import PKSampler
from hashcli.train.trainer import (
    CheckpointHook,
    EpochStats,
    LossStepHook,
    Trainer,
    TrainHook,
    TrainState,
    ValidationHook,
)

CPU = torch.device("cpu")
LABELS = [0, 0, 1, 1] * 3  # P = K = 2: 12 // 4 = 3 batches per epoch


def batch_of(labels: list[int], bad: tuple[BadImage, ...] = ()) -> ImageBatch:
    n = len(labels)
    return ImageBatch(torch.ones(n, 2), torch.tensor(labels), torch.arange(n), bad)


class SamplerLoader:
    """What RecordLoader does with a batch sampler: one batch per list of indices, in the
    sampler's order (a resumed epoch continues where it stopped); records the indices."""

    def __init__(self, sampler: PKSampler) -> None:
        self.sampler = sampler
        self.taken: list[list[int]] = []

    def __iter__(self):
        for indices in self.sampler:
            self.taken.append(indices)
            yield batch_of([LABELS[i] for i in indices])


class Recorder(TrainHook, TrainObserver):
    """Both a hook and an observer: every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def end_of_iteration_hook(self, trainer, stats):
        self.calls.append(("iteration", stats["step"]))

    def end_of_epoch_hook(self, trainer, stats):
        self.calls.append(("epoch", stats.epoch, stats.complete, stats.loss))

    def interrupt_hook(self, trainer):
        self.calls.append(("interrupt", trainer.state.step))

    def epoch_start(self, epoch, epochs, steps, done):
        self.calls.append(("epoch_start", epoch, epochs, steps, done))

    def epoch_end(self, epoch):
        self.calls.append(("epoch_end", epoch))

    def evaluation(self, record):
        self.calls.append(("evaluation", record))

    def of(self, kind: str) -> list[tuple]:
        return [call for call in self.calls if call[0] == kind]


def fake_trainer(*, loader=None, hooks=(), observer=None, **settings) -> Trainer:
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.25)
    sampler = PKSampler(LABELS, 2, 2, seed=0)
    return Trainer(
        model=model,
        forward=model,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda n: 1.0),
        loss_fn=settings.pop("loss_fn", lambda outputs, labels: outputs.sum()),
        loader=SamplerLoader(sampler) if loader is None else loader,
        sampler=sampler,
        device=CPU,
        epochs=settings.pop("epochs", 2),
        steps_per_epoch=3,
        hooks=hooks,
        observer=observer,
        **settings,
    )


def weights(trainer: Trainer) -> list[float]:
    return trainer.model.weight.detach().flatten().tolist()


def test_two_epochs_call_the_hooks_in_order_and_add_up():
    recorder = Recorder()
    trainer = fake_trainer(hooks=[recorder], observer=recorder)
    assert trainer.train() is True
    # Losses 0, -8, -16 (mean -8), then -24, -32, -40 (mean -32).
    expected = []
    for epoch, mean_loss in ((1, -8.0), (2, -32.0)):
        expected.append(("epoch_start", epoch, 2, 3, 0))
        expected += [("iteration", step) for step in range(3 * epoch - 2, 3 * epoch + 1)]
        expected += [("epoch_end", epoch), ("epoch", epoch, True, mean_loss)]
    assert recorder.calls == expected
    assert weights(trainer) == [-6.0, -6.0]
    assert trainer.scheduler.last_epoch == 6  # one scheduler step per batch
    state = trainer.state
    assert (state.step, state.epoch, state.position) == (6, 1, 3)
    assert state.resume_point(3) == (2, 0)


def test_max_steps_stops_in_the_middle_of_an_epoch():
    recorder = Recorder()
    trainer = fake_trainer(hooks=[recorder], max_steps=4)
    assert trainer.train() is False
    assert recorder.of("iteration") == [("iteration", n) for n in (1, 2, 3, 4)]
    # The cut epoch still reaches the end-of-epoch hooks, marked incomplete; loss -24 alone.
    assert recorder.of("epoch") == [("epoch", 1, True, -8.0), ("epoch", 2, False, -24.0)]
    assert weights(trainer) == [-4.0, -4.0]
    assert (trainer.state.step, trainer.state.epoch, trainer.state.position) == (4, 1, 1)
    assert trainer.state.resume_point(3) == (1, 1)


def test_max_steps_at_the_end_of_an_epoch_stops_there():
    recorder = Recorder()
    trainer = fake_trainer(hooks=[recorder], max_steps=3)
    assert trainer.train() is False
    assert recorder.of("epoch") == [("epoch", 1, True, -8.0)]
    assert trainer.state.resume_point(3) == (1, 0)


def test_a_resumed_epoch_takes_only_its_remaining_batches():
    whole = fake_trainer()
    whole.train()
    recorder = Recorder()
    trainer = fake_trainer(hooks=[recorder], observer=recorder)
    trainer.sampler.load_state_dict(whole.sampler.state_dict(1))  # epoch 2, 1 batch taken
    trainer.state = TrainState(step=4, epoch=1, position=1)
    assert trainer.train() is True
    assert recorder.of("epoch_start") == [("epoch_start", 2, 2, 3, 1)]
    assert recorder.of("iteration") == [("iteration", 5), ("iteration", 6)]
    assert trainer.loader.taken == whole.loader.taken[4:]


class AugmentingLoader(SamplerLoader):
    """Uses torch's random state as a DataLoader does: a draw when an epoch starts (its
    seed), then one per batch (the augmentation), which it records."""

    def __init__(self, sampler: PKSampler) -> None:
        super().__init__(sampler)
        self.augmentation: list[float] = []

    def __iter__(self):
        torch.randint(0, 2**31, ())
        return self._batches()

    def _batches(self):
        for batch in super().__iter__():
            self.augmentation.append(torch.rand(()).item())
            yield batch


class SavesTheRandomState(TrainHook):
    def __init__(self, step: int) -> None:
        self.step, self.saved = step, None

    def end_of_iteration_hook(self, trainer, stats):
        if stats["step"] == self.step:
            self.saved = torch.get_rng_state()


def test_a_resumed_epoch_augments_as_the_uninterrupted_one():
    torch.manual_seed(0)
    saver = SavesTheRandomState(4)
    whole = fake_trainer(hooks=[saver])
    whole.loader = AugmentingLoader(whole.sampler)
    whole.train()
    resumed = fake_trainer()
    resumed.loader = AugmentingLoader(resumed.sampler)
    resumed.sampler.load_state_dict(whole.sampler.state_dict(1))
    resumed.state = TrainState(step=4, epoch=1, position=1)
    torch.set_rng_state(saver.saved)  # what a checkpoint after step 4 restores
    resumed.train()
    assert resumed.loader.augmentation == whole.loader.augmentation[4:]


def test_a_batch_of_one_image_takes_no_step_but_counts():
    bad = BadImage(index=9, path="gone.jpg", reason="gone.jpg is not an image")
    loader = [batch_of([0, 0, 1, 1]), batch_of([1], bad=(bad,)), batch_of([0, 0, 1, 1])]
    recorder = Recorder()
    trainer = fake_trainer(loader=loader, hooks=[recorder], epochs=1)
    trainer.train()
    assert weights(trainer) == [-2.0, -2.0]  # two optimiser steps
    assert trainer.state.step == 3 and trainer.scheduler.last_epoch == 3
    assert recorder.of("epoch") == [("epoch", 1, True, -4.0)]  # (0 + -8) / 2 usable steps
    assert trainer.state.skipped_images == ["gone.jpg"]


def test_a_non_finite_loss_stops_the_run():
    losses = iter([0.0, float("nan")])
    recorder = Recorder()
    trainer = fake_trainer(
        loss_fn=lambda outputs, labels: outputs.sum() * 0 + next(losses), hooks=[recorder]
    )
    with pytest.raises(HashretError, match=r"the loss became nan at step 2; lower --lr"):
        trainer.train()
    assert trainer.state.step == 1
    assert recorder.of("interrupt") == [] and recorder.of("epoch") == []


class InterruptAt(TrainHook):
    def __init__(self, step: int, how) -> None:
        self.step, self.how = step, how

    def end_of_iteration_hook(self, trainer, stats):
        if stats["step"] == self.step:
            self.how()


def raise_keyboard_interrupt():
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    "how",
    [raise_keyboard_interrupt, lambda: os.kill(os.getpid(), signal.SIGTERM)],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_and_sigterm_run_the_interrupt_hooks(how):
    before = signal.getsignal(signal.SIGTERM)
    recorder = Recorder()
    trainer = fake_trainer(hooks=[InterruptAt(5, how), recorder])
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert recorder.of("interrupt") == [("interrupt", 5)]
    assert trainer.state.resume_point(3) == (1, 2)  # epoch 2, two of its batches taken
    assert signal.getsignal(signal.SIGTERM) == before


def tiny_hashnet_trainer(tmp_path, **settings) -> tuple[Trainer, CheckpointHook]:
    """A Trainer of the tiny HashNet on fixed random images (no augmentation)."""
    from hashcli.model.factory import create_model

    torch.manual_seed(0)
    images = torch.randn(len(LABELS), 3, 16, 16)
    model = create_model("tiny", 16, pretrained=False, image_size=16)
    sampler = PKSampler(LABELS, 2, 2, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    checkpoints = CheckpointHook(tmp_path / "last.pt", extra={"train_config": {"bits": 16}})

    class Loader:
        def __iter__(self):
            for indices in sampler:
                yield ImageBatch(images[indices], torch.tensor(LABELS)[indices], None, ())

    trainer = Trainer(
        model=model,
        forward=model,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda n: 1 / (n + 1)),
        loss_fn=settings.pop(
            "loss_fn", lambda outputs, labels: (outputs - labels[:, None]).pow(2).mean()
        ),
        loader=Loader(),
        sampler=sampler,
        device=CPU,
        epochs=2,
        steps_per_epoch=3,
        hooks=[checkpoints],
        **settings,
    )
    return trainer, checkpoints


def test_the_checkpoint_hook_writes_a_checkpoint_to_continue_from(tmp_path):
    trainer, _ = tiny_hashnet_trainer(tmp_path, max_steps=4)
    trainer.state.best_val_map, trainer.state.best_epoch = 0.5, 1
    assert trainer.train() is False
    saved = load_checkpoint(tmp_path / "last.pt")
    assert set(saved) == {
        "model",
        "model_config",
        "fingerprint",
        "optimizer",
        "scheduler",
        "sampler",
        "rng",
        "step",
        "epoch",
        "best_val_map",
        "best_epoch",
        "skipped_images",
        "train_config",
        "hashret_checkpoint",
    }
    # Stopped after step 4 = the first batch of epoch 2 (index 1).
    assert (saved["step"], saved["epoch"]) == (4, 1)
    assert (saved["sampler"]["epoch"], saved["sampler"]["position"]) == (1, 1)
    assert (saved["best_val_map"], saved["best_epoch"]) == (0.5, 1)
    assert saved["train_config"] == {"bits": 16}
    assert saved["scheduler"]["last_epoch"] == 4
    assert model_from_state(saved).fingerprint() == trainer.model.fingerprint()

    # Continued from the file, it ends where an uninterrupted run ends.
    whole, _ = tiny_hashnet_trainer(tmp_path / "whole")
    whole.train()
    again, checkpoints = tiny_hashnet_trainer(tmp_path / "again")
    again.model.load_state_dict(saved["model"])
    checkpoints.restore(again, saved)
    assert (again.state.step, again.state.epoch, again.state.position) == (4, 1, 1)
    assert again.train() is True
    assert again.model.fingerprint() == whole.model.fingerprint()
    assert load_checkpoint(tmp_path / "again" / "last.pt")["epoch"] == 2


def test_the_interrupt_saves_the_checkpoint(tmp_path):
    trainer, _ = tiny_hashnet_trainer(tmp_path)
    trainer.hooks.insert(0, InterruptAt(2, raise_keyboard_interrupt))
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    saved = load_checkpoint(tmp_path / "last.pt")
    assert (saved["step"], saved["epoch"], saved["sampler"]["position"]) == (2, 0, 2)
    assert model_from_state(saved).fingerprint() == trainer.model.fingerprint()


def encoded(n: int, bad: list[str]) -> EncodedImages:
    return EncodedImages(
        codes=np.zeros((n, 2), np.uint8),
        rows=np.arange(n),
        labels=np.zeros(n, np.int64),
        bits=16,
        bad_paths=bad,
    )


def validation_setup(queries: list, maps: list[float], every: int = 1, epochs: int = 3):
    """A ValidationHook with fake encode/evaluate, the fake trainer it gets, and its log."""
    scores = iter(maps)
    log: dict[str, list] = {"encoded": [], "best": [], "records": []}

    def encode(records, name, model):
        log["encoded"].append((name, len(records)))
        return encoded(len(records), ["q.jpg"] if name == "validation queries" else ["d.jpg"])

    hook = ValidationHook(
        queries,
        ["db"] * 5,
        encode=encode,
        evaluate=lambda q, db: {"map": next(scores), "map_index_order": 0.25},
        on_best=lambda trainer: log["best"].append(trainer.state.best_epoch),
        log=log["records"].append,
        every=every,
    )
    recorder = Recorder()
    trainer = SimpleNamespace(
        state=TrainState(step=7),
        dist=Distributed(device=CPU),
        model=None,
        observer=recorder,
        epochs=epochs,
    )
    return hook, trainer, log, recorder


def epoch_stats(epoch: int, complete: bool = True) -> EpochStats:
    return EpochStats(epoch=epoch, complete=complete, loss=1.5, lr=0.1, images_per_s=20.0)


def test_validation_keeps_the_best_map():
    hook, trainer, log, recorder = validation_setup(["q"] * 2, [0.5, 0.4, 0.7])
    for epoch in (1, 2, 3):
        hook.end_of_epoch_hook(trainer, epoch_stats(epoch))
    assert [r["best"] for r in log["records"]] == [True, False, True]
    assert log["best"] == [1, 3]  # on_best sees the state already updated
    assert (trainer.state.best_val_map, trainer.state.best_epoch) == (0.7, 3)
    assert log["records"][0] == {
        "epoch": 1,
        "step": 7,
        "loss": 1.5,
        "lr": 0.1,
        "images_per_s": 20.0,
        "val_map": 0.5,
        "val_map_index_order": 0.25,
        "best": True,
    }
    assert [r for _, r in recorder.of("evaluation")] == log["records"]
    assert log["encoded"][:2] == [("validation queries", 2), ("validation database", 5)]
    assert trainer.state.skipped_images == ["q.jpg", "d.jpg"]


def test_validation_runs_every_few_epochs_the_last_and_never_on_a_cut_epoch():
    hook, trainer, log, _ = validation_setup(["q"], [0.1, 0.2], every=2, epochs=3)
    hook.end_of_epoch_hook(trainer, epoch_stats(1))
    hook.end_of_epoch_hook(trainer, epoch_stats(2, complete=False))
    assert log["records"] == []
    hook.end_of_epoch_hook(trainer, epoch_stats(2))
    hook.end_of_epoch_hook(trainer, epoch_stats(3))  # the last epoch, though 3 % 2 != 0
    assert [r["epoch"] for r in log["records"]] == [2, 3]


def test_without_validation_queries_every_evaluation_is_the_best():
    hook, trainer, log, _ = validation_setup([], [])
    for epoch in (1, 2):
        hook.end_of_epoch_hook(trainer, epoch_stats(epoch))
    assert [r["best"] for r in log["records"]] == [True, True]
    assert all("val_map" not in r for r in log["records"]) and log["encoded"] == []
    assert (trainer.state.best_val_map, trainer.state.best_epoch) == (None, 2)


class StepLoss(torch.nn.Module):
    """A loss that follows the step (as HashNet's) and owns a weight (as GreedyHash's
    classifier): loss = scale * sum(outputs); records the steps it was told."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.told: list[int] = []

    def set_step(self, step: int) -> None:
        self.told.append(step)

    def forward(self, outputs, labels):
        return self.scale * outputs.sum()


def test_the_step_hook_tells_the_loss_each_step_before_it_is_taken_resume_included():
    loss = StepLoss()
    trainer = fake_trainer(loss_fn=loss, hooks=[LossStepHook(loss.set_step)], max_steps=4)
    trainer.train()
    assert loss.told == [0, 1, 2, 3]
    # A resumed run goes on from the step it stopped at.
    resumed_loss = StepLoss()
    resumed = fake_trainer(loss_fn=resumed_loss, hooks=[LossStepHook(resumed_loss.set_step)])
    resumed.sampler.load_state_dict(trainer.sampler.state_dict(1))
    resumed.state = TrainState(step=4, epoch=1, position=1)
    resumed.train()
    assert resumed_loss.told == [4, 5]


def test_a_losss_own_parameters_are_checkpointed_and_restored(tmp_path):
    loss = StepLoss()
    trainer, hook = tiny_hashnet_trainer(tmp_path / "a", loss_fn=loss)
    with torch.no_grad():
        loss.scale.fill_(2.5)
    hook.save(tmp_path / "last.pt", trainer)
    assert load_checkpoint(tmp_path / "last.pt")["loss"]["scale"].item() == 2.5
    fresh_loss = StepLoss()
    fresh, _ = tiny_hashnet_trainer(tmp_path / "b", loss_fn=fresh_loss)
    hook.restore(fresh, load_checkpoint(tmp_path / "last.pt"))
    assert fresh_loss.scale.item() == 2.5
    # A loss without state (a plain function) writes no "loss" entry.
    plain, _ = tiny_hashnet_trainer(tmp_path / "c")
    hook.save(tmp_path / "plain.pt", plain)
    assert "loss" not in load_checkpoint(tmp_path / "plain.pt")
