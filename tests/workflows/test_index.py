"""``hashret index`` as a library: what an index records of its code file, and the run's
writer lock (relocatable runs and concurrent additions are tested in test_runs.py)."""

from __future__ import annotations

import numpy as np

from hashcli.codes import CodeFile, write_codes
from hashcli.index import BinaryIndex
from hashcli.workflows.index import recorded_path, write_index

FINGERPRINT = "0123abcd-0123456789abcdef"


def test_an_index_records_its_code_file_beside_it_by_a_relative_path(tmp_path):
    rng = np.random.default_rng(0)
    codes = np.packbits(rng.integers(0, 2, (300, 48), dtype=np.uint8), axis=1)
    code_path = tmp_path / "train.h5"
    write_codes(code_path, CodeFile(codes, 48, attrs={"model_fingerprint": FINGERPRINT}))
    index = write_index(code_path, tmp_path / "train.faiss", "flat")
    assert (index.bits, index.ntotal, index.model_fingerprint) == (48, 300, FINGERPRINT)
    assert index.metadata.sources == [{"path": "train.h5", "rows": 300}]
    loaded = BinaryIndex.load(tmp_path / "train.faiss")
    np.testing.assert_array_equal(loaded.search(codes[5:6], 1).rows, [[5]])


def test_a_code_file_elsewhere_is_recorded_by_its_absolute_path(tmp_path):
    (tmp_path / "a").mkdir()
    elsewhere = tmp_path / "b" / "codes.h5"
    assert recorded_path(elsewhere, tmp_path / "a" / "x.faiss") == str(elsewhere)
    assert recorded_path(tmp_path / "a" / "sub" / "c.h5", tmp_path / "a" / "x.faiss") == (
        "sub/c.h5"
    )
