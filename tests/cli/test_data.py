"""``hashret data``: info, check and download through the real app (CliRunner)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from PIL import Image
from typer.testing import CliRunner

from hashcli.cli.app import app
from hashcli.data import download as download_module

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHRET_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("HASHRET_DEBUG", raising=False)


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def test_info_digits_json(tmp_path):
    result = runner.invoke(app, ["data", "info", "digits", "--json"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("\n") == 1  # one line, like every --json
    info = json.loads(result.stdout)
    assert info["dataset"] == "digits"
    assert info["root"] == str(tmp_path / "data" / "digits")
    assert info["classes"] == 10 and info["class_names"] == [str(d) for d in range(10)]
    assert sum(info["images"].values()) == 1797
    assert info["train_total"] == info["images"]["train"] + info["images"]["val"]
    assert info["image_size"] == 32 and info["hflip"] is False
    # the roles: the database of digits is its whole train split
    splits = info["splits"]
    assert splits["database"] == splits["train"] + splits["val"] == info["train_total"]
    assert splits["test"] == info["images"]["test"] and info["database_splits"] == ["train", "val"]


def test_info_for_people_goes_to_stderr(tmp_path):
    result = runner.invoke(app, ["data", "info", "digits", "--data-root", str(tmp_path / "d")])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "classes  10" in result.stderr


def test_info_missing_cub_root_is_one_error_line(tmp_path):
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["data", "info", "cub", "--data-root", str(missing)])
    assert result.exit_code == 1
    errors = _error_lines(result)
    assert len(errors) == 1 and result.stderr.strip() == errors[0]
    assert str(missing) in errors[0] and "images.txt" in errors[0]
    assert result.stdout == ""


def test_unknown_dataset_name(tmp_path):
    result = runner.invoke(app, ["data", "info", "imagenet"])
    assert result.exit_code == 1
    assert "cub, dogs, folder, digits" in _error_lines(result)[0]


def test_info_real_cub_subset(cub25_root):
    result = runner.invoke(app, ["data", "info", "cub", "--data-root", str(cub25_root)])
    assert result.exit_code == 0, result.stderr
    assert "classes  25" in result.stderr
    assert "train    750 (train 675 + val 75" in result.stderr
    assert "test     652" in result.stderr
    assert "Warning:" in result.stderr  # not the official counts
    data = json.loads(
        runner.invoke(app, ["data", "info", "cub", "--data-root", str(cub25_root), "--json"]).stdout
    )
    assert data["classes"] == 25 and data["train_total"] == 750 and data["images"]["test"] == 652


def _photos(root, bad_name=None):
    for cls in ("a", "b"):
        for i in range(3):
            path = root / cls / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 4), (i, 50, 90)).save(path)
    if bad_name:
        (root / "b" / bad_name).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")


def test_check_passes_on_good_images(tmp_path):
    _photos(tmp_path / "photos")
    result = runner.invoke(
        app, ["data", "check", "folder", "--data-root", str(tmp_path / "photos")]
    )
    assert result.exit_code == 0, result.stderr
    assert "all 6 images of folder decode" in result.stderr


def test_check_lists_bad_files_and_exits_1(tmp_path):
    _photos(tmp_path / "photos", bad_name="broken.jpg")
    args = ["data", "check", "folder", "--data-root", str(tmp_path / "photos")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "broken.jpg" in result.stderr
    assert _error_lines(result) == ["Error: 1 of 7 images of folder cannot be read"]
    report = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert [f["path"] for f in report["failed"]] == [str(tmp_path / "photos" / "b" / "broken.jpg")]
    assert report["images"] == 7


class _Files(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = self.server.files[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_download_through_the_cli(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        members = {
            "CUB_200_2011/images.txt": b"7 001.A/x.png\n",
            "CUB_200_2011/image_class_labels.txt": b"7 1\n",
            "CUB_200_2011/train_test_split.txt": b"7 1\n",
            "CUB_200_2011/classes.txt": b"1 001.A\n",
        }
        png = io.BytesIO()
        Image.new("RGB", (3, 3)).save(png, format="PNG")
        members["CUB_200_2011/images/001.A/x.png"] = png.getvalue()
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = buffer.getvalue()
    httpd = HTTPServer(("127.0.0.1", 0), _Files)
    httpd.files = {"/CUB_200_2011.tgz": archive}
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        source = download_module.ArchiveSource(
            url=f"http://127.0.0.1:{httpd.server_address[1]}/CUB_200_2011.tgz",
            size=len(archive),
            md5=hashlib.md5(archive).hexdigest(),
        )
        spec = download_module.DOWNLOADS["cub"]
        monkeypatch.setitem(
            download_module.DOWNLOADS,
            "cub",
            download_module.DatasetArchives(spec.folder, spec.expected, (source,)),
        )
        to = tmp_path / "datasets"
        result = runner.invoke(app, ["data", "download", "cub", "--to", str(to)])
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.exit_code == 0, result.stderr
    assert f"ready in {to / 'CUB_200_2011'}" in result.stderr
    info = runner.invoke(app, ["data", "info", "cub", "--data-root", str(to), "--json"])
    assert json.loads(info.stdout)["train_total"] == 1


def test_download_rejects_other_datasets(tmp_path):
    result = runner.invoke(app, ["data", "download", "digits", "--to", str(tmp_path)])
    assert result.exit_code == 1
    assert "choose one of cub, dogs" in _error_lines(result)[0]


@pytest.mark.parametrize("command", ["info", "check", "download"])
def test_help_has_an_example(command):
    result = runner.invoke(app, ["data", command, "--help"])
    assert result.exit_code == 0
    assert "Example: hashret data " in result.stdout


def test_info_cifar10_json_gives_every_role(tmp_path, monkeypatch):
    from builders import build_cifar

    from hashcli.data import cifar

    monkeypatch.setattr(cifar, "PROTOCOLS", {"cifar10": (2, 5, False, True)})
    build_cifar(tmp_path / "c", per_class=12)
    result = runner.invoke(
        app, ["data", "info", "cifar10", "--data-root", str(tmp_path / "c"), "--json"]
    )
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["splits"] == {"train": 40, "val": 10, "database": 50, "test": 20}
    assert info["database_splits"] == ["database"] and info["multi_label"] is False
