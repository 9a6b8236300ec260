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


def _ask_at_once(client, paths, top) -> dict[int, dict]:
    """Search with every image of ``paths`` from its own thread, all at once; answers by
    position."""
    answers: dict[int, dict] = {}

    def ask(i, path):
        answers[i] = client.post(f"/api/search?top={top}", files=_upload(path)).json()

    threads = [threading.Thread(target=ask, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


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
        answers = _ask_at_once(client, paths, top=4)
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


def test_added_item_is_found_at_once_and_after_a_restart(fake, tmp_path):
    from hashcli.codes import read_codes

    photo = tmp_path / "new.png"
    Image.fromarray((np_random(7) * 255).astype("uint8")).save(photo)
    with _client() as client:
        added = client.post("/api/items", files=_upload(photo), data={"class": "owl"})
        assert added.status_code == 201, added.text
        row = added.json()["row"]
        assert row == len(fake.db_paths)
        hit = client.post("/api/search?top=1", files=_upload(photo)).json()["results"][0]
        assert (hit["row"], hit["distance"], hit["class"]) == (row, 0, "owl")
        thumb = client.get(f"/api/items/{row}/thumbnail")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(thumb.content)).size) <= 160
        assert client.get(f"/api/items/{row + 1}/thumbnail").status_code == 404
        bad_class = client.post("/api/items", files=_upload(photo), data={"class": "emu"})
        assert bad_class.status_code == 400 and "emu" in bad_class.json()["error"]
    store = read_codes(fake.run_dir / "codes" / "database.h5")
    assert len(store) == row + 1 and store.labels[row] == 2  # owl
    with _client() as client:  # a restart: the new row is still there
        hit = client.post("/api/search?top=1", files=_upload(photo)).json()["results"][0]
        assert (hit["row"], hit["distance"]) == (row, 0)


def test_additions_from_the_server_and_the_cli_all_land(fake, tmp_path):
    from hashcli.workflows.encode import encode_to_file
    from hashcli.workflows.index import add_to_index

    photos = []
    for i in range(4):
        photos.append(tmp_path / f"p{i}.png")
        Image.fromarray((np_random(20 + i) * 255).astype("uint8")).save(photos[-1])
    codes = encode_to_file([str(p) for p in photos[2:]], out=tmp_path / "cli.h5")
    with _client() as client:
        results = {}

        def server_add(i):
            results[i] = client.post("/api/items", files=_upload(photos[i])).json()["row"]

        threads = [threading.Thread(target=server_add, args=(i,)) for i in (0, 1)]
        threads.append(threading.Thread(target=lambda: add_to_index(codes.out)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        health = client.get("/api/health").json()
        for i in (0, 1, 2, 3):  # all four searchable, at distance 0
            hit = client.post("/api/search?top=1", files=_upload(photos[i])).json()["results"][0]
            assert hit["distance"] == 0 and hit["row"] >= len(fake.db_paths)
    assert len(set(results.values())) == 2
    assert health["n_database"] == len(fake.db_paths) + 4
    with _client() as client:  # and after a restart
        assert client.get("/api/health").json()["n_database"] == len(fake.db_paths) + 4


def np_random(seed):
    import numpy as np

    return np.random.default_rng(seed).random((24, 20, 3))


def test_page_and_search_by_row(fake):
    with _client() as client:
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "/api/search" in page.text and 'type="file"' in page.text
        by_row = client.post("/api/search?row=4&top=3")
        assert by_row.status_code == 200, by_row.text
        hits = by_row.json()["results"]
        # row 4 is a copy of row 1: both at distance 0, ties by row
        assert [(h["row"], h["distance"]) for h in hits[:2]] == [(1, 0), (4, 0)]
        assert client.post("/api/search?row=999").status_code == 404
        assert client.post("/api/search").status_code == 422


def test_two_batch_workers_on_the_cpu_each_on_its_share_of_the_cores(fake, monkeypatch):
    """The CPU plan: two workers, no wait, each ONNX Runtime pass on half the cores; answers
    still those of `hashret query`."""
    from hashcli.server import batching

    monkeypatch.setattr(batching, "usable_cores", lambda: 4)
    export_model()
    paths = [fake.photos[0], fake.db_paths[4], fake.test_paths[1]] * 2
    expected = {
        p.name: query_images([str(p)], top=3, engine="torch").results[0].to_dict()["results"]
        for p in set(paths)
    }
    retriever, name = open_retriever(engine="onnx", device="cpu")
    assert retriever.encoder.session.get_session_options().intra_op_num_threads == 0  # its own
    with TestClient(create_app(retriever, run_name=name)) as client:
        stats = client.get("/api/stats").json()
        assert (stats["workers"], stats["max_wait_ms"]) == (2, 0.0)
        assert retriever.encoder.session.get_session_options().intra_op_num_threads == 2
        answers = _ask_at_once(client, paths, top=3)
    assert all(answers[i]["results"] == expected[p.name] for i, p in enumerate(paths))
