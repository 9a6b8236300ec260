"""The settings of a training run: :class:`TrainConfig` (torch-free).

It is saved as ``config.json["train"]`` in the run folder; :meth:`TrainConfig.from_dict` reads
it back with these defaults for any key an older run did not record, so that the defaults
(validation share, seed...) are written in one place only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hashcli.train.names import DEFAULT_METHOD

#: Epochs when ``--epochs`` is not given: per dataset, else :data:`DEFAULT_EPOCHS_OTHER`.
DEFAULT_EPOCHS = {"digits": 15}
DEFAULT_EPOCHS_OTHER = 90


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as the run's ``config.json["train"]``)."""

    dataset: str = "digits"
    data_root: str | None = None
    bits: int = 48
    backbone: str = "resnet18"
    pretrained: bool = True
    weights: str | None = None
    epochs: int | None = None
    batch_size: int = 64
    per_class: int = 4
    image_size: int | None = None
    #: The hashing method (:data:`hashcli.train.names.METHOD_NAMES`).
    method: str = DEFAULT_METHOD
    #: The shared options (None: the method's default); a method without the idea refuses one.
    miner: str | None = None
    margin: float | None = None
    quantization_weight: float | None = None
    #: The method's own settings as given, ``name -> text`` (``--option name=value``).
    method_options: dict[str, str] = field(default_factory=dict)
    lr: float = 1e-3
    backbone_lr_mult: float = 1.0
    schedule: str = "cosine"
    warmup_steps: int | None = None
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    #: The share of the classes left out of training and validation (the unseen-class
    #: protocol, :func:`hashcli.data.splits.choose_unseen_classes`); 0: none.
    unseen_classes: float = 0.0
    crop_to_box: bool = False
    device: str = "auto"
    workers: int | None = None
    seed: int = 0
    eval_every: int = 1
    skip_bad_images: bool = False
    compile: bool = False
    max_steps: int | None = None
    encode_batch_size: int = 128

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TrainConfig:
        """A config from a saved dict: unknown keys ignored, missing ones at their defaults."""
        values = dict(values or {})
        if "method" not in values:
            # Runs from before the methods were added all trained the triplet loss, whose
            # averaging (``reduction``) was a setting of its own.
            values["method"] = "triplet"
            if values.get("reduction", "all") != "all":
                values["method_options"] = {"reduction": str(values["reduction"])}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def method_shared_options(self) -> dict[str, Any]:
        """The shared options as :func:`hashcli.train.methods.method_overrides` takes them."""
        return {
            "margin": self.margin,
            "quantization": self.quantization_weight,
            "miner": self.miner,
        }

    def default_epochs(self) -> int:
        """``epochs``, else the dataset's default."""
        return self.epochs or DEFAULT_EPOCHS.get(self.dataset, DEFAULT_EPOCHS_OTHER)
