"""``hashret train``: train a hashing network; one library call, rich progress on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hashcli.cli._options import (
    BitsOpt,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    SeedOpt,
    WorkdirOpt,
    complete_backbone,
    complete_method,
    complete_miner,
    complete_run,
    complete_schedule,
)
from hashcli.cli._output import Output
from hashcli.errors import HashretError
from hashcli.train.names import DEFAULT_METHOD


def train_command(
    dataset: DatasetOpt = "digits",
    data_root: DataRootOpt = None,
    bits: BitsOpt = 48,
    backbone: Annotated[
        str,
        typer.Option(
            help="Backbone network (tiny is a small CNN for CPU runs).",
            autocompletion=complete_backbone,
        ),
    ] = "resnet18",
    pretrained: Annotated[
        bool, typer.Option("--pretrained/--no-pretrained", help="Start from ImageNet weights.")
    ] = True,
    weights: Annotated[
        Path | None, typer.Option(help="Start the backbone from this state-dict file.")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Epochs (default: 15 for digits, 90 otherwise); with --resume, a new total.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch (P classes x K images).")] = 64,
    per_class: Annotated[int, typer.Option(help="K: images per class in a batch.")] = 4,
    image_size: Annotated[
        int | None,
        typer.Option(
            help="Input size in pixels (default: 32 for digits, 224 otherwise).", show_default=False
        ),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="Hashing method: csq (default, the best measured on real photos), orthohash, "
            "dpn, greedyhash, dsh, dpsh, hashnet or triplet (the original); each with its "
            "paper's defaults (docs/methods.md).",
            autocompletion=complete_method,
        ),
    ] = DEFAULT_METHOD,
    miner: Annotated[
        str | None,
        typer.Option(
            help="Triplet mining (triplet only): batch-all (default, the original), batch-hard "
            "or semi-hard.",
            autocompletion=complete_miner,
            show_default=False,
        ),
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option(
            help="The method's margin (triplet: bits/4; orthohash 0.2; dpn 1; dsh 2 x bits).",
            show_default=False,
        ),
    ] = None,
    quantization: Annotated[
        float | None,
        typer.Option(
            help="Weight of the method's term pulling outputs toward +-1 (triplet 0, "
            "orthohash 0, csq 1e-4, greedyhash 0.1, dsh 0.1, dpsh 0.1).",
            show_default=False,
        ),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            metavar="NAME=VALUE",
            help="A setting of the method, NAME=VALUE (repeatable), e.g. -o scale=16 for "
            "orthohash; an unknown name lists the method's settings.",
            show_default=False,
        ),
    ] = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate of the hash head.")] = 1e-3,
    backbone_lr_mult: Annotated[
        float, typer.Option(help="Backbone learning rate as a multiple of --lr.")
    ] = 1.0,
    schedule: Annotated[
        str,
        typer.Option(
            help="Learning-rate schedule: cosine, inverse-sqrt (the original) or "
            "constant, each after a linear warmup.",
            autocompletion=complete_schedule,
        ),
    ] = "cosine",
    warmup: Annotated[
        int | None,
        typer.Option(
            help="Warmup steps (default: 5% of the steps; 4000 for inverse-sqrt).",
            show_default=False,
        ),
    ] = None,
    val_fraction: Annotated[
        float, typer.Option(help="Share of each class's train images kept for validation.")
    ] = 0.1,
    unseen_classes: Annotated[
        float,
        typer.Option(
            "--unseen-classes",
            help="Share of the classes left out of training and validation (seeded by --seed, "
            "listed in config.json); the run then reports seen@seen, unseen@unseen and "
            "unseen@all mAP.",
        ),
    ] = 0.0,
    crop: Annotated[
        bool, typer.Option("--crop/--no-crop", help="Crop to bounding boxes (cub, dogs).")
    ] = False,
    device: DeviceOpt = "auto",
    workers: Annotated[
        int | None,
        typer.Option(
            help="Image-decoding worker processes (default: half the cores).", show_default=False
        ),
    ] = None,
    seed: SeedOpt = 0,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            help="Run name (default: <dataset>-<backbone>-<bits>b-<time>); "
            "with --resume, the run to continue (default: the current run).",
            autocompletion=complete_run,
            # torchrun swallows `--run` as an abbreviation of its own --run-path
            # (pytorch/pytorch#120601): under torchrun set HASHRET_RUN instead.
            envvar="HASHRET_RUN",
            show_envvar=False,
        ),
    ] = None,
    workdir: WorkdirOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue a run from its last.pt.")] = False,
    skip_bad_images: Annotated[
        bool, typer.Option(help="Skip unreadable images (counted) instead of failing.")
    ] = False,
    eval_every: Annotated[int, typer.Option(help="Validate every N epochs.")] = 1,
    compile: Annotated[bool, typer.Option(help="torch.compile the model (GPU runs).")] = False,
    max_steps: Annotated[
        int | None,
        typer.Option(
            help="Stop after this many steps (resumable), e.g. for a quick look.",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a hashing network and encode the dataset with the best model.

    The run folder (in the workdir) gets config.json, model.pt (best on validation), last.pt, metrics.jsonl, summary.json, codes/database.h5 (train split), codes/queries.h5 (test split), index/database.faiss and model.onnx (the query engine's model), and becomes the current run that encode, index, query and eval use.

    Example: hashret train --dataset digits --backbone tiny --bits 32
    """  # noqa: E501 - one line per paragraph: typer keeps line breaks inside a paragraph

    from hashcli.runtime.distributed import is_main_process

    if not is_main_process():  # under torchrun only rank 0 talks
        quiet, json_output = True, False
    from hashcli.cli._train_view import RichTrainObserver
    from hashcli.workflows.train import TrainConfig, train

    config = TrainConfig(
        dataset=dataset,
        data_root=str(data_root) if data_root is not None else None,
        bits=bits,
        backbone=backbone,
        pretrained=pretrained,
        weights=str(weights) if weights is not None else None,
        epochs=epochs,
        batch_size=batch_size,
        per_class=per_class,
        image_size=image_size,
        method=method,
        miner=miner,
        margin=margin,
        quantization_weight=quantization,
        method_options=_method_options(option or []),
        lr=lr,
        backbone_lr_mult=backbone_lr_mult,
        schedule=schedule,
        warmup_steps=warmup,
        val_fraction=val_fraction,
        unseen_classes=unseen_classes,
        crop_to_box=crop,
        device=device,
        workers=workers,
        seed=seed,
        eval_every=eval_every,
        skip_bad_images=skip_bad_images,
        compile=compile,
        max_steps=max_steps,
    )
    observer = RichTrainObserver(quiet=quiet)
    with observer:
        result = train(config, workdir=workdir, run=run, resume=resume, observer=observer)
    summary: dict[str, Any] = {
        "run": result.run_dir.name,
        "run_dir": str(result.run_dir),
        "finished": result.finished,
        "steps": result.steps,
        "best_val_map": result.best_val_map,
        "best_epoch": result.best_epoch,
        "test": result.test,
        "skipped_images": len(result.skipped_images),
        "code_stats": result.code_stats,
        "unseen": result.unseen,
    }
    out = Output(quiet=quiet)
    if json_output:
        out.json(summary)
    elif not quiet:
        observer.summary(summary)
    if result.skipped_images:
        out.say(
            f"Skipped {len(result.skipped_images)} unreadable image(s); listed in "
            f"{result.run_dir / 'config.json'}"
        )


def _method_options(texts: list[str]) -> dict[str, str]:
    """``--option NAME=VALUE`` texts as ``{NAME: VALUE}`` (the method converts the values)."""
    options: dict[str, str] = {}
    for text in texts:
        name, equals, value = text.partition("=")
        name = name.strip().replace("-", "_")
        if not equals or not name:
            raise HashretError(f"--option takes NAME=VALUE, got {text!r}")
        if name in options:
            raise HashretError(f"--option {name} is given twice")
        options[name] = value.strip()
    return options
