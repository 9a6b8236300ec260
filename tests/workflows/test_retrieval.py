"""The retrieval layer that query and serve share: loaded once, the same answers as
``hashret query`` for files and for decoded images, with either engine."""

from __future__ import annotations

import pytest
from workflows.test_query import make_fake_run, one_torch_thread  # noqa: F401

from hashcli.data.images import load_image
from hashcli.workflows.export import export_model
from hashcli.workflows.query import query_images
from hashcli.workflows.retrieval import Retriever
from hashcli.workflows.runs import resolve_checkpoint


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HASHRET_WORKDIR", str(tmp_path / "runs"))
    return make_fake_run(tmp_path)


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_loaded_once_answers_like_query(fake, engine):
    export_model()
    checkpoint, run_dir = resolve_checkpoint()
    index = run_dir / "index" / "database.faiss"
    retriever = Retriever.open(checkpoint, run_dir, index, run_dir, engine=engine, device="cpu")
    assert retriever.engine == engine and retriever.bits == 16
    queries = [fake.photos[0], fake.db_paths[4], fake.test_paths[1]]
    expected = [r.to_dict() for r in query_images([str(q) for q in queries], top=5).results]
    for _ in range(2):  # the same object, asked again
        codes = retriever.encode_images([load_image(q) for q in queries])
        assert (codes == retriever.encode_paths(queries)).all()
        found = retriever.search(codes, k=5)
        got = retriever.describe(codes, found, [str(q) for q in queries], query_paths=queries)
        assert [r.to_dict() for r in got] == expected
