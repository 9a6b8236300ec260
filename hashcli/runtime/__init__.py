"""Where code runs: the torch device and its per-device settings, and torchrun sessions.

Importing this package is cheap; :mod:`hashcli.runtime.device` and
:mod:`hashcli.runtime.distributed` import torch when their functions run.
"""
