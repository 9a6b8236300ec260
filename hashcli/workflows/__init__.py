"""User jobs: the only layer that knows run folders.

Each module is one job a command (or a Python user) runs, over the domain packages below it
(``data``, ``model``, ``train``, ``codes``, ``index``, ``metrics``, ``render``, ``runtime``):

* :mod:`.runs`: run folders, the typed run config, the workdir's current run, the run lock;
* :mod:`.artefacts`: the one writer of code files with their provenance;
* :mod:`.train`, :mod:`.encode`, :mod:`.index`, :mod:`.query`, :mod:`.evaluate`.

Importing this package is cheap (no torch, FAISS or h5py).
"""
