"""The types, constants and options the inference modules share; small array helpers
(NumPy arrays on the CPU, tensors on a torch device).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from detection.errors import ConfigError
from models.runtime import BACKENDS
from models.site_rule import PROBABILITY_STEPS

#: Where a batch runs: a torch device, or ``"cpu"`` (NumPy arrays; an install without PyTorch).
Device = Any


#: ``progress(stage, done, total)``, as the scan's progress callback.
ProgressFn = Callable[[str, int, int], None]


#: Called with each finished row block of the probability raster, ``(class, row, col)`` as
#: written, and its first row, in order, on a background thread.
RowsFn = Callable[[np.ndarray, int], None]


#: Value of a ``uint8`` probability pixel that was not observed.
UINT8_NODATA = 255


#: ``uint8`` probabilities are ``round(p * UINT8_SCALE)``: steps of 1/254, the steps the site
#: rule compares probabilities on (:data:`models.site_rule.PROBABILITY_STEPS`).
UINT8_SCALE = float(PROBABILITY_STEPS)


#: Dataset tag of a probability COG holding the checkpoint's per-class thresholds (JSON).
TAG_THRESHOLDS = "MINEWATCH_THRESHOLDS"


@dataclass(frozen=True)
class InferenceOptions:
    """How :func:`predict_raster` cuts, batches and runs a scene.

    Attributes:
        window_px: window side; rounded up to a multiple of the network's stride and shrunk to
            the scene when the scene is smaller.
        overlap_px: overlap of neighbouring windows; the window step (``window - overlap``) is
            rounded down to a multiple of the stride.
        batch_size: windows per forward pass; None = chosen from free GPU memory on CUDA, 1 on
            the CPU (a bigger window beats a bigger batch there).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        read_ahead: batches of windows read ahead by the reader threads.
        read_threads: reader threads, each with its own file handle (default: 2 on the CPU,
            where the network needs the cores; on CUDA the CPUs available, at most 16, since
            decoding is then the wall).
        num_threads: CPU threads of the network (default: the CPUs available, at most 16).
        compile: ``torch.compile`` the network (worth it on a GPU for whole tiles; costs about
            a minute of compilation on a small CPU).
        backend: on the CPU, ``auto`` (ONNX Runtime when installed, else PyTorch), ``torch`` or
            ``onnxruntime`` (see :mod:`models.runtime`); CUDA always runs PyTorch.
        probability_dtype: ``uint8`` (``round(p * 254)``, nodata 255, GDAL scale 1/254; a
            quarter of the size) or ``float32`` (nodata NaN).
    """

    window_px: int = 768
    overlap_px: int = 64
    batch_size: int | None = None
    device: str = "auto"
    read_ahead: int = 2
    read_threads: int | None = None
    num_threads: int | None = None
    compile: bool = False
    backend: str = "auto"
    probability_dtype: Literal["uint8", "float32"] = "uint8"

    def __post_init__(self) -> None:
        if self.window_px < 32:
            raise ConfigError(f"inference: window_px {self.window_px}; expected >= 32")
        if not 0 <= self.overlap_px <= self.window_px // 2:
            raise ConfigError(
                f"inference: overlap_px {self.overlap_px}; expected 0..{self.window_px // 2} "
                f"(at most half of window_px {self.window_px})"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"inference: batch_size {self.batch_size}; expected >= 1")
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"inference: backend {self.backend!r}; expected one of {', '.join(BACKENDS)}"
            )
        if self.read_ahead < 1 or (self.read_threads is not None and self.read_threads < 1):
            raise ConfigError(
                f"inference: read_ahead {self.read_ahead} and read_threads {self.read_threads} "
                "must be >= 1"
            )
        if self.probability_dtype not in ("uint8", "float32"):
            raise ConfigError(
                f"inference: probability_dtype {self.probability_dtype!r}; expected 'uint8' or "
                "'float32'"
            )


@dataclass(frozen=True)
class RasterPrediction:
    """What :func:`predict_raster` wrote, and how fast.

    Attributes:
        path: the probability COG (one band per class, named in the band descriptions).
        classes: the classes of its bands, in order.
        crs: CRS of the scene.
        transform: transform of the scene.
        width: columns.
        height: rows.
        device: the device that ran the network (``cpu`` after a fallback).
        backend: the engine that ran it (``torch`` or ``onnxruntime``).
        window_px: window side used.
        overlap_px: overlap used (after stride rounding).
        batch_size: batch size used at the end (after any halving).
        windows: windows predicted (windows without any valid pixel are skipped).
        seconds: wall time, reading to COG.
        model_seconds: time spent in the network (synchronised on CUDA).
        cog_seconds: time spent writing the COG at the end (overviews, compression).
        megapixels_per_s: scene megapixels per wall second.
        thresholds: per-class thresholds the checkpoint recommends (empty when it has none).
    """

    path: Path
    classes: tuple[str, ...]
    crs: CRS
    transform: Affine
    width: int
    height: int
    device: str
    backend: str
    window_px: int
    overlap_px: int
    batch_size: int
    windows: int
    seconds: float
    model_seconds: float
    cog_seconds: float
    megapixels_per_s: float
    thresholds: dict[str, float] = field(default_factory=dict)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _axis_lengths(starts: list[int], size: int, window: int, stride: int) -> list[int]:
    """Window lengths: ``window``, but the last shrinks to the scene edge (stride-rounded)."""
    last = min(window, _round_up(size - starts[-1], stride))
    return [window] * (len(starts) - 1) + [last]


def _stack(windows: list[Any]) -> Any:
    """One ``(N, band, row, col)`` batch of windows (NumPy arrays, or tensors on the device)."""
    if isinstance(windows[0], np.ndarray):
        return np.stack(windows)
    import torch

    return torch.stack(windows)


def _cat(parts: list[Any], axis: int) -> Any:
    """``parts`` joined along ``axis`` (NumPy arrays, or tensors on the device)."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts, axis=axis)
    import torch

    return torch.cat(parts, dim=axis)


def _on(device: Device, array: np.ndarray) -> Any:
    """``array`` where ``device`` computes: itself for ``"cpu"`` (NumPy), else a tensor there."""
    if isinstance(device, str):
        return array
    import torch

    return torch.from_numpy(array).to(device)
