"""``hashret eval``: wiring, JSON output, the PR curve image, and one-line errors."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from hashcli.cli.app import app
from hashcli.codes import CodeFile, pack_binary, pack_bits, read_codes, write_codes

runner = CliRunner()


@pytest.fixture
def files(tmp_path):
    """The hand-checked 5-item case of tests/metrics/test_evaluate.py, as code files."""
    database = pack_binary(
        np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0]])
    )
    queries = pack_binary(np.array([[0, 0, 0, 0], [1, 1, 1, 1]]))
    write_codes(tmp_path / "q.h5", CodeFile(queries, 4, labels=np.array([7, 99])))
    write_codes(tmp_path / "d.h5", CodeFile(database, 4, labels=np.array([3, 3, 7, 7, 7])))
    return tmp_path


def _run(*args: str):
    return runner.invoke(app, ["eval", *map(str, args)])


def test_json_output(files):
    result = _run(
        "--queries", files / "q.h5", "--database", files / "d.h5", "--json", "--top-k", "4,2"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["map"] == pytest.approx(8 / 15)
    assert report["map_pessimistic"] == pytest.approx(43 / 90)
    assert report["map_optimistic"] == pytest.approx(53 / 90)
    assert report["map_index_order"] == pytest.approx(43 / 90)
    assert (report["bits"], report["n_queries"], report["n_database"]) == (4, 2, 5)
    assert report["n_queries_without_relevant"] == 1
    assert report["precision_at_radius_2"] == pytest.approx(3 / 5)
    assert report["map_at_k"] == pytest.approx({"2": 1 / 6, "4": 1 / 3})
    assert report["precision_at_k"] == pytest.approx({"2": 1 / 3, "4": 1 / 2})
    assert report["recall_at_k"] == pytest.approx({"2": 2 / 9, "4": 2 / 3})
    # The papers' convention, over both queries (the one without a relevant item counts 0).
    # Tie-aware: k = 2 gives 1/3 for query 0 (place 2 relevant with probability 2/3, then 1/2);
    # k = 4 the mean over the three orders of the tie group, ((1/3 + 2/4) + (1/2 + 2/4) +
    # (1/2 + 2/3)) / 2 / 3 = 1/2. Index order puts the class-3 item 1000 first in the group:
    # nothing relevant in the top 2, then (1/3 + 2/4) / 2 = 5/12 for the top 4.
    assert report["map_at_k_hashnet"] == pytest.approx({"2": 1 / 6, "4": 1 / 4})
    assert report["map_at_k_hashnet_index_order"] == pytest.approx({"2": 0, "4": 5 / 24})
    assert "per_class" not in report


def _entropy(p: float) -> float:
    return 0.0 if p in (0, 1) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def test_code_stats_in_json(files):
    """Database 0000, 1000, 0100, 0010, 1100 (classes 3, 3, 7, 7, 7); queries 0000, 1111."""
    report = json.loads(
        _run("--queries", files / "q.h5", "--database", files / "d.h5", "--json").stdout
    )
    stats = report["code_stats"]
    assert stats["ones_share_per_bit"] == pytest.approx([2 / 5, 2 / 5, 1 / 5, 0])
    assert (stats["worst_bit"], stats["worst_bit_ones_share"]) == (3, 0.0)  # never 1
    assert stats["effective_bits"] == pytest.approx(2 * _entropy(0.4) + _entropy(0.2))
    assert (stats["n_codes"], stats["bits"], stats["distinct_codes"]) == (5, 4, 5)
    assert (stats["largest_bucket"], stats["largest_bucket_share"]) == (1, pytest.approx(0.2))
    # Within classes: (0, 1) 1; (2, 3) 2, (2, 4) 1, (3, 4) 3 -> 7 / 4. Between: (0, 2) 1,
    # (0, 3) 1, (0, 4) 2, (1, 2) 2, (1, 3) 2, (1, 4) 1 -> 9 / 6.
    assert stats["mean_hamming_within_class"] == pytest.approx(7 / 4)
    assert stats["mean_hamming_between_classes"] == pytest.approx(9 / 6)
    queries = report["query_code_stats"]  # two codes of different classes, 4 bits apart
    assert queries["ones_share_per_bit"] == [0.5] * 4 and queries["effective_bits"] == 4.0
    assert queries["mean_hamming_within_class"] is None
    assert queries["mean_hamming_between_classes"] == 4.0


def test_code_stats_of_a_random_file_against_loops(tmp_path):
    rng = np.random.default_rng(3)
    bit_rows = rng.random((40, 12)) < rng.random(12)
    bit_rows[5:9] = bit_rows[0]  # a bucket of at least 5
    labels = rng.integers(0, 3, 40)
    write_codes(tmp_path / "d.h5", CodeFile(pack_binary(bit_rows), 12, labels=labels))
    write_codes(tmp_path / "q.h5", CodeFile(pack_binary(bit_rows[:4]), 12, labels=labels[:4]))
    result = _run("--queries", tmp_path / "q.h5", "--database", tmp_path / "d.h5", "--json")
    stats = json.loads(result.stdout)["code_stats"]

    rows = [tuple(row) for row in bit_rows.astype(int).tolist()]
    counts = Counter(rows)
    shares = [sum(row[k] for row in rows) / 40 for k in range(12)]
    within, between = [], []
    for i, j in itertools.combinations(range(40), 2):
        distance = sum(a != b for a, b in zip(rows[i], rows[j], strict=True))
        (within if labels[i] == labels[j] else between).append(distance)
    assert stats["ones_share_per_bit"] == pytest.approx(shares)
    assert stats["effective_bits"] == pytest.approx(sum(_entropy(p) for p in shares))
    assert stats["distinct_codes"] == len(counts)
    assert stats["largest_bucket"] == max(counts.values()) >= 5
    assert stats["largest_bucket_share"] == pytest.approx(max(counts.values()) / 40)
    assert stats["mean_hamming_within_class"] == pytest.approx(sum(within) / len(within))
    assert stats["mean_hamming_between_classes"] == pytest.approx(sum(between) / len(between))


def test_every_json_key_is_documented(files):
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "format.md").read_text(encoding="utf-8")
    section = text.split("## `hashret eval --json` output")[1].split("## Index files")[0]
    args = ["--queries", files / "q.h5", "--database", files / "d.h5", "--top-k", "2"]
    report = json.loads(_run(*args, "--per-class", "--json").stdout)
    keys = set(report) | set(report["code_stats"]) | set(report["query_code_stats"])
    assert {"code_stats", "query_code_stats", "effective_bits", "worst_bit"} <= keys
    assert [key for key in sorted(keys) if f"`{key}`" not in section] == []


def test_multi_label_code_stats_have_no_class_distances(tmp_path):
    codes = pack_binary(np.array([[0, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0]]))
    labels = np.array([[1, 0], [1, 1], [0, 1]], bool)
    write_codes(tmp_path / "m.h5", CodeFile(codes, 4, labels=labels))
    result = _run("--queries", tmp_path / "m.h5", "--database", tmp_path / "m.h5", "--json")
    stats = json.loads(result.stdout)["code_stats"]
    assert stats["distinct_codes"] == 3 and stats["effective_bits"] == pytest.approx(
        4 * _entropy(2 / 3)
    )
    assert stats["mean_hamming_within_class"] is None
    assert stats["mean_hamming_between_classes"] is None
    table = _run("--queries", tmp_path / "m.h5", "--database", tmp_path / "m.h5").stderr
    assert "within / between classes" in table and "n/a / n/a" in table


def test_table_per_class_and_pr_curve(files):
    from PIL import Image

    png = files / "pr.png"
    result = _run(
        "--queries", files / "q.h5", "--database", files / "d.h5", "--per-class",
        "--pr-curve", png,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # people's output goes to stderr
    assert "mAP (tie-aware)" in result.stderr and "0.5333" in result.stderr
    # The database codes (see test_code_stats_in_json for the arithmetic).
    assert "effective bits" in result.stderr and "2.7 of 4" in result.stderr
    assert "distinct codes" in result.stderr and "5 of 5" in result.stderr
    assert "largest bucket" in result.stderr and "1 (20.0%)" in result.stderr
    assert "bit 3: 0.000" in result.stderr and "1.75 / 1.50" in result.stderr
    assert "Per-class" in result.stderr
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 300
    assert sorted(p.name for p in files.iterdir()) == ["d.h5", "pr.png", "q.h5"]  # no temp file


def test_per_class_in_json(files):
    result = _run(
        "--queries", files / "q.h5", "--database", files / "d.h5", "--json", "--per-class"
    )
    assert json.loads(result.stdout)["per_class"] == {
        "7": {"map": pytest.approx(8 / 15), "n_queries": 1}
    }


def test_class_names_recorded_in_the_file_are_shown(files):
    names = [f"{i:03d}.Bird_{i}" for i in range(8)]
    cf = read_codes(files / "q.h5")
    cf.attrs["class_names"] = json.dumps(names)
    write_codes(files / "named.h5", cf)
    args = ["--queries", files / "named.h5", "--database", files / "d.h5", "--per-class"]
    assert json.loads(_run(*args, "--json").stdout)["per_class"]["7"]["name"] == "007.Bird_7"
    assert "007.Bird_7" in _run(*args).stderr


def _error(result) -> str:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    return lines[0]


def test_errors_are_one_line_and_exit_1(files):
    q, d = files / "q.h5", files / "d.h5"
    write_codes(files / "b8.h5", CodeFile(pack_bits(np.ones((2, 8))), 8, labels=np.zeros(2, int)))
    assert "4-bit codes but" in _error(_run("--queries", q, "--database", files / "b8.h5"))
    write_codes(
        files / "multi.h5", CodeFile(pack_bits(np.ones((2, 4))), 4, labels=np.ones((2, 3), bool))
    )
    assert "multi-label" in _error(_run("--queries", files / "multi.h5", "--database", d))
    write_codes(
        files / "empty.h5", CodeFile(np.zeros((0, 1), np.uint8), 4, labels=np.zeros(0, int))
    )
    assert "holds no codes" in _error(_run("--queries", q, "--database", files / "empty.h5"))
    assert "does not exist" in _error(_run("--queries", q, "--database", files / "nope.h5"))
    (files / "junk.h5").write_text("not a code file")
    assert "not an HDF5 file" in _error(_run("--queries", q, "--database", files / "junk.h5"))


def test_usage_errors_exit_2(files):
    assert _run("--queries", files / "q.h5").exit_code == 2  # a later issue defaults these
    result = _run("--queries", files / "q.h5", "--database", files / "d.h5", "--top-k", "ten")
    assert result.exit_code == 2


def test_eval_without_paths_uses_the_current_run(tmp_path, monkeypatch):
    """A run folder made by hand: distances 0, 1, 2 (no ties), so AP is arithmetic."""
    import numpy as np

    from hashcli.codes import CodeFile, write_codes
    from hashcli.workflows import runs

    workdir = tmp_path / "runs"
    run_dir = workdir / "r1"
    (run_dir / "codes").mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    runs.set_current_run(workdir, run_dir)
    # query 0b00000000 (label 0); database at distances 0 (label 1), 1 (label 0), 2 (label 0)
    write_codes(
        run_dir / runs.QUERY_CODES,
        CodeFile(codes=np.array([[0]], np.uint8), bits=8, labels=np.array([0])),
    )
    write_codes(
        run_dir / runs.DATABASE_CODES,
        CodeFile(
            codes=np.array([[0b00000000], [0b10000000], [0b11000000]], np.uint8),
            bits=8,
            labels=np.array([1, 0, 0]),
        ),
    )
    monkeypatch.setenv("HASHRET_WORKDIR", str(workdir))
    result = runner.invoke(app, ["eval", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    # relevant items at ranks 2 and 3: AP = (1/2 + 2/3) / 2
    assert json.loads(result.stdout)["map"] == pytest.approx((1 / 2 + 2 / 3) / 2)

    result = runner.invoke(app, ["eval", "--run", "nope"])
    assert result.exit_code == 1 and result.stderr.startswith("Error: no run 'nope'")


@pytest.mark.parametrize("value", ["0", "-1", "100,0"])
def test_a_top_k_below_one_is_an_error_not_a_silent_cut(files, value):
    """Public evaluators slice [:k], so k = -1 silently drops the last item; here it is an
    error."""
    result = _run("--queries", files / "q.h5", "--database", files / "d.h5", "--top-k", value)
    assert result.exit_code != 0 and "positive integers" in result.output
