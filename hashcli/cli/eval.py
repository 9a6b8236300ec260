"""``hashret eval``: exact retrieval metrics of query codes against database codes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from hashcli.cli._options import JsonOpt, QuietOpt, RunOpt, WorkdirOpt
from hashcli.cli._output import Output, unseen_class_rows

if TYPE_CHECKING:
    from rich.table import Table

    from hashcli.metrics import CodeStats, RetrievalReport


def _parse_top_k(value: str | None) -> list[int]:
    if value is None:
        return []
    ks = []
    for part in value.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise typer.BadParameter(
                f"{value!r} is not a list of positive integers (example: 100,1000)"
            )
        ks.append(int(part))
    return sorted(set(ks))


QueriesOpt = Annotated[
    Path | None,
    typer.Option(
        "--queries", help="Query code file (.h5 or .npz).", dir_okay=False, show_default=False
    ),
]
DatabaseOpt = Annotated[
    Path | None,
    typer.Option(
        "--database",
        help="Database code file (.h5 or .npz).",
        dir_okay=False,
        show_default=False,
    ),
]


def eval_command(
    queries: QueriesOpt = None,
    database: DatabaseOpt = None,
    top_k: Annotated[
        str | None,
        typer.Option(
            "--top-k",
            help=(
                "Comma-separated cut-offs for mAP@k (hashret's, and the papers' HashNet "
                "convention), precision@k and recall@k, e.g. 100,1000. Default for a run: the "
                "field's, 5000 for lists datasets and the whole database for cifar10; none "
                "otherwise."
            ),
            show_default=False,
        ),
    ] = None,
    json_output: JsonOpt = False,
    per_class: Annotated[
        bool, typer.Option("--per-class", help="Also report the mAP of each class.")
    ] = False,
    pr_curve: Annotated[
        Path | None,
        typer.Option(
            "--pr-curve",
            help="Write the precision-recall curve by Hamming radius to this PNG file.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    run: RunOpt = None,
    workdir: WorkdirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Evaluate Hamming ranking of query codes against database codes.

    Without --queries and --database: the test-split queries against the train-split database
    of a run (--run, default the current run).

    Relevance: same class (single-label) or any shared label (multi-label).

    The headline mAP is tie-aware (expected AP over random orders within distance ties).

    Also shown: its bounds, the mAP with ties broken by database index, and how the database
    codes use their bits (effective bits, distinct codes, the largest bucket of equal codes,
    the least balanced bit, mean Hamming distances within and between classes).

    Examples:

      hashret eval

      hashret eval --queries test.h5 --database train.h5

      hashret eval --queries q.npz --database db.npz --top-k 100,1000 --json
    """
    ks = _parse_top_k(top_k)
    if (queries is None) != (database is None):
        raise typer.BadParameter(
            "give both --queries and --database (code files: .h5 or .npz), or neither to "
            "evaluate a run",
            param_hint="'--queries' / '--database'",
        )
    if queries is not None and run is not None:
        raise typer.BadParameter("--run cannot be combined with --queries/--database")
    from hashcli.workflows.evaluate import evaluate_run

    out = Output(quiet=quiet)
    with out.progress_bar("Evaluating") as progress:
        evaluation = evaluate_run(
            queries, database, run=run, workdir=workdir, top_k=ks, progress=progress
        )
    report = evaluation.report
    if queries is None:
        out.say(f"Evaluated {evaluation.queries} against {evaluation.database}")
    if pr_curve is not None:
        from hashcli.render.pr_curve import save_pr_curve

        save_pr_curve(report.pr_curve, pr_curve, bits=report.bits)
        out.say(f"Wrote the precision-recall curve to {pr_curve}")
    if json_output:
        out.json({**report.to_dict(per_class=per_class), **(evaluation.unseen or {})})
        return
    _render(out, report, per_class=per_class, unseen=evaluation.unseen)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _code_stat_rows(table: Table, stats: CodeStats) -> None:
    """The database codes' statistics, as rows of the metrics table."""
    table.add_section()
    table.add_row("database codes: effective bits", f"{stats.effective_bits:.1f} of {stats.bits}")
    table.add_row("  distinct codes", f"{stats.distinct_codes:,} of {stats.n_codes:,}")
    table.add_row(
        "  largest bucket (items sharing one code)",
        f"{stats.largest_bucket:,} ({_number(stats.largest_bucket_share, '.1%')})",
    )
    worst = (
        "n/a"
        if stats.worst_bit is None
        else f"bit {stats.worst_bit}: {_number(stats.worst_bit_ones_share, '.3f')}"
    )
    table.add_row("  least balanced bit: share of ones", worst)
    table.add_row(
        "  mean Hamming distance within / between classes",
        f"{_number(stats.mean_hamming_within_class, '.2f')} / "
        f"{_number(stats.mean_hamming_between_classes, '.2f')}",
    )


def _render(
    out: Output, report: RetrievalReport, *, per_class: bool, unseen: dict[str, Any] | None = None
) -> None:
    from rich.table import Table

    kind = "multi-label" if report.multi_label else "single-label"
    table = Table(
        title=f"{report.bits}-bit codes: {report.n_queries:,} queries x "
        f"{report.n_database:,} database items ({kind})",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("mAP (tie-aware)", _fmt(report.map))
    table.add_row(
        "  pessimistic .. optimistic",
        f"{_fmt(report.map_pessimistic)} .. {_fmt(report.map_optimistic)}",
    )
    table.add_row("mAP, ties by database index", _fmt(report.map_index_order))
    for k in report.map_at_k:
        table.add_row(f"mAP@{k} (hashret: / min(k, relevant))", _fmt(report.map_at_k[k]))
        table.add_row(
            f"  mAP@{k} as papers print it (HashNet: / relevant in top {k})",
            f"{_fmt(report.map_at_k_hashnet.get(k))} "
            f"(ties by index {_fmt(report.map_at_k_hashnet_index_order.get(k))})",
        )
        table.add_row(f"precision@{k}", _fmt(report.precision_at_k[k]))
        table.add_row(f"recall@{k}", _fmt(report.recall_at_k[k]))
    table.add_row("precision within radius 2", _fmt(report.precision_at_radius_2))
    table.add_row("  queries with no item within radius 2", f"{report.n_queries_empty_radius_2:,}")
    table.add_row(
        "queries without a relevant item (skipped)", f"{report.n_queries_without_relevant:,}"
    )
    if unseen is not None:
        table.add_section()
        for row in unseen_class_rows(unseen):
            table.add_row(*row)
    if report.code_stats is not None:
        _code_stat_rows(table, report.code_stats)
    out.table(table)
    if per_class:
        classes = Table(title="Per-class mAP (worst first)", title_justify="left")
        classes.add_column("class", justify="right")
        if report.class_names is not None:
            classes.add_column("name")
        classes.add_column("queries", justify="right")
        classes.add_column("mAP", justify="right")
        for label, entry in sorted(report.per_class.items(), key=lambda item: item[1].map):
            name = [escape(report.class_name(label) or "")] if report.class_names else []
            classes.add_row(str(label), *name, f"{entry.n_queries:,}", _fmt(entry.map))
        out.table(classes)
