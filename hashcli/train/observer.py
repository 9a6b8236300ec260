"""How training reports progress: :class:`TrainObserver` (torch-free; the CLI renders it with
rich in ``hashcli.cli._train_view``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class TrainObserver:
    """Receives progress; the default does nothing. The CLI renders it with rich."""

    def message(self, text: str) -> None:
        """A line for people (what is happening, where files go)."""

    def start(self, info: dict[str, Any]) -> None:
        """Before the first step: run folder, device, steps per epoch, effective batch and lr."""

    def epoch_start(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        """``steps`` in this epoch, ``done`` of them already taken (a resumed epoch)."""

    def step(self, stats: dict[str, float]) -> None:
        """After every optimiser step: epoch, step, loss, lr, images_per_s."""

    def epoch_end(self, epoch: int) -> None:
        """After an epoch."""

    def phase(self, name: str, total: int) -> Callable[[int, int], None]:
        """A sub-task such as encoding; returns ``progress(done, total)``."""
        return lambda done, total: None

    def phase_end(self, name: str) -> None:
        """The sub-task started by :meth:`phase` is over."""

    def evaluation(self, record: dict[str, Any]) -> None:
        """A line of metrics.jsonl (epoch, loss, lr, val mAP, images/s...)."""


__all__ = ["TrainObserver"]
