"""hashret: deep-hashing image retrieval (train, encode, index, query, evaluate).

Layers, each importing only those below it (``tests/test_layout.py`` checks):

* ``cli``: the typer shell, one module per command;
* ``workflows``: the user jobs (train, encode, index, query, evaluate) and the only layer that
  knows run folders;
* ``train`` (recipe, trainer with hooks, losses, sampler, schedules) and ``render`` (contact
  sheet, precision-recall curve);
* ``model`` (networks, checkpoints, inference), ``index`` (FAISS), ``metrics`` (numpy);
* ``data`` (dataset readers, transforms) and ``codes`` (bits, code files);
* ``runtime`` (device, torchrun sessions), over ``errors``, ``fileio`` and ``paths``.

Nothing here imports torch, faiss or h5py at import time, so ``hashret --help`` and shell
completion stay instant.
"""

__version__ = "0.1.0"

from hashcli.errors import HashretError  # noqa: E402

__all__ = ["HashretError", "__version__"]
