"""Binary indexes over hash codes: build, search (k-NN and radius), save and load.

Importing this package does not import faiss; only :mod:`hashcli.index.binary_index` uses it,
inside the functions that need it.
"""

from hashcli.index.binary_index import (
    GPU_MAX_K,
    BinaryIndex,
    SearchResult,
    faiss_threads,
)
from hashcli.index.layout import FAST_CODE_BYTES, padded_code_bytes
from hashcli.index.metadata import IndexMetadata, metadata_path, read_index_metadata
from hashcli.index.params import DEFAULT_PARAMS, INDEX_TYPES, SEARCH_PARAMS

__all__ = [
    "DEFAULT_PARAMS",
    "FAST_CODE_BYTES",
    "GPU_MAX_K",
    "INDEX_TYPES",
    "SEARCH_PARAMS",
    "BinaryIndex",
    "IndexMetadata",
    "SearchResult",
    "faiss_threads",
    "metadata_path",
    "padded_code_bytes",
    "read_index_metadata",
]
