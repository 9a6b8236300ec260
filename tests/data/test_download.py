"""download_dataset against a local HTTP server serving archives the test builds."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from hashcli.data import load_dataset
from hashcli.data.download import ArchiveSource, download_dataset
from hashcli.errors import HashretError


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and not server.ignore_range:
            start = int(range_header.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if server.drop_after:  # send part of the body, then hang up
            self.wfile.write(payload[: server.drop_after.pop(0)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = HTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.drop_after, httpd.ignore_range = {}, [], [], False
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _tar(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _tar_folder(folder: Path, mode: str = "w:gz", arcname_root: Path | None = None) -> bytes:
    members = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            members[path.relative_to(arcname_root or folder).as_posix()] = path.read_bytes()
    return _tar(members, mode)


@pytest.fixture
def cub_archive(tmp_path, cub_builder):
    staging = tmp_path / "staging"
    cub_builder(staging, [(1, 1, 1), (2, 1, 0), (3, 2, 1), (4, 2, 0)], {1: "001.A", 2: "002.B"})
    (staging / "attributes.txt").write_text("1 has_bill_shape::dagger\n")
    # Padding so the archive is long enough to be cut in the middle.
    (staging / "CUB_200_2011" / "README").write_bytes(bytes(range(256)) * 400)
    return _tar_folder(staging, arcname_root=staging)


def _source(server, name: str, body: bytes, **overrides) -> ArchiveSource:
    server.files[f"/{name}"] = body
    fields = {
        "url": f"{server.url}/{name}",
        "size": len(body),
        "md5": hashlib.md5(body).hexdigest(),
    }
    fields.update(overrides)
    return ArchiveSource(**fields)


def test_download_verify_extract(tmp_path, server, cub_archive):
    source = _source(server, "CUB_200_2011.tgz", cub_archive)
    calls = []
    to = tmp_path / "data"
    folder = download_dataset(
        "cub", to, sources=[source], progress=lambda d, t: calls.append((d, t))
    )
    assert folder == to / "CUB_200_2011"
    assert calls[-1] == (len(cub_archive), len(cub_archive))
    dataset = load_dataset("cub", to, val_fraction=0)
    assert dataset.counts() == {"train": 2, "val": 0, "test": 2, "database": 0}
    assert (to / "attributes.txt").is_file()  # the archive's other top-level file
    assert sorted(p.name for p in to.iterdir()) == ["CUB_200_2011", "attributes.txt"]
    # A second call finds the dataset and asks nothing of the network.
    server.requests.clear()
    assert download_dataset("cub", to, sources=[source]) == folder
    assert server.requests == []


def test_dropped_connection_is_resumed_with_a_range_request(tmp_path, server, cub_archive):
    source = _source(server, "CUB_200_2011.tgz", cub_archive)
    cut = len(cub_archive) // 3
    server.drop_after = [cut]
    folder = download_dataset("cub", tmp_path, sources=[source], keep_archives=True)
    assert server.requests == [("/CUB_200_2011.tgz", None), ("/CUB_200_2011.tgz", f"bytes={cut}-")]
    assert (tmp_path / "CUB_200_2011.tgz").read_bytes() == cub_archive
    assert (folder / "images.txt").is_file()


def test_an_existing_part_file_is_resumed(tmp_path, server, cub_archive):
    source = _source(server, "CUB_200_2011.tgz", cub_archive)
    have = len(cub_archive) // 2
    (tmp_path / "CUB_200_2011.tgz.part").write_bytes(cub_archive[:have])
    calls = []
    download_dataset("cub", tmp_path, sources=[source], progress=lambda d, t: calls.append(d))
    assert server.requests == [("/CUB_200_2011.tgz", f"bytes={have}-")]
    assert calls[0] == have
    assert not (tmp_path / "CUB_200_2011.tgz.part").exists()


def test_a_server_ignoring_range_restarts_from_zero(tmp_path, server, cub_archive):
    source = _source(server, "CUB_200_2011.tgz", cub_archive)
    server.ignore_range = True
    # Garbage in the .part: appending to it would fail the checksum.
    (tmp_path / "CUB_200_2011.tgz.part").write_bytes(b"x" * 100)
    folder = download_dataset("cub", tmp_path, sources=[source], keep_archives=True)
    assert server.requests[0][1] == "bytes=100-"
    assert (tmp_path / "CUB_200_2011.tgz").read_bytes() == cub_archive
    assert folder.is_dir()


def test_checksum_mismatch_deletes_the_download(tmp_path, server, cub_archive):
    source = _source(server, "CUB_200_2011.tgz", cub_archive, md5="0" * 32)
    to = tmp_path / "data"
    with pytest.raises(HashretError, match=r"checksum mismatch for .*CUB_200_2011\.tgz: md5 "):
        download_dataset("cub", to, sources=[source])
    assert list(to.iterdir()) == []


def test_sha256_and_size_checked(tmp_path, server, cub_archive):
    bad_sha = _source(server, "a.tgz", cub_archive, md5=None, sha256="f" * 64)
    with pytest.raises(HashretError, match="sha256"):
        download_dataset("cub", tmp_path, sources=[bad_sha])
    wrong_size = _source(server, "b.tgz", cub_archive, size=len(cub_archive) + 1)
    with pytest.raises(HashretError, match="were expected"):
        download_dataset("cub", tmp_path, sources=[wrong_size])
    assert not (tmp_path / "CUB_200_2011").exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_failure_is_one_quick_line(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/CUB_200_2011.tgz"
    start = time.monotonic()
    with pytest.raises(HashretError) as info:
        download_dataset("cub", tmp_path, sources=[url], timeout=5)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "\n" not in message and url in message and "by hand" in message


def test_http_error_is_named(tmp_path, server):
    with pytest.raises(HashretError, match="HTTP 404"):
        download_dataset("dogs", tmp_path, sources=[f"{server.url}/missing.tar"])


def test_an_archive_placed_by_hand_is_used_offline(tmp_path, cub_archive):
    (tmp_path / "CUB_200_2011.tgz").write_bytes(cub_archive)
    source = ArchiveSource(
        url=f"http://127.0.0.1:{_closed_port()}/CUB_200_2011.tgz",
        size=len(cub_archive),
        md5=hashlib.md5(cub_archive).hexdigest(),
    )
    folder = download_dataset("cub", tmp_path, sources=[source])
    assert (folder / "images.txt").is_file()


def test_path_traversal_is_refused(tmp_path, server):
    evil = _tar({"CUB_200_2011/images.txt": b"", "../escaped.txt": b"gotcha"})
    source = _source(server, "CUB_200_2011.tgz", evil)
    to = tmp_path / "data"
    with pytest.raises(HashretError, match="refusing to extract"):
        download_dataset("cub", to, sources=[source])
    assert not (tmp_path / "escaped.txt").exists()
    assert not (to / "CUB_200_2011").exists()
    assert [p.name for p in to.iterdir()] == ["CUB_200_2011.tgz"]  # verified archive kept


def test_stanford_dogs_archives(tmp_path, server, dogs_builder):
    staging = tmp_path / "staging"
    train = [("n02085620-Chihuahua/a.jpg", 1), ("n02099601-golden_retriever/b.jpg", 77)]
    test = [("n02085620-Chihuahua/c.jpg", 1), ("n02099601-golden_retriever/d.jpg", 77)]
    dogs_builder(
        staging,
        train,
        test,
        boxes={rel: [(0, 0, 2, 2)] for rel, _ in train + test},
        lists_subdir=False,
    )
    images = _tar_folder(staging / "Images", "w", arcname_root=staging)
    annotations = _tar_folder(staging / "Annotation", "w", arcname_root=staging)
    lists = _tar({p.name: p.read_bytes() for p in staging.glob("*.mat")}, "w")
    sources = [
        _source(server, "images.tar", images),
        _source(server, "annotation.tar", annotations),
        _source(server, "lists.tar", lists),
    ]
    to = tmp_path / "data"
    assert download_dataset("dogs", to, sources=sources) == to / "StanfordDogs"
    dataset = load_dataset("dogs", to, boxes=True, val_fraction=0)
    assert dataset.counts() == {"train": 2, "val": 0, "test": 2, "database": 0}
    assert dataset.classes == ["n02085620-Chihuahua", "n02099601-golden_retriever"]
    assert sorted(p.name for p in to.iterdir()) == ["StanfordDogs"]


def test_unknown_dataset(tmp_path):
    with pytest.raises(HashretError, match="choose one of cub, dogs"):
        download_dataset("digits", tmp_path)


def test_cifar10_archive(tmp_path, server, monkeypatch):
    from builders import build_cifar

    from hashcli.data import cifar

    monkeypatch.setattr(cifar, "PROTOCOLS", {"cifar10-2": (3, 9, True, False)})
    staging = tmp_path / "staging"
    build_cifar(staging, per_class=12)
    archive = _tar_folder(staging, arcname_root=staging)  # holds cifar-10-batches-py/
    source = _source(server, "cifar-10-python.tar.gz", archive)
    to = tmp_path / "data"
    assert download_dataset("cifar10", to, sources=[source]) == to / "cifar-10-batches-py"
    dataset = load_dataset("cifar10-2", to)
    assert dataset.role_counts() == {"train": 80, "val": 10, "database": 90, "test": 30}
    assert sorted(p.name for p in to.iterdir()) == ["cifar-10-batches-py", "cifar10-png"]


def test_the_official_cifar10_archive_is_pinned():
    from hashcli.data.download import DOWNLOADS

    (source,) = DOWNLOADS["cifar10"].archives
    assert source.url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert (source.md5, source.size) == ("c58f30108f718f92721af3b95e74349a", 170_498_071)
