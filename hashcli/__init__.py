"""hashret: deep-hashing image retrieval (train, encode, index, query, evaluate).

The library lives in the subpackages ``data``, ``model``, ``train``, ``codes``, ``index`` and
``metrics``; the command-line shell in ``cli``. Nothing here imports torch, faiss or h5py at
import time, so ``hashret --help`` and shell completion stay instant.
"""

__version__ = "0.1.0"

from hashcli.errors import HashretError  # noqa: E402

__all__ = ["HashretError", "__version__"]
