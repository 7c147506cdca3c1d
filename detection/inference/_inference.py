"""Windowed inference over whole scenes: overlapping windows, blended, batched and streamed.

:func:`predict_raster` turns a scene GeoTIFF of any size into per-class probability COGs without
ever holding the scene in memory:

* the scene is cut into windows of ``window_px`` overlapping by ``overlap_px``, on a grid aligned
  to the network's stride (so a window sees the same pooling grid as the whole scene would);
* background threads read ahead as raw digital numbers (``uint16`` stays ``uint16``), in
  block-aligned chunks, every block decoded once (on CUDA copied to the GPU once), and the
  windows are cut from the chunks. The batch is converted on the device (on the CPU on a
  background thread, while the network runs the previous one): radiometry
  (``(DN + offset) * scale``, clipped at 0), normalisation and the nodata mask are a few
  tensor operations;
* each window's probabilities are weighted by the separable sine-squared taper of
  :mod:`models.blend` (the scan's detector blends the same way) and added to an accumulator
  one window-row high, which lives on the device;
* when a window row is done, the rows no later window touches are divided by the weight sum,
  quantised and handed to a writer thread (a tiled temporary GeoTIFF), and the accumulator moves
  on; a thread averages each written block into the overview levels as it goes, and at the
  end the temporary file and its levels become a COG.

Memory is bounded by the accumulator (``classes x window x scene width`` floats), the read-ahead
queue and the network's activations, whatever the scene height.

GPU: bf16 autocast, channels-last, pinned host buffers and non-blocking copies, the batch size
chosen from free GPU memory (halved on out-of-memory; at batch 1 the run falls back to the CPU),
optional ``torch.compile``. CPU: fp32, by default through ONNX Runtime (the folded network
exported once, cached), else PyTorch with batch norm folded and channels-last; see
:mod:`models.runtime`. Without PyTorch (a CPU-only install) the same CPU path runs on NumPy arrays
(the same operations in the same order: bit-identical outputs) and the shipped ONNX network.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast
from xml.etree import ElementTree

import numpy as np
import rasterio
import rasterio.errors
import rasterio.io
import rasterio.shutil
import rasterio.windows
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError

from detection.errors import DetectionError
from models.blend import axis_starts, axis_weights
from models.checkpoint import Checkpoint, band_order
from models.detector import ALERT_CLASSES
from models.errors import torch_available
from models.network import (
    NetworkDetector,
    device_name,
    load_network_detector,
    load_shipped,
    resolve_device,
    softmax,
)
from models.registry import DEFAULT_MODEL
from models.runtime import BACKENDS, Engine, build_engine, cpu_threads
from models.site_rule import PROBABILITY_STEPS, checkpoint_thresholds
from tiles.files import atomic_path
from tiles.radiometry import L2A_SCALE, boa_add_offset

if TYPE_CHECKING:  # PyTorch is an extra: without it the CPU path below runs on NumPy arrays
    import torch

#: Where a batch runs: a torch device, or ``"cpu"`` (NumPy arrays; an install without PyTorch).
Device = Any

log = logging.getLogger(__name__)

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

_TAG_BOA_ADD_OFFSET = "BOA_ADD_OFFSET"
_TAG_BASELINE = "PROCESSING_BASELINE"
_TAG_REFLECTANCE_SCALE = "REFLECTANCE_SCALE"
_MAX_BATCH = 64
#: Overviews halve the probability COG until its longer side is at most this (GDAL's rule).
_OVERVIEW_MIN_PX = 512


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
            raise DetectionError(f"inference: window_px {self.window_px}; expected >= 32")
        if not 0 <= self.overlap_px <= self.window_px // 2:
            raise DetectionError(
                f"inference: overlap_px {self.overlap_px}; expected 0..{self.window_px // 2} "
                f"(at most half of window_px {self.window_px})"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise DetectionError(f"inference: batch_size {self.batch_size}; expected >= 1")
        if self.backend not in BACKENDS:
            raise DetectionError(
                f"inference: backend {self.backend!r}; expected one of {', '.join(BACKENDS)}"
            )
        if self.read_ahead < 1 or (self.read_threads is not None and self.read_threads < 1):
            raise DetectionError(
                f"inference: read_ahead {self.read_ahead} and read_threads {self.read_threads} "
                "must be >= 1"
            )
        if self.probability_dtype not in ("uint8", "float32"):
            raise DetectionError(
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
    megapixels_per_s: float
    thresholds: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------ radiometry


@dataclass(frozen=True)
class SceneRadiometry:
    """How the bands a network needs are read from a scene file and become reflectance.

    ``reflectance = max((value + offset) * scale, 0)`` for integer bands, the value itself for
    float bands; ``nodata`` (or NaN) marks unobserved pixels.

    Attributes:
        indexes: 1-based band indexes in the file, in the network's band order.
        bands: the network's band names, in order.
        dtype: numpy dtype of the file's bands.
        offset: per band, in file units.
        scale: per band, reflectance per file unit.
        nodata: the file's nodata value (0 for integer files that state none: L2A convention).
    """

    indexes: tuple[int, ...]
    bands: tuple[str, ...]
    dtype: np.dtype[Any]
    offset: tuple[float, ...]
    scale: tuple[float, ...]
    nodata: float | None

    @property
    def is_float(self) -> bool:
        return bool(np.issubdtype(self.dtype, np.floating))


def scene_grid(path: str | Path) -> tuple[CRS, Affine, int, int]:
    """A scene's CRS, transform, height and width: the grid of its probability raster.

    Raises:
        DetectionError: the scene cannot be opened or has no CRS.
    """
    try:
        with rasterio.open(path) as src:
            crs, transform, height, width = src.crs, src.transform, src.height, src.width
    except rasterio.errors.RasterioIOError as exc:
        raise DetectionError(f"{path}: cannot open the scene ({exc})") from exc
    if crs is None:
        raise DetectionError(f"{path}: has no CRS; expected a georeferenced (UTM) GeoTIFF")
    return crs, transform, height, width


def scene_radiometry(src: rasterio.io.DatasetReader, bands: Sequence[str]) -> SceneRadiometry:
    """Find ``bands`` in an open scene file and how its values become reflectance.

    Band names come from the band descriptions (``B02``...). Integer files: the GDAL band
    scale/offset when set; else the tag ``REFLECTANCE_SCALE`` (composites written by
    ``tiles.composite``, offset already applied); else L2A digital numbers,
    ``(DN + BOA_ADD_OFFSET) * 1e-4`` with the offset from the tag ``BOA_ADD_OFFSET`` or the
    ``PROCESSING_BASELINE`` (DESIGN.md section 3). Float files hold reflectance.

    Args:
        src: the open scene.
        bands: the bands the network needs, in its order.

    Returns:
        The radiometry.

    Raises:
        DetectionError: the file has several dtypes, unnamed bands, or integer bands whose
            offset is not stated.
        BandMismatchError: a band the network needs is missing (the message names it).
    """
    where = src.name
    if len(set(src.dtypes)) != 1:
        raise DetectionError(f"{where}: bands of several dtypes {sorted(set(src.dtypes))}")
    names = [(d or "").strip().upper() for d in src.descriptions]
    names = [f"B0{n[1]}" if len(n) == 2 and n[0] == "B" and n[1].isdigit() else n for n in names]
    if not any(names):
        raise DetectionError(
            f"{where}: its bands have no descriptions; name them (B02, B03, ...) e.g. with "
            "rio edit-info --bidx 1 --description B02"
        )
    idx = band_order(bands, names, what=f"the network (scene {where})")
    indexes = tuple(i + 1 for i in idx)
    dtype = np.dtype(src.dtypes[0])
    nodata = src.nodata
    tags = src.tags()
    n = len(indexes)
    if np.issubdtype(dtype, np.floating):
        return SceneRadiometry(indexes, tuple(bands), dtype, (0.0,) * n, (1.0,) * n, nodata)
    if nodata is None:
        nodata = 0.0  # L2A convention: DN 0 is NO_DATA
    scales = [src.scales[i - 1] for i in indexes]
    offsets = [src.offsets[i - 1] for i in indexes]
    if any((s, o) != (1.0, 0.0) for s, o in zip(scales, offsets, strict=True)):
        if any(s == 0 for s in scales):
            raise DetectionError(f"{where}: a band has a GDAL scale of 0")
        return SceneRadiometry(
            indexes,
            tuple(bands),
            dtype,
            tuple(o / s for s, o in zip(scales, offsets, strict=True)),
            tuple(scales),
            nodata,
        )
    if _TAG_REFLECTANCE_SCALE in tags:
        scale = float(tags[_TAG_REFLECTANCE_SCALE])
        return SceneRadiometry(indexes, tuple(bands), dtype, (0.0,) * n, (scale,) * n, nodata)
    if _TAG_BOA_ADD_OFFSET in tags:
        offset = float(tags[_TAG_BOA_ADD_OFFSET])
    elif _TAG_BASELINE in tags:
        offset = boa_add_offset(tags[_TAG_BASELINE])
    else:
        raise DetectionError(
            f"{where}: integer (digital number) bands but neither {_TAG_BOA_ADD_OFFSET}, "
            f"{_TAG_BASELINE}, {_TAG_REFLECTANCE_SCALE} nor a GDAL scale/offset is set, so the "
            "reflectance offset is unknown (-1000 from baseline 04.00 on); add them from the L2A "
            "product metadata, e.g. PROCESSING_BASELINE=04.00 and BOA_ADD_OFFSET=-1000"
        )
    return SceneRadiometry(
        indexes, tuple(bands), dtype, (offset,) * n, (L2A_SCALE,) * n, nodata
    )


# ------------------------------------------------------------------------------ the network


def _checkpoint_of(model: NetworkDetector | Checkpoint | str | Path | None) -> Checkpoint:
    if isinstance(model, NetworkDetector):
        return model.checkpoint
    if isinstance(model, Checkpoint):
        return model
    if model is None:
        return load_shipped(DEFAULT_MODEL)
    return load_network_detector(model, device="cpu").checkpoint


# ------------------------------------------------------------------------------ the grid


def _axis_lengths(starts: list[int], size: int, window: int, stride: int) -> list[int]:
    """Window lengths: ``window``, but the last shrinks to the scene edge (stride-rounded)."""
    last = min(window, _round_up(size - starts[-1], stride))
    return [window] * (len(starts) - 1) + [last]


# ------------------------------------------------------------------------------ reading


#: A window to read: ``(row, col, height, width)`` in scene pixels (may reach past the edges).
WindowSpec = tuple[int, int, int, int]


def _fill_value(radiometry: SceneRadiometry) -> float:
    """What pads a window past the scene edge: the nodata value (NaN or 0 when none is set)."""
    fill = radiometry.nodata
    if fill is None or (radiometry.is_float and np.isnan(fill)):
        return np.nan if radiometry.is_float else 0
    return fill


def _valid_pixels(raw: np.ndarray, radiometry: SceneRadiometry, fill: float) -> np.ndarray:
    """``(row, col)``: whether each pixel of ``(band, row, col)`` raw values is observed."""
    if radiometry.is_float:
        valid = np.isfinite(raw).all(axis=0)
        if radiometry.nodata is not None and not np.isnan(radiometry.nodata):
            valid &= (raw != radiometry.nodata).all(axis=0)
    else:
        valid = (raw != fill).all(axis=0)
    return cast(np.ndarray, valid)


def _read_into(
    path: Path, radiometry: SceneRadiometry, out: np.ndarray, row: int, col: int
) -> None:
    """Read the scene's part of ``out`` (``(band, height, width)``, pre-filled) at ``row, col``.

    Each read opens the file, reads and closes it again, so GDAL's block cache holds no more
    than the reads in flight (a kept-open handle would cache up to ``GDAL_CACHEMAX`` of
    decoded blocks, most of them never read again).
    """
    try:
        with rasterio.open(path) as src:
            h = min(out.shape[1], src.height - row)
            w = min(out.shape[2], src.width - col)
            if h > 0 and w > 0:
                src.read(
                    list(radiometry.indexes),
                    window=rasterio.windows.Window(col, row, w, h),
                    out=out[:, :h, :w],
                )
    except RasterioIOError as exc:
        raise DetectionError(
            f"{path}: window at row {row}, col {col}: decoding failed ({exc}); the "
            "file is truncated or corrupt"
        ) from exc


class _BlockReader:
    """Reads the scene's blocks once, in block-aligned chunks, and cuts the windows from them.

    Windows overlap, so a reader that reads window by window decodes the blocks on window
    edges two to four times (three times the blocks of a scene at 768 px windows on 512 px
    blocks). This one reads each chunk (whole blocks, at least 512 x 512 px; the whole width of
    a striped file) once, on ``threads`` threads, as raw values (``uint16`` stays 2 bytes a
    pixel), for the windows up to ``ahead`` past the one being cut, and drops a chunk once no
    later window needs it: what it holds is the chunk rows the next window row shares with this
    one (at most the scene's width by two chunk heights) and the chunks read ahead. On CUDA a
    chunk is read into a pinned buffer and copied to the GPU without blocking (``uint16`` as
    ``int16`` bits) and the windows are cut there.
    """

    def __init__(
        self,
        path: Path,
        radiometry: SceneRadiometry,
        threads: int,
        specs: Sequence[WindowSpec],
        *,
        device: Device,
        ahead: int,
    ) -> None:
        self._path = path
        self._rad = radiometry
        self._fill = _fill_value(radiometry)
        self._specs = list(specs)
        self._device = device
        self._ahead = ahead
        with rasterio.open(path) as src:
            block_h, block_w = src.block_shapes[0]
            width = src.width
        self.chunk_h = _round_up(512, block_h)
        self.chunk_w = width if block_w >= width else _round_up(512, block_w)
        self._np_dtype = np.dtype(radiometry.dtype)
        self._numpy = isinstance(device, str)
        if not self._numpy:
            import torch

            # uint16 arithmetic is limited on CUDA: the bits travel as int16, widened there.
            cuda = device.type == "cuda"
            bits = np.dtype(np.int16) if cuda and self._np_dtype == np.uint16 else self._np_dtype
            self._dtype = torch.from_numpy(np.empty(0, bits)).dtype
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="minewatch-read")
        # chunk (row, col) -> its read; and the last window that needs each chunk
        self._chunks: dict[tuple[int, int], Future[tuple[torch.Tensor, np.ndarray]]] = {}
        self._last_use: dict[tuple[int, int], int] = {}
        for n, spec in enumerate(self._specs):
            for key in self._keys(spec):
                self._last_use[key] = n
        self._submitted = 0  # windows whose chunks are submitted

    def _keys(self, spec: WindowSpec) -> list[tuple[int, int]]:
        row, col, height, width = spec
        return [
            (k, c)
            for k in range(row // self.chunk_h, (row + height - 1) // self.chunk_h + 1)
            for c in range(col // self.chunk_w, (col + width - 1) // self.chunk_w + 1)
        ]

    def _read_chunk(self, k: int, c: int) -> tuple[Any, np.ndarray]:
        r0, c0 = k * self.chunk_h, c * self.chunk_w
        shape = (len(self._rad.indexes), self.chunk_h, self.chunk_w)
        host: Any
        if self._numpy:
            host = out = np.empty(shape, dtype=self._np_dtype)
        else:
            import torch

            cuda = self._device.type == "cuda"
            host = torch.empty(shape, dtype=self._dtype, pin_memory=cuda)
            out = host.numpy().view(self._np_dtype)
        out.fill(self._fill)
        _read_into(self._path, self._rad, out, r0, c0)
        observed = _valid_pixels(out, self._rad, self._fill)
        if self._numpy:
            return host, observed
        return host.to(self._device, non_blocking=True), observed

    def windows(self) -> Iterator[tuple[Any, bool]]:
        """Each window's raw values on the device, in order, and whether any is observed."""
        ch, cw = self.chunk_h, self.chunk_w
        for n, (row, col, height, width) in enumerate(self._specs):
            while self._submitted < min(n + 1 + self._ahead, len(self._specs)):
                for key in self._keys(self._specs[self._submitted]):
                    if key not in self._chunks:
                        self._chunks[key] = self._pool.submit(self._read_chunk, *key)
                self._submitted += 1
            bands, valid = [], False
            for k in range(row // ch, (row + height - 1) // ch + 1):
                a, b = max(row, k * ch) - k * ch, min(row + height, (k + 1) * ch) - k * ch
                parts = []
                for c in range(col // cw, (col + width - 1) // cw + 1):
                    x0, x1 = max(col, c * cw) - c * cw, min(col + width, (c + 1) * cw) - c * cw
                    chunk, observed = self._chunks[k, c].result()
                    parts.append(chunk[:, a:b, x0:x1])
                    valid = valid or bool(observed[a:b, x0:x1].any())
                bands.append(parts[0] if len(parts) == 1 else _cat(parts, 2))
            for key in self._keys((row, col, height, width)):
                if self._last_use[key] == n:
                    del self._chunks[key]
            yield (bands[0] if len(bands) == 1 else _cat(bands, 1)), valid

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._chunks.clear()


# ------------------------------------------------------------------------------ the device


class _Runner:
    """Converts raw batches on the device, runs the network, returns alert-class probabilities."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        radiometry: SceneRadiometry,
        device: Device,
        options: InferenceOptions,
        engine_for: Callable[[Device], Engine],
    ) -> None:
        self.checkpoint = checkpoint
        self.options = options
        self.radiometry = radiometry
        self._engine_for = engine_for
        meta = checkpoint.metadata
        self.class_idx = [meta.classes.index(c) for c in ALERT_CLASSES]
        self.model_seconds = 0.0
        self._set_device(device)

    def _set_device(self, device: Device) -> None:
        self.device = device
        self.engine: Engine = self._engine_for(device)
        self.stride = self.engine.stride
        rad, norm = self.radiometry, self.checkpoint.metadata.normalization
        shape = (1, len(rad.bands), 1, 1)

        def const(values: Sequence[float]) -> Any:
            if isinstance(device, str):
                return np.asarray(values, dtype=np.float32).reshape(shape)
            import torch

            return torch.tensor(values, dtype=torch.float32, device=device).reshape(shape)

        self._offset, self._scale = const(rad.offset), const(rad.scale)
        self._mean, self._std = const(norm.mean), const(norm.std)

    @property
    def cuda(self) -> bool:
        return not isinstance(self.device, str) and self.device.type == "cuda"

    def fall_back_to_cpu(self) -> None:
        import torch

        log.warning("CUDA is out of memory even at batch size 1; continuing on the CPU")
        self._set_device(torch.device("cpu"))

    def to_device(self, raw: torch.Tensor) -> torch.Tensor:
        """Move a raw ``(N, band, row, col)`` batch to the device (a no-op where it is)."""
        import torch

        if raw.device == self.device:
            return raw
        if raw.dtype == torch.uint16 and self.cuda:
            # uint16 arithmetic is limited on CUDA: ship the bits as int16, widen there.
            raw = raw.view(torch.int16)
        return raw.to(self.device)

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        """Alert-class probabilities ``(N, class, row, col)`` of a raw batch, NaN where unobserved.

        ``raw`` is on the device already (see :meth:`to_device`).
        """
        return self.infer(*self.prepare(raw))

    def prepare(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's input of a raw batch, and which pixels are observed.

        Radiometry (``(DN + offset) * scale`` clipped at 0, or float reflectance), the
        checkpoint's normalisation, unobserved pixels set to 0. On the CPU this runs on a
        background thread while the network computes the previous batch.
        """
        if isinstance(raw, np.ndarray):
            return self._prepare_numpy(raw)
        import torch

        rad = self.radiometry
        if raw.dtype == torch.int16 and np.dtype(rad.dtype) == np.uint16:
            x = raw.to(torch.int32).bitwise_and_(0xFFFF).float()
        else:  # a copy: the operations below work in place
            x = raw.to(torch.float32, copy=True)
        if rad.is_float:
            valid = torch.isfinite(x).all(dim=1)
            if rad.nodata is not None and not math.isnan(rad.nodata):
                valid &= (x != rad.nodata).all(dim=1)
            x = torch.nan_to_num_(x, nan=0.0, posinf=0.0, neginf=0.0)
        else:
            valid = (x != float(rad.nodata or 0)).all(dim=1)
            x = x.add_(self._offset).mul_(self._scale).clamp_(min=0.0)
        x = x.sub_(self._mean).div_(self._std).mul_(valid.unsqueeze(1))
        n_flags = len(self.checkpoint.metadata.optional_bands)
        if n_flags:  # every band is read from the scene: each optional band is available
            x = torch.cat([x, x.new_ones((x.shape[0], n_flags, *x.shape[2:]))], dim=1)
        return x, valid

    def _prepare_numpy(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`prepare` on NumPy arrays (the same operations, in the same order)."""
        rad = self.radiometry
        x = raw.astype(np.float32)  # a copy: the operations below work in place
        valid: Any
        if rad.is_float:
            valid = np.isfinite(x).all(axis=1)
            if rad.nodata is not None and not math.isnan(rad.nodata):
                valid &= (x != rad.nodata).all(axis=1)
            np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        else:
            valid = (x != float(rad.nodata or 0)).all(axis=1)
            x += self._offset
            x *= self._scale
            np.maximum(x, 0.0, out=x)
        x -= self._mean
        x /= self._std
        x *= valid[:, None]
        n_flags = len(self.checkpoint.metadata.optional_bands)
        if n_flags:  # every band is read from the scene: each optional band is available
            flags = np.ones((x.shape[0], n_flags, *x.shape[2:]), dtype=np.float32)
            x = np.concatenate([x, flags], axis=1)
        return x, valid

    def infer(self, x: Any, valid: Any) -> Any:
        """Alert-class probabilities of a prepared batch (:meth:`prepare`)."""
        if isinstance(x, np.ndarray):
            t0 = time.perf_counter()
            out = softmax(self.engine.run(x))[:, self.class_idx]
            self.model_seconds += time.perf_counter() - t0
            return np.where(valid[:, None], out, np.float32(np.nan))
        import torch

        t0 = time.perf_counter()
        logits = self.engine(x)
        probs = torch.softmax(logits, dim=1)[:, self.class_idx]
        if self.cuda:
            torch.cuda.synchronize(self.device)
        self.model_seconds += time.perf_counter() - t0
        return probs.masked_fill_(~valid.unsqueeze(1), float("nan"))


def _auto_batch_size(runner: _Runner, bands: int, height: int, width: int) -> int:
    """Windows per batch that fit in 60 % of the free GPU memory (1 on the CPU)."""
    if not runner.cuda:
        return 1
    import torch

    device = runner.device
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    probe = torch.zeros((1, bands, height, width), dtype=torch.int16, device=device)
    with torch.inference_mode():
        runner(probe)
    per_window = max(torch.cuda.max_memory_allocated(device) - before, 1)
    free, _total = torch.cuda.mem_get_info(device)
    # CUDA kernels index with 32-bit integers: a full-resolution activation of the batch (up to
    # 64 channels in the registry's networks) must stay under 2**31 elements.
    int_limit = (2**31 - 1) // (64 * height * width)
    batch = int(max(1, min(_MAX_BATCH, int_limit, 0.6 * free // per_window)))
    log.info(
        "batch size %d from %.1f GiB free GPU memory (%.2f GiB per %dx%d window)",
        batch,
        free / 2**30,
        per_window / 2**30,
        height,
        width,
    )
    return batch


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc)


# ------------------------------------------------------------------------------ writing


class _InOrder:
    """Runs calls in order on one background thread; at most two wait, so memory stays bounded
    when the consumer (a slow disk, say) falls behind."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._pending: list[Future[None]] = []

    def submit(self, fn: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        while len(self._pending) >= 2:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(fn, *args, **kwargs))

    def close(self) -> None:
        try:
            for f in self._pending:
                f.result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


class _Writer:
    """Writes finished row blocks to a tiled temporary GeoTIFF on a background thread."""

    def __init__(self, path: Path, profile: dict[str, Any]) -> None:
        self._dst = rasterio.open(path, "w", **profile)
        self._queue = _InOrder("minewatch-write")

    def write(self, block: np.ndarray, row: int) -> None:
        window = rasterio.windows.Window(0, row, block.shape[2], block.shape[1])
        self._queue.submit(self._dst.write, block, window=window)

    def close(self) -> None:
        try:
            self._queue.close()
        finally:
            self._dst.close()


class _Outputs:
    """Where the finished rows go: the temporary GeoTIFF, its overviews, and ``on_rows``."""

    def __init__(self, tmp: Path, profile: dict[str, Any], on_rows: RowsFn | None) -> None:
        self._on_rows = on_rows
        with contextlib.ExitStack() as opened:  # closes what was opened if one fails to open
            self.writer = _Writer(tmp, profile)
            opened.callback(self.writer.close)
            self.pyramid = _Pyramid(tmp, profile)
            opened.callback(self.pyramid.close)
            self._rows = _InOrder("minewatch-rows") if on_rows is not None else None
            if self._rows is not None:
                opened.callback(self._rows.close)
            self._closing = opened.pop_all()

    def put(self, block: np.ndarray, row: int, *, last: bool) -> None:
        self.writer.write(block, row)
        self.pyramid.add(block, last=last)
        if self._rows is not None and self._on_rows is not None:
            self._rows.submit(self._on_rows, block, row)

    def close(self) -> None:
        """Waits for all of them; each is closed even if another fails."""
        self._closing.close()


# ------------------------------------------------------------------------------ the predictor


def predict_raster(
    src_path: str | Path,
    model: NetworkDetector | Checkpoint | str | Path | None = None,
    *,
    out_path: str | Path,
    options: InferenceOptions | None = None,
    progress: ProgressFn | None = None,
    on_rows: RowsFn | None = None,
) -> RasterPrediction:
    """Predict per-class probabilities over a whole scene, window by window, into a COG.

    One scene; for several, :class:`ScenePredictor` builds the network's engine once.

    Args:
        src_path: a scene GeoTIFF whose band descriptions name the bands (``B02``...): L2A
            digital numbers (``uint16`` with ``BOA_ADD_OFFSET``/``PROCESSING_BASELINE`` tags or
            a GDAL scale/offset), scaled composites (tag ``REFLECTANCE_SCALE``) or float
            reflectance. Bands may be in any order; extra bands are ignored.
        model: a network detector, a checkpoint, a checkpoint file, or None for the shipped
            model.
        out_path: the probability COG to write (atomically): one band per alert class
            (``mining``, ``deforestation``), named in the band descriptions.
        options: windows, batching and device (defaults: :class:`InferenceOptions`).
        progress: called as ``progress("windows", done, total)``.
        on_rows: called with each finished row block ``(class, row, col)`` as written and its
            first row, in order, on a background thread (:data:`RowsFn`).

    Returns:
        What was written and how fast.

    Raises:
        DetectionError: the scene cannot be read, a window fails to decode, the scene's
            radiometry is not stated, or the output cannot be written.
        BandMismatchError: the scene lacks a band the network needs.
        ModelError: bad device (``cuda`` without CUDA).
        CheckpointError: the checkpoint is missing or corrupt.
    """
    return ScenePredictor(model, options).predict(
        src_path, out_path=out_path, progress=progress, on_rows=on_rows
    )


class ScenePredictor:
    """Predicts scene after scene with one network: its engine is built once per device.

    Building an engine loads the network on the device, checks an ONNX Runtime session against
    PyTorch, or compiles it (``compile``: about 17 s per window shape on an H100); a batch of
    tiles pays that once. The batch size chosen from free GPU memory is kept per window shape.

    Args:
        model: as for :func:`predict_raster`.
        options: as for :func:`predict_raster`.

    Raises:
        ModelError: bad device (``cuda`` without CUDA).
        CheckpointError: the checkpoint is missing or corrupt.
    """

    def __init__(
        self,
        model: NetworkDetector | Checkpoint | str | Path | None = None,
        options: InferenceOptions | None = None,
    ) -> None:
        self.options = options or InferenceOptions()
        self.checkpoint = _checkpoint_of(model)
        # Without PyTorch the CPU path runs on NumPy arrays and ONNX Runtime (device "cpu").
        self.device: Device = (
            resolve_device(self.options.device)
            if torch_available()
            else device_name(self.options.device)
        )
        self._engines: dict[str, Engine] = {}
        self._batch_sizes: dict[tuple[str, int, int, int], int] = {}

    def engine(self, device: Device) -> Engine:
        """The engine on ``device``, built on first use."""
        key = str(device)
        if key not in self._engines:
            self._engines[key] = build_engine(
                self.checkpoint,
                device,
                backend=self.options.backend if key == "cpu" else "torch",
                compile_model=self.options.compile,
                num_threads=self.options.num_threads,
            )
        return self._engines[key]

    def predict(
        self,
        src_path: str | Path,
        *,
        out_path: str | Path,
        progress: ProgressFn | None = None,
        on_rows: RowsFn | None = None,
    ) -> RasterPrediction:
        """One scene into its probability COG: see :func:`predict_raster`.

        ``on_rows`` gets each finished row block as it is written (e.g.
        :class:`detection.sites.SiteStream`'s ``add``, so the sites are traced while the
        network runs); an error it raises stops the prediction.
        """
        return self._predict(Path(src_path), Path(out_path), progress, on_rows)

    def _predict(
        self,
        src_path: Path,
        out_path: Path,
        progress: ProgressFn | None,
        on_rows: RowsFn | None,
    ) -> RasterPrediction:
        opts = self.options
        started = time.perf_counter()
        checkpoint = self.checkpoint
        device = self.device
        crs, transform, height, width = scene_grid(src_path)
        try:
            with rasterio.open(src_path) as src:
                radiometry = scene_radiometry(src, checkpoint.metadata.bands)
        except rasterio.errors.RasterioIOError as exc:
            raise DetectionError(f"{src_path}: cannot open the scene ({exc})") from exc

        runner = _Runner(checkpoint, radiometry, device, opts, self.engine)
        stride = runner.stride
        win = _round_up(opts.window_px, stride)
        win_h = min(win, _round_up(height, stride))
        win_w = min(win, _round_up(width, stride))
        step = max(stride, ((win - opts.overlap_px) // stride) * stride)
        overlap = win - step
        rows = axis_starts(height, win_h, step)
        cols = axis_starts(width, win_w, step)
        # The last window of each axis shrinks to the scene edge: no network time on padding.
        row_len = _axis_lengths(rows, height, win_h, stride)
        col_len = _axis_lengths(cols, width, win_w, stride)
        row_w, row_total = axis_weights(rows, row_len, overlap)
        col_w, col_total = axis_weights(cols, col_len, overlap)
        pad_w = cols[-1] + col_len[-1]
        n_cls = len(ALERT_CLASSES)
        batch = opts.batch_size or self._batch_size(runner, len(radiometry.bands), win_h, win_w)
        origins = [(i, j) for i in range(len(rows)) for j in range(len(cols))]
        log.info(
            "%s: %d x %d px, %d window(s) of %d x %d px (overlap %d px, step %d), batch %d, on %s",
            src_path.name,
            width,
            height,
            len(origins),
            win_h,
            win_w,
            overlap,
            step,
            batch,
            runner.device,
        )

        dtype = opts.probability_dtype
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": n_cls,
            "dtype": dtype,
            "crs": crs,
            "transform": transform,
            "nodata": UINT8_NODATA if dtype == "uint8" else float("nan"),
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "BIGTIFF": "IF_SAFER",
        }
        thresholds = checkpoint_thresholds(checkpoint)
        windows_done = 0
        weights: dict[tuple[Any, ...], Any] = {}  # by (border sides, device)
        with atomic_path(out_path) as final, _temporary_beside(out_path) as tmp:
            specs = [(rows[i], cols[j], row_len[i], col_len[j]) for i, j in origins]
            reader = _BlockReader(
                src_path, radiometry, opts.read_threads or (cpu_threads() if runner.cuda else 2),
                specs, device=runner.device, ahead=batch * opts.read_ahead,
            )
            outputs = _Outputs(tmp, profile, on_rows)
            acc = _Accumulator(n_cls, win_h, pad_w, runner.device)
            try:
                work = _batches(reader.windows(), origins, batch)
                if not runner.cuda:  # the CPU converts the next batch while the network runs
                    work = _prefetch(
                        (items, [(ks, runner.prepare(raw)) for ks, raw in groups])
                        for items, groups in work
                    )
                current_row = 0
                done = 0
                with contextlib.closing(work):
                    for items, groups in work:
                        probs: dict[int, Any] = {}
                        for ks, data in groups:
                            if runner.cuda:
                                out, batch = _run_batch(runner, data, batch, opts.compile)
                            else:
                                out = list(runner.infer(*data))
                            probs.update(zip(ks, out, strict=True))
                            windows_done += len(ks)
                        done += len(items)
                        for k, (i, j) in enumerate(items):
                            while i > current_row:
                                _flush(acc, outputs, current_row, rows, step, win_h,
                                       height, width, row_total, col_total, dtype, last=False)
                                current_row += 1
                            kind = (i > 0, i < len(rows) - 1, j > 0, j < len(cols) - 1,
                                    str(acc.device))
                            weight = weights.get(kind)
                            if weight is None:
                                weight = weights[kind] = _weight_2d(row_w[i], col_w[j], acc.device)
                            acc.add(probs.get(k), weight, cols[j])
                        if progress is not None:
                            progress("windows", done, len(origins))
                _flush(acc, outputs, current_row, rows, step, win_h, height, width,
                       row_total, col_total, dtype, last=True)
            finally:
                with contextlib.ExitStack() as closing:  # each is closed even if one fails
                    closing.callback(outputs.close)
                    closing.callback(reader.close)
            _write_cog(tmp, final, checkpoint, thresholds, outputs.pyramid.paths)
        seconds = time.perf_counter() - started
        mpx = width * height / 1e6
        log.info(
            "%s: %.1f Mpx in %.1f s (%.2f Mpx/s, network %.1f s) -> %s",
            src_path.name,
            mpx,
            seconds,
            mpx / seconds,
            runner.model_seconds,
            out_path,
        )
        return RasterPrediction(
            path=out_path,
            classes=ALERT_CLASSES,
            crs=crs,
            transform=transform,
            width=width,
            height=height,
            device=str(runner.device),
            backend=runner.engine.backend,
            window_px=max(win_h, win_w),
            overlap_px=overlap,
            batch_size=batch,
            windows=windows_done,
            seconds=seconds,
            model_seconds=runner.model_seconds,
            megapixels_per_s=mpx / seconds,
            thresholds=thresholds,
        )

    def _batch_size(self, runner: _Runner, bands: int, height: int, width: int) -> int:
        key = (str(runner.device), bands, height, width)
        if key not in self._batch_sizes:
            self._batch_sizes[key] = _auto_batch_size(runner, bands, height, width)
        return self._batch_sizes[key]


def read_probabilities(
    path: str | Path, *, window: rasterio.windows.Window | None = None
) -> np.ndarray:
    """Read a probability COG of :func:`predict_raster` as float32 ``(class, row, col)``.

    ``uint8`` files are unscaled (``value / 254``); unobserved pixels are NaN.

    Raises:
        DetectionError: the file cannot be read.
    """
    try:
        with rasterio.open(path) as src:
            data = src.read(window=window)
            nodata = src.nodata
    except rasterio.errors.RasterioIOError as exc:
        raise DetectionError(f"{path}: cannot read probabilities ({exc})") from exc
    if data.dtype == np.uint8:
        out = data.astype(np.float32) / np.float32(UINT8_SCALE)
        out[data == (UINT8_NODATA if nodata is None else int(nodata))] = np.nan
        return out
    return data.astype(np.float32, copy=False)


# ------------------------------------------------------------------------------ helpers


class _Accumulator:
    """Weighted probability sums of one window row, full (padded) width, on the device."""

    def __init__(self, classes: int, height: int, width: int, device: Device) -> None:
        self.device = device
        self.data: Any
        if isinstance(device, str):
            self.data = np.zeros((classes, height, width), dtype=np.float32)
        else:
            import torch

            self.data = torch.zeros((classes, height, width), dtype=torch.float32, device=device)

    def add(self, probs: Any, weight: Any, col: int) -> None:
        h, w = weight.shape
        region = self.data[:, :h, col : col + w]
        if probs is None:  # nothing observed in this window
            region[...] = np.nan
            return
        if isinstance(region, np.ndarray):
            region += probs * weight
            return
        if probs.device != self.device:
            probs = probs.to(self.device)
        region.add_(probs * weight)

    def shift_up(self, step: int, keep: int) -> None:
        """Move rows ``step .. step + keep`` to the top (the next window row's), zero the rest."""
        rows = self.data[:, step : step + keep]
        self.data[:, :keep] = rows.copy() if isinstance(rows, np.ndarray) else rows.clone()
        self.data[:, keep:] = 0.0


def _quantize(block: Any, dtype: str) -> np.ndarray:
    """Probabilities (NaN: unobserved) as written: ``uint8`` in place, or a ``float32`` copy."""
    if isinstance(block, np.ndarray):
        if dtype != "uint8":
            return block.copy()
        block *= UINT8_SCALE
        np.round(block, out=block)
        np.clip(block, 0, UINT8_SCALE, out=block)
        np.nan_to_num(block, copy=False, nan=float(UINT8_NODATA))
        return block.astype(np.uint8)
    import torch

    if dtype == "uint8":
        block.mul_(UINT8_SCALE).round_().clamp_(0, UINT8_SCALE)
        return block.nan_to_num_(nan=float(UINT8_NODATA)).to(torch.uint8).cpu().numpy()
    # a copy: the writer thread reads it while the accumulator moves on
    return block.to("cpu", copy=True).numpy()


class _Pyramid:
    """The probability COG's overviews, averaged from the rows as they are written.

    GDAL's COG driver would compute them after the run, from the whole file (1.6 s of its 2.4 s
    for a tile on 2 cores); here a thread halves each written block level by level while the
    network runs, and writes each level to its own temporary GeoTIFF. Levels halve (rounding
    up) until the longer side is at most 512 px, as GDAL's do. A level pixel is the mean of the
    written values of the observed pixels it covers, rounded (GDAL's ``AVERAGE``); sums and
    counts are halved rather than means, so every level is exact.
    """

    def __init__(self, tmp: Path, profile: dict[str, Any]) -> None:
        self.paths: list[Path] = []
        self._float = np.dtype(profile["dtype"]).kind == "f"
        self._nodata = profile["nodata"]
        self._levels: list[rasterio.io.DatasetWriter] = []
        self._rows: list[int] = []
        self._carry: list[tuple[np.ndarray, np.ndarray] | None] = []
        self._queue = _InOrder("minewatch-overviews")
        height, width, factor = int(profile["height"]), int(profile["width"]), 1
        while max(height, width) > _OVERVIEW_MIN_PX:
            height, width, factor = -(-height // 2), -(-width // 2), factor * 2
            path = tmp.with_name(f"{tmp.name}.ovr{factor}.tif")
            level = profile | {
                "height": height,
                "width": width,
                "transform": profile["transform"] * Affine.scale(factor),
            }
            self._levels.append(rasterio.open(path, "w", **level))
            self.paths.append(path)
            self._rows.append(0)
            self._carry.append(None)

    def add(self, block: np.ndarray, *, last: bool) -> None:
        """The next rows ``(class, row, col)`` of the full resolution, as written."""
        if not self._levels:
            return
        self._queue.submit(self._add, block, last)

    def _add(self, block: np.ndarray, last: bool) -> None:
        valid = ~np.isnan(block) if self._float else block != self._nodata
        sums, counts = (block if valid.all() else np.where(valid, block, 0)), valid
        for k, dst in enumerate(self._levels):
            sums, counts = self._halve(k, sums, counts, last)
            rows = sums.shape[1]
            if rows == 0 and not last:
                return
            if rows:
                window = rasterio.windows.Window(0, self._rows[k], sums.shape[2], rows)
                dst.write(self._mean(sums, counts), window=window)
                self._rows[k] += rows

    def _mean(self, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        seen = counts > 0
        if self._float:
            return np.where(seen, sums / np.maximum(counts, 1), np.nan).astype(np.float32)
        mean = (sums + counts // 2) // np.maximum(counts, 1)
        return np.where(seen, mean, self._nodata).astype(np.uint8)

    def _halve(
        self, k: int, sums: np.ndarray, counts: np.ndarray, last: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Level ``k``'s sums and counts of the rows that are complete (an odd row waits)."""
        carry = self._carry[k]
        if carry is not None:
            sums = np.concatenate([carry[0], sums], 1)
            counts = np.concatenate([carry[1], counts], 1)
            self._carry[k] = None
        if sums.shape[1] % 2 and not last:
            self._carry[k] = (sums[:, -1:].copy(), counts[:, -1:].copy())
            sums, counts = sums[:, :-1], counts[:, :-1]
        return _pair_sum(sums), _pair_sum(counts)

    def close(self) -> None:
        try:
            self._queue.close()
        finally:
            for dst in self._levels:
                dst.close()


def _pair_sum(a: np.ndarray) -> np.ndarray:
    """Sums of 2 x 2 pixels of ``(class, row, col)``; an odd last row or column sums alone.

    Bytes and booleans sum in ``uint16`` (at most 4 x 255), integers in ``int32`` (exact for
    eleven levels of ``uint8``), floats in ``float64``.
    """
    if a.dtype.kind == "f":
        wide: type[np.generic] = np.float64
    else:
        wide = np.uint16 if a.dtype.itemsize == 1 else np.int32
    rows = a[:, 0::2].astype(wide)
    rows[:, : a.shape[1] // 2] += a[:, 1::2]
    out = rows[:, :, 0::2].copy()
    out[:, :, : a.shape[2] // 2] += rows[:, :, 1::2]
    return out


def _flush(
    acc: _Accumulator,
    outputs: _Outputs,
    row_index: int,
    rows: list[int],
    step: int,
    win_h: int,
    height: int,
    width: int,
    row_total: np.ndarray,
    col_total: np.ndarray,
    dtype: str,
    *,
    last: bool,
) -> None:
    """Write the rows of window row ``row_index`` no later window touches; shift the rest up."""
    r0 = rows[row_index]
    n = win_h if last else step
    n = min(n, height - r0)
    if n <= 0:
        return
    # The weight sums are separable: a column of row sums times a row of column sums.
    rt = _on(acc.device, row_total[r0 : r0 + n].astype(np.float32))
    ct = _on(acc.device, col_total[:width].astype(np.float32))
    # In place: these rows are written now and no later window adds to them.
    block = acc.data[:, :n, :width]
    block /= rt[:, None] * ct[None, :]
    out = _quantize(block, dtype)
    outputs.put(out, r0, last=last)
    if not last:
        acc.shift_up(step, win_h - step)


#: A batch of windows: their ``(i, j)`` and ``(positions, stacked values)`` per shape.
_Batch = tuple[list[tuple[int, int]], list[tuple[list[int], Any]]]


def _batches(
    stream: Iterator[tuple[Any, bool]], origins: list[tuple[int, int]], batch: int
) -> Generator[_Batch, None, None]:
    """Batches of windows: each window's ``(i, j)``, and the observed ones stacked by shape.

    Windows without an observed pixel skip the network; edge windows are smaller, so a batch
    holds one stack per shape: ``(positions in the batch, stacked raw values)``.
    """
    for start in range(0, len(origins), batch):
        items = origins[start : start + batch]
        groups: dict[tuple[int, ...], list[tuple[int, Any]]] = {}
        for k in range(len(items)):
            raw, observed = next(stream)
            if observed:
                groups.setdefault(tuple(raw.shape), []).append((k, raw))
        yield items, [([k for k, _ in g], _stack([r for _, r in g])) for g in groups.values()]


def _prefetch(items: Iterator[_Batch]) -> Generator[_Batch, None, None]:
    """``items``, each computed on a background thread while the caller uses the previous one."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="minewatch-prepare")
    try:
        pending = pool.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, items, None)
            yield item
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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


def _weight_2d(rw: np.ndarray, cw: np.ndarray, device: Device) -> Any:
    return _on(device, np.outer(rw, cw).astype(np.float32))


def _run_batch(
    runner: _Runner, raw: torch.Tensor, batch: int, compiled: bool
) -> tuple[list[torch.Tensor], int]:
    """Run the network on ``raw`` in chunks of ``batch``; halve the batch on CUDA OOM."""
    import torch

    outs: list[torch.Tensor] = []
    start = 0
    while start < raw.shape[0]:
        chunk = raw[start : start + batch]
        n = chunk.shape[0]
        if compiled and n < batch:  # keep one shape for torch.compile
            pad = torch.zeros((batch - n, *chunk.shape[1:]), dtype=chunk.dtype)
            chunk = torch.cat([chunk, pad])
        try:
            with torch.inference_mode():
                probs = runner(runner.to_device(chunk))[:n]
        except (RuntimeError, torch.OutOfMemoryError) as exc:
            if not (runner.cuda and _is_oom(exc)):
                raise
            torch.cuda.empty_cache()
            if batch > 1:
                batch = max(1, batch // 2)
                log.warning("CUDA out of memory; batch size halved to %d", batch)
            else:
                runner.fall_back_to_cpu()
            continue
        outs.extend(probs.unbind(0))
        start += n
    return outs, batch


def _write_cog(
    tmp: Path,
    final: Path,
    checkpoint: Checkpoint,
    thresholds: dict[str, float],
    overviews: Sequence[Path] = (),
) -> None:
    """``tmp`` (and its ``overviews``, finest first) into the COG ``final``, with its metadata.

    With overviews the COG driver reads a VRT of ``tmp`` that names them, and copies them
    instead of computing its own.
    """
    meta = checkpoint.metadata
    try:
        with rasterio.open(tmp, "r+") as dst:
            for i, name in enumerate(ALERT_CLASSES, start=1):
                dst.set_band_description(i, name)
                if dst.dtypes[0] == "uint8":
                    dst.update_tags(i, PROBABILITY_SCALE=f"{1 / UINT8_SCALE:.10f}")
            if dst.dtypes[0] == "uint8":
                dst.scales = (1 / UINT8_SCALE,) * len(ALERT_CLASSES)
            dst.update_tags(
                MODEL_NAME=meta.name,
                MODEL_VERSION=meta.version,
                MODEL_SHA256=meta.sha256,
                CLASSES=",".join(ALERT_CLASSES),
                **({TAG_THRESHOLDS: json.dumps(thresholds)} if thresholds else {}),
            )
        source = _with_overviews(tmp, overviews) if overviews else tmp
        with rasterio.open(source) as src:
            rasterio.shutil.copy(
                src,
                final,
                driver="COG",
                COMPRESS="DEFLATE",
                # Level 3, not GDAL's 6: 2.2x faster on a whole tile for 17 % more bytes. No
                # predictor: on probabilities it made a tile's COG 14 % bigger and slower.
                LEVEL="3",
                BLOCKSIZE="512",
                OVERVIEW_RESAMPLING="AVERAGE",
                BIGTIFF="IF_SAFER",
                NUM_THREADS="ALL_CPUS",
            )
    except (rasterio.errors.RasterioError, OSError) as exc:
        raise DetectionError(f"{final}: cannot write the probability COG ({exc})") from exc


def _with_overviews(tmp: Path, overviews: Sequence[Path]) -> Path:
    """A VRT of ``tmp`` whose bands have ``overviews`` (GDAL's explicit VRT overviews)."""
    vrt = tmp.with_name(tmp.name + ".vrt")
    rasterio.shutil.copy(tmp, vrt, driver="VRT")
    tree = ElementTree.parse(vrt)
    for band in tree.getroot().iter("VRTRasterBand"):
        for path in overviews:
            overview = ElementTree.SubElement(band, "Overview")
            source = ElementTree.SubElement(overview, "SourceFilename", relativeToVRT="0")
            source.text = str(path.resolve())
            ElementTree.SubElement(overview, "SourceBand").text = band.get("band", "1")
    tree.write(vrt)
    return vrt


@contextlib.contextmanager
def _temporary_beside(target: Path) -> Iterator[Path]:
    tmp = target.parent / f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial.tif"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    finally:
        for leftover in tmp.parent.glob(tmp.name + "*"):
            leftover.unlink(missing_ok=True)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
