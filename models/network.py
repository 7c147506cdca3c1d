"""The segmentation network as a detector (implements :class:`models.detector.Detector`)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.blend import axis_starts, axis_weights
from models.checkpoint import (
    PATCH_CLASSIFIERS,
    Checkpoint,
    load_checkpoint,
    network_input,
    surface_offsets,
)
from models.detector import ALERT_CLASSES, ModelInfo, Prediction
from models.errors import CheckpointError, ModelError, require_torch, torch_available
from models.registry import DEFAULT_MODEL, ShippedModel, shipped_checkpoint_path
from models.runtime import BACKENDS, Engine, build_engine
from tiles.radiometry import toa_to_surface

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def device_name(device: str) -> str:
    """Like :func:`resolve_device`, as a name; ``auto``/``cpu`` need no PyTorch.

    Raises:
        ModelError: unknown device, or ``cuda`` without CUDA (or without PyTorch).
    """
    if device == "cpu" or (device == "auto" and not torch_available()):
        return "cpu"
    return str(resolve_device(device))


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``/``cuda`` as given.

    Raises:
        ModelError: unknown device, or ``cuda`` without CUDA.
        TorchMissingError: PyTorch is not installed.
    """
    if device.startswith("cuda"):
        require_torch(f"device {device!r}")
    else:
        require_torch("choosing a torch device")
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError(
                f"device {device!r}: CUDA is not available; use device 'auto' or 'cpu'"
            )
        return torch.device(device)
    raise ModelError(f"device {device!r}: expected 'auto', 'cpu' or 'cuda'")


class NetworkDetector:
    """Class probabilities from a U-Net checkpoint.

    A composite up to ``tile_px`` on a side is predicted in one pass (padded to the network's
    stride); larger ones in overlapping tiles blended as whole-scene inference blends them
    (:mod:`models.blend`). Unobserved pixels
    (NaN in any band) are filled with the band mean before the network and are NaN in the
    output. The network runs through a :mod:`models.runtime` engine, built on first use (so a
    detector can be sent to Dask workers and builds its engine there).

    Args:
        checkpoint: a loaded checkpoint.
        device: ``auto`` (CUDA when available, bf16 autocast), ``cpu`` or ``cuda``.
        tile_px: the largest input predicted in one pass, and the tile side beyond it
            (default: the checkpoint's patch size, at least 1152).
        overlap_px: overlap of neighbouring tiles (default: an eighth of the tile).
        batch_size: tiles per forward pass.
        num_threads: CPU threads (default: the CPUs available to this process, at most 16).
        backend: ``auto``, ``torch`` or ``onnxruntime`` (CPU only; see :mod:`models.runtime`).

    Raises:
        CheckpointError: the weights do not fit the checkpoint's architecture.
        ModelError: bad device, backend or tiling options.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        device: str = "auto",
        tile_px: int | None = None,
        overlap_px: int | None = None,
        batch_size: int = 4,
        num_threads: int | None = None,
        backend: str = "auto",
    ) -> None:
        self._ckpt = checkpoint
        meta = checkpoint.metadata
        self._device = device_name(device)
        if backend not in BACKENDS:
            raise ModelError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        self._backend = backend
        self._threads = num_threads
        # A scan chip with its halo in one pass (1024 + 2 x 64 px at most), so the network is
        # never cut inside a chip: 1088 px take 0.77 s in one pass, 3.4 s as four 1024 px tiles
        # (2 CPUs; 1.25 GB peak at 1152 px). Tiles are multiples of 32, the largest stride of
        # the registry's networks.
        tile = tile_px or max(meta.patch_size_px, 1152)
        self._tile = -(-tile // 32) * 32
        self._overlap = self._tile // 8 if overlap_px is None else overlap_px
        if not 0 <= self._overlap < self._tile or batch_size < 1:
            raise ModelError(
                f"tiling: overlap {self._overlap} px must be in 0..{self._tile - 1} and batch "
                f"size {batch_size} >= 1"
            )
        self._batch = batch_size
        self._class_idx = [meta.classes.index(c) for c in ALERT_CLASSES]
        self._engine_: Engine | None = None
        #: per-band offsets subtracted from the input first (top of atmosphere -> surface)
        self._surface: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_engine_"] = None  # an ONNX Runtime session does not pickle; rebuilt on use
        return state

    @property
    def _engine(self) -> Engine:
        if self._engine_ is None:
            self._engine_ = build_engine(
                self._ckpt, self._device, backend=self._backend, num_threads=self._threads
            )
        return self._engine_

    @property
    def device(self) -> str:
        """``cuda`` or ``cpu``."""
        return self._device.split(":")[0]

    @property
    def backend(self) -> str:
        """The engine that runs the network (``torch`` or ``onnxruntime``; builds it)."""
        return self._engine.backend

    @property
    def checkpoint(self) -> Checkpoint:
        return self._ckpt

    @property
    def info(self) -> ModelInfo:
        m = self._ckpt.metadata
        return ModelInfo(name=m.name, version=m.version, sha256=m.sha256)

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self._ckpt.metadata.bands)

    @property
    def options(self) -> dict[str, Any]:
        """What changes this detector's output beside the weights (part of a scan unit's key):
        the top-of-atmosphere offsets it subtracts, when it reads L1C."""
        if not self._surface:
            return {}
        return {"toa_offsets": ",".join(f"{b}={v:g}" for b, v in sorted(self._surface.items()))}

    def for_level(self, level: str | None) -> NetworkDetector:
        """This detector for scenes of processing ``level``: reading L1C, a network trained on
        surface reflectance brings the input to surface-like reflectance with the offsets its
        real top-of-atmosphere training chips were converted with
        (:func:`models.checkpoint.surface_offsets`; without them its chip sensitivity falls to
        nearly 0, see the model card); otherwise this detector itself."""
        offsets = surface_offsets(self._ckpt.metadata, level)
        if offsets == self._surface:
            return self
        other = copy.copy(self)
        other._surface = offsets
        return other

    def predict(self, data: np.ndarray, bands: tuple[str, ...]) -> Prediction:
        """Class probabilities of a period composite.

        Args:
            data: ``(band, row, col)`` float32 reflectance, NaN where unobserved.
            bands: names of the bands of ``data``, in order (any order, a superset is fine).

        Returns:
            ``mining`` and ``deforestation`` probabilities ``(2, row, col)``, NaN where any
            band the network uses is NaN.

        Raises:
            BandMismatchError: a band the network requires is not in ``bands`` (an optional
                band may be missing: the network is told, see
                :func:`models.checkpoint.network_input`).
            ModelError: ``data`` is not ``(band, row, col)`` with ``len(bands)`` bands.
        """
        if data.ndim != 3 or data.shape[0] != len(bands):
            raise ModelError(
                f"network input shape {data.shape} with {len(bands)} band name(s): expected "
                "(band, row, col) with one name per band"
            )
        if self._surface:
            data = toa_to_surface(data, bands, self._surface)
        x, valid = network_input(self._ckpt.metadata, data, bands)
        probs = np.full((len(ALERT_CLASSES), *x.shape[1:]), np.nan, dtype=np.float32)
        if valid.any():
            full = self.predict_probabilities(x)
            probs[:] = full[self._class_idx]
            probs[:, ~valid] = np.nan
        return Prediction(ALERT_CLASSES, probs)

    def predict_probabilities(self, normalized: np.ndarray) -> np.ndarray:
        """Softmax over all classes of a normalised ``(band, row, col)`` image.

        Returns:
            ``(class, row, col)`` float32 probabilities (classes of the checkpoint).
        """
        engine = self._engine
        _, h, w = normalized.shape
        tile, step = self._tile, self._tile - self._overlap
        if h <= tile and w <= tile:  # one pass, padded to the stride
            H, W = -(-h // engine.stride) * engine.stride, -(-w // engine.stride) * engine.stride
            padded = np.zeros((normalized.shape[0], H, W), dtype=np.float32)
            padded[:, :h, :w] = normalized
            return self._forward(padded[None])[0, :, :h, :w]
        # The whole-scene rule (models.blend): starts at multiples of the step, each window's
        # probabilities weighted by the sine-squared taper, neighbours summing to 1.
        rows, cols = axis_starts(h, tile, step), axis_starts(w, tile, step)
        row_w, row_total = axis_weights(rows, [tile] * len(rows), self._overlap)
        col_w, col_total = axis_weights(cols, [tile] * len(cols), self._overlap)
        H, W = len(row_total), len(col_total)
        padded = np.zeros((normalized.shape[0], H, W), dtype=np.float32)
        padded[:, :h, :w] = normalized
        n_cls = len(self._ckpt.metadata.classes)
        acc = np.zeros((n_cls, H, W), dtype=np.float32)
        origins = [(i, j) for i in range(len(rows)) for j in range(len(cols))]
        for k in range(0, len(origins), self._batch):
            batch = origins[k : k + self._batch]
            x = np.stack([padded[:, rows[i] : rows[i] + tile, cols[j] : cols[j] + tile]
                          for i, j in batch])
            out = self._forward(x)
            for (i, j), p in zip(batch, out, strict=True):
                weight = np.outer(row_w[i], col_w[j]).astype(np.float32)
                acc[:, rows[i] : rows[i] + tile, cols[j] : cols[j] + tile] += p * weight
        total = np.outer(row_total, col_total).astype(np.float32)
        return (acc / total)[:, :h, :w]

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return softmax(self._engine.run(x))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the class axis (1) of ``(N, class, row, col)`` float32 logits."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32, copy=False)


def load_shipped(model: ShippedModel) -> Checkpoint:
    """A shipped model, verified against the sha256 the registry records for it.

    With PyTorch: its ``.pt`` checkpoint; without (a CPU-only install): its ONNX export, which
    ONNX Runtime runs.

    Raises:
        CheckpointError: the file is missing or does not match its sha256.
        TorchMissingError: no PyTorch and no ONNX export of the model is shipped.
    """
    if torch_available():
        return load_checkpoint(shipped_checkpoint_path(model), expected_sha256=model.sha256)
    from models.onnx_checkpoint import load_onnx_checkpoint

    path = shipped_checkpoint_path(model, onnx=True)
    return load_onnx_checkpoint(path, file_sha256=model.onnx_sha256, expected_sha256=model.sha256)


def load_network_detector(
    checkpoint: Path | str | None = None, *, device: str = "auto", backend: str = "auto"
) -> NetworkDetector:
    """The network detector of a checkpoint file, or of the shipped model.

    Args:
        checkpoint: a ``.pt`` checkpoint; None = the shipped model in ``models/weights/``,
            verified against the sha256 the registry records for it.
        device: ``auto``, ``cpu`` or ``cuda``.
        backend: the CPU engine, ``auto``, ``torch`` or ``onnxruntime``.

    Returns:
        The detector.

    Raises:
        CheckpointError: the file is missing, corrupt, or its weights do not match their sha256.
        ModelError: bad device.
    """
    ckpt = load_shipped(DEFAULT_MODEL) if checkpoint is None else load_checkpoint(checkpoint)
    if ckpt.metadata.architecture in PATCH_CLASSIFIERS:
        raise CheckpointError(
            f"{checkpoint}: {ckpt.metadata.name} is an Amazon Mining Watch patch classifier, "
            "not a segmentation network; run it with detector kind 'amw' (or minewatch predict "
            "--checkpoint, which recognises it)"
        )
    log.info(
        "checkpoint %s: %s %s (%s), bands %s",
        ckpt.path,
        ckpt.metadata.name,
        ckpt.metadata.version,
        ckpt.metadata.architecture,
        ",".join(ckpt.metadata.bands),
    )
    return NetworkDetector(ckpt, device=device, backend=backend)
