"""What every detector (the index baseline, the network) takes and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: The alert classes detection turns predictions into (DESIGN.md section 5).
ALERT_CLASSES: tuple[str, ...] = ("mining", "deforestation")


@dataclass(frozen=True)
class Prediction:
    """Per-class probabilities for one composite chip.

    Attributes:
        classes: class names in the order of ``probabilities`` (a subset of ``ALERT_CLASSES``).
        probabilities: ``(class, row, col)`` float32 in 0..1; NaN where the input was not observed.
    """

    classes: tuple[str, ...]
    probabilities: np.ndarray

    def __post_init__(self) -> None:
        if self.probabilities.ndim != 3 or self.probabilities.shape[0] != len(self.classes):
            raise ValueError(
                f"Prediction: probabilities shape {self.probabilities.shape} does not match "
                f"classes {self.classes}"
            )

    def of(self, name: str) -> np.ndarray:
        return self.probabilities[self.classes.index(name)]


@dataclass(frozen=True)
class ModelInfo:
    """Identity of a detector, written into every alert file (DESIGN.md section 6, ``model``)."""

    name: str
    version: str
    sha256: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@runtime_checkable
class Detector(Protocol):
    """A detector turns a period composite ``(band, row, col)`` into class probabilities."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def bands(self) -> tuple[str, ...]: ...

    def predict(self, data: np.ndarray, bands: tuple[str, ...]) -> Prediction:
        """Predict on reflectance ``data`` whose bands are named ``bands``.

        Raises:
            BandMismatchError: a band the detector needs is not in ``bands``.
        """
        ...


def for_level(detector: Any, level: str | None) -> Any:
    """``detector`` as it should read scenes of processing ``level`` (``L1C`` or ``L2A``): its
    ``for_level`` when it has one (a network trained on surface reflectance reading L1C
    subtracts its top-of-atmosphere offsets), else the detector itself."""
    adapt = getattr(detector, "for_level", None)
    return adapt(level) if adapt is not None else detector
