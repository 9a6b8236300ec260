"""The base class of the hashing methods' losses: shapes checked once, float32 maths.

A method's loss is called as ``loss(outputs, labels) -> scalar`` where

* ``outputs`` (B, bits) float are the model's outputs *before* any tanh: each method applies its
  own activation where its formula says so (:attr:`HashingLoss.activation`). The model ends in
  the method's :attr:`HashingLoss.output_layer` (``"none"`` except for OrthoHash's batch norm);
  the binary code of an image is the sign of the model's output for every method.
* ``labels`` are (B,) int64 class indices, or (B, C) bool multi-hot rows for the methods with
  a multi-label form (:attr:`HashingLoss.multi_label`); another method refuses them with a
  :class:`~hashcli.errors.HashretError`.

Pairwise methods call two items similar when they share a class (single label) or at least one
label (multi-hot), and use every ordered pair ``i != j`` of the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, fields
from types import MappingProxyType
from typing import Any, get_type_hints

import torch
from torch import nn

from hashcli.errors import HashretError


class HashingLoss(nn.Module):
    """``loss(outputs (B, bits) float, labels (B,) int64 | (B, C) bool) -> scalar float32``.

    Subclasses set the class attributes below and implement :meth:`compute`, which receives
    float32 ``outputs`` (autocast off) and labels already checked: (B,) int64, or (B, C) bool
    when multi-hot. Every constructor takes ``bits`` and ``num_classes`` keyword arguments (plus
    ``codebook`` where :attr:`needs_codebook`), so :func:`create_method_loss` can build any.
    """

    #: Registry name.
    name: str = ""
    #: Whether (B, C) multi-hot labels are accepted.
    multi_label: bool = False
    #: Whether the constructor needs a fixed (num_classes, bits) +-1 codebook of class centres.
    needs_codebook: bool = False
    #: Whether the loss owns trainable parameters (a classifier) that the optimiser must get:
    #: pass ``loss.parameters()`` to it besides the model's.
    needs_classifier: bool = False
    #: Whether the trainer must call ``loss.set_step(step)`` before each training step.
    needs_step: bool = False
    #: What the loss applies to ``outputs`` before its formula (documentation and wiring).
    activation: str = "none"
    #: The layer the model puts after its linear head for this method, by name
    #: (:data:`hashcli.model.hashnet.OUTPUT_LAYERS`).
    output_layer: str = "none"
    #: For the methods with a codebook: whether its random centres are balanced (``bits // 2``
    #: bits at -1, CSQ's draw) or Bernoulli(0.5) bits (OrthoHash's); see
    #: :func:`hashcli.train.codebook.hash_centres`.
    codebook_balanced: bool = True
    #: The options every method may share, by their common name (``margin``,
    #: ``quantization``, ``miner``), mapped to this method's setting that has the idea. A
    #: shared option given to a method without it is an error (:func:`method_settings`).
    shared_options: Mapping[str, str] = MappingProxyType({})
    #: Settings whose value None means "derived" (a margin from the bit count), named by the
    #: loss attribute that holds the value in use; config.json records that value.
    derived_settings: tuple[str, ...] = ()

    #: The method's hyperparameters: a frozen dataclass whose defaults cite their source and
    #: whose fields carry their lower bounds (:func:`at_least`).
    settings_type: type = type(None)

    def __init__(
        self,
        *,
        bits: int,
        num_classes: int,
        codebook: torch.Tensor | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if bits < 1 or num_classes < 1:
            raise HashretError(
                f"bits and num_classes must be >= 1, got bits={bits}, num_classes={num_classes}"
            )
        self.bits = int(bits)
        self.num_classes = int(num_classes)
        self.settings = self.check_settings(make_settings(self.name, self.settings_type, options))
        if self.needs_codebook:
            self.register_buffer(
                "codebook", check_codebook(codebook, bits=self.bits, num_classes=self.num_classes)
            )
        elif codebook is not None:
            raise HashretError(f"the {self.name} method uses no codebook")

    @classmethod
    def check_settings(cls, settings: Any) -> Any:
        """``settings`` when valid beyond their bounds (names of pieces...), else HashretError."""
        return settings

    def forward(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        outputs, labels = self.check_inputs(outputs, labels)
        # float32 even under bf16/fp16 autocast: logs, exps and cosines of close values.
        with torch.autocast(device_type=outputs.device.type, enabled=False):
            return self.compute(outputs.float(), labels)

    def check_inputs(
        self, outputs: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(outputs, labels)`` after checking shapes and dtypes (see the class docstring)."""
        if outputs.ndim != 2 or not outputs.is_floating_point():
            raise ValueError(
                f"outputs must be a (batch, bits) float tensor, got {tuple(outputs.shape)} "
                f"{outputs.dtype}"
            )
        if outputs.shape[1] != self.bits:
            raise ValueError(f"outputs have {outputs.shape[1]} bits, the loss {self.bits}")
        labels = torch.as_tensor(labels, device=outputs.device)
        batch = outputs.shape[0]
        if labels.ndim == 2 and labels.dtype == torch.bool:
            if not self.multi_label:
                raise HashretError(
                    f"the {self.name} method has no multi-label form; give (batch,) class "
                    "indices or choose a method with multi-label support"
                )
            if labels.shape != (batch, self.num_classes):
                raise ValueError(
                    f"multi-hot labels must be ({batch}, {self.num_classes}) bool, got "
                    f"{tuple(labels.shape)}"
                )
            return outputs, labels
        if labels.shape != (batch,) or labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(
                f"labels must be a ({batch},) integer tensor or ({batch}, {self.num_classes}) "
                f"bool multi-hot, got {tuple(labels.shape)} {labels.dtype}"
            )
        labels = labels.long()
        if batch and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise HashretError(
                f"class indices must lie in 0..{self.num_classes - 1}, got "
                f"{int(labels.min())}..{int(labels.max())}"
            )
        return outputs, labels

    def compute(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self.settings, f.name)!r}" for f in fields(self.settings)
        )
        return f"bits={self.bits}, num_classes={self.num_classes}, {shown}"


def at_least(default: Any, minimum: float, *, strictly: bool = False) -> Any:
    """A settings field with its default and its lower bound (checked by :func:`make_settings`)."""
    return field(default=default, metadata={"minimum": minimum, "strictly": strictly})


def make_settings(method: str, settings_type: type, options: dict[str, Any]) -> Any:
    """``settings_type(**options)``, every bound checked; an option the method does not have,
    or a value out of bounds, is a HashretError naming the method."""
    unknown = sorted(set(options) - set(_names(settings_type)))
    if unknown:
        raise unknown_option(method, settings_type, unknown)
    settings = settings_type(**options)
    for f in fields(settings):
        value, minimum = getattr(settings, f.name), f.metadata.get("minimum")
        if value is None or minimum is None:
            continue
        strictly = f.metadata["strictly"]
        if value < minimum or (strictly and value == minimum):
            raise HashretError(
                f"the {method} method's {f.name} must be {'>' if strictly else '>='} "
                f"{minimum:g}, got {value}"
            )
    return settings


def parse_option(method: str, settings_type: type, key: str, text: str) -> Any:
    """The value of option ``key`` written as ``text`` (from ``--option key=value``), converted
    to the type of the method's setting; HashretError naming the method when it has no such
    option or the text is not of that type. ``none`` gives None where the setting allows it."""
    if key not in _names(settings_type):
        raise unknown_option(method, settings_type, [key])
    kind = get_type_hints(settings_type)[key]
    allowed = getattr(kind, "__args__", (kind,))
    if text.strip().lower() == "none" and type(None) in allowed:
        return None
    for convert in (bool, int, float, str):
        if convert in allowed:
            try:
                return _convert(convert, text)
            except ValueError:
                pass
    names = " or ".join(t.__name__ for t in allowed if t is not type(None))
    raise HashretError(f"the {method} method's {key} must be a {names}, got {text!r}")


def _names(settings_type: type) -> list[str]:
    return [f.name for f in fields(settings_type)]


def unknown_option(method: str, settings_type: type, unknown: list[str]) -> HashretError:
    """The error for options a method does not have, listing those it has."""
    return HashretError(
        f"the {method} method has no option {', '.join(unknown)}; its options: "
        f"{', '.join(_names(settings_type)) or 'none'}"
    )


def _convert(kind: type, text: str) -> Any:
    if kind is bool:
        words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if text.strip().lower() not in words:
            raise ValueError(text)
        return words[text.strip().lower()]
    return kind(text.strip()) if kind is not str else text


def check_codebook(codebook: torch.Tensor | None, *, bits: int, num_classes: int) -> torch.Tensor:
    """The (num_classes, bits) float32 +-1 codebook of class centres, or a HashretError."""
    if codebook is None:
        raise HashretError("this method needs a codebook of hash centres, one row per class")
    codebook = torch.as_tensor(codebook).float()
    if codebook.shape != (num_classes, bits):
        raise HashretError(
            f"the codebook must be ({num_classes}, {bits}) (classes, bits), got "
            f"{tuple(codebook.shape)}"
        )
    if not bool(((codebook == 1) | (codebook == -1)).all()):
        raise HashretError("the codebook must hold only +1 and -1")
    return codebook


def similarity(labels: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: same class, or (multi-hot) at least one shared label."""
    if labels.ndim == 2:
        shared = labels.float() @ labels.float().T
        return shared > 0
    return labels[:, None] == labels[None, :]


def off_diagonal(batch: int, device: torch.device) -> torch.Tensor:
    """(B, B) bool mask of the ordered pairs ``i != j``."""
    return ~torch.eye(batch, dtype=torch.bool, device=device)


def pair_mean(
    per_pair: torch.Tensor, similar: torch.Tensor, pairs: torch.Tensor, *, balanced: bool
) -> torch.Tensor:
    """The mean of a (B, B) per-pair loss over the ``pairs`` mask; ``balanced``: the mean over
    the similar pairs plus the mean over the dissimilar ones (HashNet's weights ``S / S1`` and
    ``S / S0`` divided by ``S``), a group that is absent adding 0. Never NaN."""
    if not balanced:
        return (per_pair * pairs).sum() / pairs.sum().clamp_min(1)
    similar, dissimilar = similar & pairs, ~similar & pairs
    similar_mean = (per_pair * similar).sum() / similar.sum().clamp_min(1)
    dissimilar_mean = (per_pair * dissimilar).sum() / dissimilar.sum().clamp_min(1)
    return similar_mean + dissimilar_mean


def plus_minus_sign(values: torch.Tensor) -> torch.Tensor:
    """+-1 of ``values`` with 0 counted as +1 (the code file convention), same dtype."""
    return torch.where(values >= 0, 1.0, -1.0).to(values.dtype)
