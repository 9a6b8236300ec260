"""The HTTP service against ``hashret query --json``: the same objects for the same images, with
batches of concurrent searches, and 4xx for every bad request while it keeps serving."""

from __future__ import annotations

import io
import threading

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from workflows.test_query import make_fake_run, one_torch_thread  # noqa: F401

from hashcli.server.app import create_app
from hashcli.workflows.export import export_model
from hashcli.workflows.query import query_images
from hashcli.workflows.retrieval import open_retriever


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HASHRET_WORKDIR", str(tmp_path / "runs"))
    return make_fake_run(tmp_path)


def _client(engine="torch", **options) -> TestClient:
    retriever, name = open_retriever(engine=engine, device="cpu")
    return TestClient(create_app(retriever, run_name=name, **options))


def _upload(path):
    return {"image": (path.name, path.read_bytes(), "image/png")}


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_search_equals_query_json(fake, engine):
    if engine == "onnx":
        export_model()
    queries = [fake.photos[0], fake.db_paths[4], fake.test_paths[1]]
    with _client(engine) as client:
        health = client.get("/api/health").json()
        assert health == {
            "status": "ok",
            "run": fake.run_dir.name,
            "bits": 16,
            "n_database": len(fake.db_paths),
            "engine": engine,
            "device": "cpu",
        }
        for path in queries:
            for params in ({"top": 5}, {"radius": 3}, {}):
                got = client.post("/api/search", params=params, files=_upload(path))
                assert got.status_code == 200, got.text
                expected = query_images([str(path)], engine="torch", **params).results[0]
                want = expected.to_dict() | {"query": path.name}
                # the service does not know where an upload came from, so not its class
                want |= {"label": None, "class": None}
                assert got.json() == want


def test_concurrent_searches_are_batched_and_each_gets_its_own_answer(fake):
    paths = [fake.photos[0], fake.photos[1], fake.db_paths[2], fake.db_paths[7]] * 3
    expected = {
        p.name: query_images([str(p)], top=4, engine="torch").results[0].to_dict()["results"]
        for p in set(paths)
    }
    with _client(max_batch=8, max_wait_ms=200) as client:
        answers: dict[int, dict] = {}

        def ask(i, path):
            answers[i] = client.post("/api/search?top=4", files=_upload(path)).json()

        threads = [threading.Thread(target=ask, args=(i, p)) for i, p in enumerate(paths)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sizes = client.app.state.batcher.batch_sizes
    assert all(answers[i]["results"] == expected[p.name] for i, p in enumerate(paths))
    assert sum(size * n for size, n in sizes.items()) == len(paths)
    assert max(sizes) > 1  # at least one batch held several searches


def test_bad_uploads_get_4xx_and_the_service_goes_on(fake, monkeypatch):
    good = _upload(fake.photos[0])
    with _client(max_upload_bytes=50_000) as client:
        junk = client.post("/api/search", files={"image": ("x.jpg", b"not an image", "image/jpeg")})
        assert junk.status_code == 400 and "x.jpg" in junk.json()["error"]
        empty = client.post("/api/search", files={"image": ("e.png", b"", "image/png")})
        assert empty.status_code == 400
        big = client.post("/api/search", files={"image": ("b.png", b"\0" * 60_000, "image/png")})
        assert big.status_code == 413
        # a decompression bomb: a small file that decodes to too many pixels
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
        buffer = io.BytesIO()
        Image.new("RGB", (200, 200)).save(buffer, "PNG")
        bomb = client.post(
            "/api/search", files={"image": ("bomb.png", buffer.getvalue(), "image/png")}
        )
        assert bomb.status_code == 400 and "too many pixels" in bomb.json()["error"]
        monkeypatch.undo()
        missing = client.post("/api/search")
        assert missing.status_code == 422
        assert client.post("/api/search?top=0", files=good).status_code == 422
        assert client.post("/api/search", files=good).status_code == 200


def test_token_required_when_set(fake):
    with _client(token="s3cret") as client:
        assert client.get("/api/health").status_code == 401
        wrong = client.get("/api/health", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "token" in wrong.json()["error"]
        ok = client.get("/api/health", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        search = client.post("/api/search", files=_upload(fake.photos[0]))
        assert search.status_code == 401
