"""``hashret index``: build a binary index over a code file; ``hashret index add``: extend one.

``hashret index [CODES] [OPTIONS]`` is short for ``hashret index build [CODES] [OPTIONS]``:
the group runs ``build`` whenever its first word is not a subcommand name (a code file that is
literally called ``add`` needs ``hashret index build add`` or ``./add``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from hashcli.cli._options import JsonOpt, QuietOpt, RunOpt, WorkdirOpt, complete_index_type
from hashcli.cli._output import Output

DEFAULT_COMMAND = "build"


class DefaultBuildGroup(TyperGroup):
    """A group that runs ``build`` when its first word is not a subcommand (nor --help)."""

    def parse_args(self, ctx, args):  # noqa: ANN001, ANN201 - typer's (vendored) click API
        first = args[0] if args else None
        if first not in self.commands and first not in ctx.help_option_names:
            # While completing, an empty line stays on the group so TAB offers the subcommands.
            if args or not ctx.resilient_parsing:
                args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=DefaultBuildGroup,
    help="Build a binary index over a code file (`hashret index [CODES]`, short for `hashret "
    "index build`), or append codes to one (`hashret index add NEW.h5`).",
    context_settings={"help_option_names": ["-h", "--help"]},
)

IndexTypeOpt = Annotated[
    str,
    typer.Option(
        "--type",
        "-t",
        help="flat (exact), hnsw, ivf, hash or multihash.",
        autocompletion=complete_index_type,
    ),
]


def _param(flag: str, help_text: str, minimum: int = 1):  # noqa: ANN202 - an Annotated alias
    return Annotated[
        int | None, typer.Option(flag, help=help_text, min=minimum, show_default=False)
    ]


NlistOpt = _param("--nlist", "ivf: number of lists (lowered for small databases).")
NprobeOpt = _param("--nprobe", "ivf: lists searched per query.")
MOpt = _param("--m", "hnsw: neighbours per graph node.", 2)
EfConstructionOpt = _param("--ef-construction", "hnsw: beam width while building.")
EfSearchOpt = _param("--ef-search", "hnsw: beam width while searching.")
HashBitsOpt = _param("--hash-bits", "hash/multihash: bits hashed per table (b).")
NhashOpt = _param("--nhash", "multihash: number of hash tables.")
NflipOpt = _param("--nflip", "hash/multihash: bits flipped when probing.", 0)


@app.command("build")
def build_command(
    codes: Annotated[
        Path | None,
        typer.Argument(
            help="Code file (.h5 or .npz); default: the run's codes/database.h5.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    run: RunOpt = None,
    workdir: WorkdirOpt = None,
    index_type: IndexTypeOpt = "flat",
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Index file to write (default: <run>/index/database.faiss for a run's "
            "database codes, else CODES with the suffix .faiss).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    nlist: NlistOpt = None,
    nprobe: NprobeOpt = None,
    m: MOpt = None,
    ef_construction: EfConstructionOpt = None,
    ef_search: EfSearchOpt = None,
    hash_bits: HashBitsOpt = None,
    nhash: NhashOpt = None,
    nflip: NflipOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Build a FAISS binary index over a code file and save it (+ a .json record).

    Without CODES: the database codes of a run (--run, default the current run), written to
    the run's index/database.faiss, which `hashret query` searches. Training already builds
    a flat one; rebuild to change the type, or after re-encoding the database.

    The index records the code file it came from: `hashret query` reads the database paths
    and labels from it.

    Examples:

        hashret index --type hnsw --m 32

        hashret index --run digits-tiny-32b-20250101-120000 --type ivf --nlist 256

        hashret index photos.h5 --out photos.faiss --json
    """
    if codes is not None and run is not None:
        raise typer.BadParameter(
            "give CODES or --run, not both (choose where the index goes with --out)",
            param_hint="CODES / '--run'",
        )
    params = {
        "nlist": nlist,
        "nprobe": nprobe,
        "m": m,
        "ef_construction": ef_construction,
        "ef_search": ef_search,
        "b": hash_bits,
        "nhash": nhash,
        "nflip": nflip,
    }
    from hashcli.workflows.index import build_index

    summary = build_index(
        codes,
        run=run,
        workdir=workdir,
        index_type=index_type,
        params={k: v for k, v in params.items() if v is not None},
        out=out_path,
    )
    out = Output(quiet=quiet)
    shown = ", ".join(f"{k}={v}" for k, v in summary.params.items())
    out.say(
        f"Wrote {summary.out}: {summary.index_type} index"
        f"{f' ({shown})' if shown else ''}, {summary.ntotal:,} codes of {summary.bits} bits "
        f"from {summary.source}"
    )
    for note in summary.notes:
        out.say(f"Note: {note}")
    if json_output:
        out.json(summary.to_dict())


@app.command("add")
def add_command(
    new_codes: Annotated[
        Path,
        typer.Argument(
            help="Code file to append, encoded by the index's model (hashret encode).",
            dir_okay=False,
            show_default=False,
        ),
    ],
    index: Annotated[
        Path | None,
        typer.Option(
            "--index",
            "-i",
            help="Index file to extend (default: the run's index/database.faiss).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    run: RunOpt = None,
    workdir: WorkdirOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Append codes to an index and to the code file it reads paths and labels from.

    The new codes get the next row numbers, in the index and in its code file alike (the
    run's codes/database.h5 for a run's index), so queries find them at once. They must
    come from the same model: same bit count and model fingerprint.

    Examples:

        hashret encode my-photos/ --out new.h5 && hashret index add new.h5

        hashret index add new.h5 --index photos.faiss --json
    """
    if index is not None and run is not None:
        raise typer.BadParameter("give --index or --run, not both", param_hint="'--index'")
    from hashcli.workflows.index import add_to_index

    summary = add_to_index(new_codes, index=index, run=run, workdir=workdir)
    out = Output(quiet=quiet)
    out.say(
        f"Added {len(summary.rows):,} codes from {summary.source} to "
        f"{summary.index} as rows {summary.rows.start:,}-{summary.rows.stop - 1:,} "
        f"(now {summary.ntotal:,} codes); extended {summary.store}"
    )
    if json_output:
        out.json(summary.to_dict())
