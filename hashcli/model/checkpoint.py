"""Checkpoints: plain tensors and builtin types, written atomically, read with weights_only.

A checkpoint is a dict saved with ``torch.save``. It may hold only tensors, ``None``, bools,
ints, floats, strings, and lists, tuples and string-keyed dicts of those; :func:`save_checkpoint`
checks this, so every checkpoint it writes loads with ``torch.load(weights_only=True)``, the only
way :func:`load_checkpoint` reads one: a file from elsewhere cannot run code when loaded.

:func:`save_checkpoint` adds the marker ``hashret_checkpoint`` (the format version) and
otherwise writes the keys it is given. Training (``hashret train``) gives these:

* ``model``, ``model_config``, ``fingerprint``: the network, from :func:`model_state`
  (its state dict, ``HashNet.config`` and ``HashNet.fingerprint()``);
* ``optimizer``, ``scheduler``, ``sampler``: their ``state_dict()``;
* ``rng``: this process's random states (:func:`capture_rng_state`), and in distributed runs
  ``rng_per_rank``, every rank's;
* ``step``, ``epoch``, ``best_val_map``, ``best_epoch``;
* ``skipped_images``: the unreadable images skipped so far;
* ``train_config``: the training settings (``TrainConfig.to_dict()``);
* ``loss``: the state dict of the method's loss when it has one (GreedyHash's classifier, the
  hash centres of CSQ, DPN and OrthoHash as a buffer);
* ``codebook``: for the methods with hash centres, the centres and how they were made
  (:meth:`hashcli.train.codebook.Codebook.to_state`), so that a resumed run and anyone
  reading ``model.pt`` get the very same centres.
"""

from __future__ import annotations

import pickle
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashcli.errors import FormatError, HashretError
from hashcli.fileio import atomic_path
from hashcli.model.hashnet import HashNet

#: Key marking a file as a hashret checkpoint, and its format version.
FORMAT_KEY = "hashret_checkpoint"
FORMAT_VERSION = 1

_SCALARS = (type(None), bool, int, float, str)


def _check_plain(value: Any, where: str) -> None:
    if torch.is_tensor(value) or isinstance(value, _SCALARS):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint key {where}[{key!r}] is not a str or int")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"checkpoint entry {where} is a {type(value).__name__}; only tensors and builtin types "
        f"(None, bool, int, float, str, list, tuple, dict) may be saved"
    )


def save_checkpoint(path: Path | str, state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder + os.replace).

    Raises TypeError naming the first entry that is not a tensor or builtin type (e.g. a numpy
    array: convert it with ``torch.from_numpy``). Returns the path.
    """
    path = Path(path)
    state = {**state, FORMAT_KEY: FORMAT_VERSION}
    _check_plain(state, "state")
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, tensors on the CPU.

    Uses ``torch.load(weights_only=True)`` only. FormatError when the file holds anything but
    tensors and builtin types (it could run code), is truncated or is not a hashret checkpoint;
    HashretError when it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise HashretError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():
            # A raw pickle of another protocol is refused below anyway; no extra warning.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message is long and suggests weights_only=False; keep only its diagnosis.
        text = str(error)
        detail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
        reason = detail[0] if detail and "WeightsUnpickler error:" in text else "not a pickle"
        reason = reason.split(". ")[0].rstrip(".")
        raise FormatError(
            f"refusing to load {path}: it is not a plain checkpoint of tensors and builtin types "
            f"({reason}); a file holding other objects could run code when loaded, so only "
            f"checkpoints written by hashret are read"
        ) from None
    except Exception as error:  # truncated zip, junk bytes: torch raises many types
        lines = str(error).strip().splitlines()
        raise FormatError(
            f"{path} is not a readable checkpoint: truncated or not written by hashret"
            + (f" ({type(error).__name__}: {lines[0].split('. ')[0].rstrip('.')})" if lines else "")
        ) from None
    if not isinstance(state, dict) or state.get(FORMAT_KEY) is None:
        raise FormatError(f"{path} is not a hashret checkpoint (no {FORMAT_KEY!r} marker)")
    if state[FORMAT_KEY] != FORMAT_VERSION:
        raise FormatError(
            f"{path} is a hashret checkpoint of format {state[FORMAT_KEY]!r}; this version "
            f"reads format {FORMAT_VERSION}"
        )
    return state


def model_state(model: HashNet) -> dict[str, Any]:
    """The checkpoint entries describing ``model``: ``model``, ``model_config``, ``fingerprint``."""
    return {
        "model": model.state_dict(),
        "model_config": model.config,
        "fingerprint": model.fingerprint(),
    }


def model_from_state(state: Mapping[str, Any], *, source: str = "checkpoint") -> HashNet:
    """Rebuild a HashNet from checkpoint entries (see :func:`model_state`), on the CPU."""
    from hashcli.model.factory import create_model

    config = state.get("model_config")
    weights = state.get("model")
    if not isinstance(config, dict) or not isinstance(weights, dict):
        raise FormatError(f"{source} holds no model (expected 'model' and 'model_config' entries)")
    try:
        model = create_model(
            config["backbone"],
            config["bits"],
            pretrained=False,
            image_size=config.get("image_size"),
            output_layer=config.get("output_layer", "none"),
        )
    except KeyError as error:
        raise FormatError(f"{source}: model_config lacks {error}") from None
    model._config.update({k: v for k, v in config.items() if k not in ("bits", "feature_dim")})
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise FormatError(
            f"{source}: the model weights do not fit its config ({str(error).splitlines()[0]})"
        ) from None
    expected = state.get("fingerprint")
    if expected is not None and model.fingerprint() != expected:
        raise FormatError(
            f"{source}: the model weights do not match the stored fingerprint {expected} "
            f"(the file is damaged)"
        )
    return model


def load_model(path: Path | str, device: str | torch.device = "cpu") -> HashNet:
    """The HashNet saved in checkpoint ``path``, in eval mode on ``device``.

    Needs no pretrained weights: the architecture is rebuilt from the stored config and the
    stored weights loaded into it.
    """
    model = model_from_state(load_checkpoint(path), source=str(path))
    return model.to(device).eval()


def capture_rng_state() -> dict[str, Any]:
    """The global random states (torch CPU and CUDA, numpy, Python) as tensors and builtins."""
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss_next": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the global random states saved by :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py_state = state["python"]
    random.setstate((py_state["version"], tuple(py_state["state"]), py_state["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = list(state["cuda"])
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
