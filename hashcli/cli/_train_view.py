"""How a training run looks on stderr: epoch and step bars with loss, lr, images/s and ETA."""

from __future__ import annotations

from typing import Any

from rich.progress import TextColumn
from rich.table import Table

from hashcli.cli._output import Output, unseen_class_rows
from hashcli.train.observer import TrainObserver


def _fmt(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class RichTrainObserver(TrainObserver):
    """Rich bars when stderr is a terminal; one plain line per evaluation otherwise."""

    def __init__(self, quiet: bool = False) -> None:
        self.out = Output(quiet=quiet)
        self.progress = self.out.progress(TextColumn("{task.fields[stats]}"))
        self.epoch_task = None
        self.step_task = None
        self.phase_tasks: dict[str, Any] = {}

    def __enter__(self) -> RichTrainObserver:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def message(self, text: str) -> None:
        self.out.say(text)

    def start(self, info: dict[str, Any]) -> None:
        self.message(
            f"Run {info['run_dir']} ({info['method']}) on {info['device']}: {info['epochs']} "
            f"epochs x {info['steps_per_epoch']} steps, batch {info['batch']}, lr {info['lr']:g} "
            f"({info['schedule']}, {info['warmup_steps']} warmup steps); images: "
            f"train {info['train']}, val {info['val']}, database {info['database']}, "
            f"test (queries) {info['test']}"
        )
        self.epoch_task = self.progress.add_task(
            "epochs", total=info["epochs"], stats="", completed=0
        )

    def epoch_start(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        if self.epoch_task is not None:
            self.progress.update(self.epoch_task, completed=epoch - 1)
        if self.step_task is not None:
            self.progress.remove_task(self.step_task)
        self.step_task = self.progress.add_task(
            f"epoch {epoch}/{epochs}", total=steps, completed=done, stats=""
        )

    def step(self, stats: dict[str, float]) -> None:
        if self.step_task is not None:
            self.progress.update(
                self.step_task,
                advance=1,
                stats=f"loss {stats['loss']:.4f}  lr {stats['lr']:.2e}  "
                f"{stats['images_per_s']:.0f} img/s",
            )

    def epoch_end(self, epoch: int) -> None:
        if self.epoch_task is not None:
            self.progress.update(self.epoch_task, completed=epoch)

    def phase(self, name: str, total: int):
        task = self.progress.add_task(name, total=total, stats="")
        self.phase_tasks[name] = task

        def update(done: int, total_now: int) -> None:
            self.progress.update(task, completed=done, total=total_now)

        return update

    def phase_end(self, name: str) -> None:
        task = self.phase_tasks.pop(name, None)
        if task is not None:
            self.progress.remove_task(task)

    def evaluation(self, record: dict[str, Any]) -> None:
        if self.epoch_task is not None:
            self.progress.update(
                self.epoch_task,
                stats=f"val mAP {_fmt(record.get('val_map'))}"
                + (" (best)" if record.get("best") else ""),
            )
        if not self.out.live:  # no bars to show it: one line per evaluation
            self.out.say(
                f"epoch {record['epoch']}: loss {record['loss']:.4f}  lr {record['lr']:.2e}  "
                f"{record['images_per_s']:.0f} img/s  val mAP {_fmt(record.get('val_map'))}"
                + ("  best" if record.get("best") else "")
            )

    def summary(self, summary: dict[str, Any]) -> None:
        table = Table(title=f"run {summary['run']}", show_header=False)
        table.add_row("run folder", summary["run_dir"])
        table.add_row("steps", str(summary["steps"]))
        table.add_row("best val mAP (tie-aware)", _fmt(summary["best_val_map"]))
        table.add_row("best epoch", str(summary["best_epoch"]))
        test = summary.get("test") or {}
        table.add_row("test mAP (tie-aware)", _fmt(test.get("map")))
        table.add_row("test mAP (index order)", _fmt(test.get("map_index_order")))
        for row in unseen_class_rows(summary["unseen"]) if summary.get("unseen") else ():
            table.add_row(*row)
        stats = summary.get("code_stats")
        if stats:
            table.add_row(
                "database codes",
                f"{stats['effective_bits']:.1f} effective bits of {stats['bits']}, "
                f"{stats['distinct_codes']} distinct of {stats['n_codes']}, largest bucket "
                f"{stats['largest_bucket_share']:.1%}",
            )
        self.out.table(table)
