"""``hashret export`` and ``hashret query --engine`` through the real app and console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from hashcli.cli.app import app

runner = CliRunner()


def _query(fake, *options):
    args = ["query", str(fake.photos[0]), str(fake.db_paths[3]), "--top", "5", "--json"]
    return runner.invoke(app, [*args, *options])


def test_export_then_both_engines_print_the_same_lines(fake):
    result = runner.invoke(app, ["export", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["path"] == str(fake.run_dir / "model.onnx")
    assert record["fingerprint"] == fake.model.fingerprint() and record["bits"] == 16
    onnx, torch_lines = _query(fake, "--engine", "onnx"), _query(fake, "--engine", "torch")
    assert onnx.exit_code == torch_lines.exit_code == 0, onnx.output + torch_lines.output
    assert onnx.stdout == torch_lines.stdout and len(onnx.stdout.splitlines()) == 2
    assert "(onnx)" in onnx.stderr and "(torch)" in torch_lines.stderr


def test_a_broken_export_falls_back_once_or_fails(fake):
    assert runner.invoke(app, ["export", "-q"]).exit_code == 0
    path = fake.run_dir / "model.onnx"
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    auto = _query(fake)
    assert auto.exit_code == 0, auto.output
    warnings = [line for line in auto.stderr.splitlines() if "model.onnx" in line]
    assert len(warnings) == 1 and "encoding with torch" in warnings[0]
    strict = _query(fake, "--engine", "onnx")
    assert strict.exit_code == 1 and strict.stdout == ""
    assert strict.stderr.startswith("Error: cannot load the exported model")
    assert len(strict.stderr.strip().splitlines()) == 1
    bogus = _query(fake, "--engine", "tensorrt")
    assert bogus.exit_code == 1 and "unknown engine 'tensorrt'" in bogus.stderr


def test_console_script_query_imports_no_torch(fake):
    assert runner.invoke(app, ["export", "-q"]).exit_code == 0
    env = {**os.environ, "HASHRET_WORKDIR": str(fake.workdir)}
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hashcli", "query", str(fake.photos[0])]
        + ["--top", "3", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "onnxruntime" in imported and "faiss" in imported
    assert not {m for m in imported if m.split(".")[0] in ("torch", "torchvision")}
    assert json.loads(out.stdout)["results"]


def test_encode_image_files_with_either_engine(fake, tmp_path):
    from hashcli.codes import read_codes

    assert runner.invoke(app, ["export", "-q"]).exit_code == 0
    files = [str(fake.photos[0]), str(fake.db_paths[2]), str(fake.test_paths[0])]
    written = {}
    for engine in ("onnx", "torch"):
        out = tmp_path / f"{engine}.h5"
        result = runner.invoke(app, ["encode", *files, "--out", str(out), "--engine", engine])
        assert result.exit_code == 0, result.output
        written[engine] = read_codes(out)
    onnx, torch_file = written["onnx"], written["torch"]
    assert (onnx.codes == torch_file.codes).all() and onnx.paths == torch_file.paths
    for key in ("model_fingerprint", "backbone", "image_size", "dataset", "run", "checkpoint"):
        assert onnx.attrs[key] == torch_file.attrs[key]
    dataset = runner.invoke(
        app, ["encode", "--dataset", "digits", "--split", "test", "--engine", "onnx"]
    )
    assert dataset.exit_code == 1 and "dataset splits use torch" in dataset.stderr
