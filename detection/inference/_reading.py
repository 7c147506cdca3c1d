"""Reading a scene: its grid, where the network's bands are and how their values become
reflectance (:mod:`tiles.radiometry`), and its windows read block by block ahead of the network.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import rasterio
import rasterio.errors
import rasterio.io
import rasterio.shutil
import rasterio.windows
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError

from detection.errors import (
    InputFormatError,
    InputNotFoundError,
    InputReadError,
)
from detection.inference._common import Device, _cat, _round_up
from models.checkpoint import band_order
from tiles.errors import SceneFormatError
from tiles.radiometry import TAG_PROCESSING_LEVEL, file_radiometry, processing_level

if TYPE_CHECKING:  # PyTorch is an extra: without it the CPU path below runs on NumPy arrays
    import torch


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
        level: the processing level the file's tag ``PROCESSING_LEVEL`` states (``L2A`` when
            absent): a network trained on surface reflectance reads L1C with its checkpoint's
            top-of-atmosphere offsets subtracted (:func:`models.checkpoint.surface_offsets`).
    """

    indexes: tuple[int, ...]
    bands: tuple[str, ...]
    dtype: np.dtype[Any]
    offset: tuple[float, ...]
    scale: tuple[float, ...]
    nodata: float | None
    level: str = "L2A"

    @property
    def is_float(self) -> bool:
        return bool(np.issubdtype(self.dtype, np.floating))


def cannot_open(path: str | Path, exc: Exception) -> InputReadError | InputNotFoundError:
    """The error of a scene rasterio cannot open: not found when it is a local file that does
    not exist, else unreadable (the message is the same)."""
    text = str(path)
    local = "://" not in text and not text.startswith("/vsi")
    cls = InputNotFoundError if local and not Path(text).exists() else InputReadError
    return cls(f"{path}: cannot open the scene ({exc})")


def scene_grid(path: str | Path) -> tuple[CRS, Affine, int, int]:
    """A scene's CRS, transform, height and width: the grid of its probability raster.

    Raises:
        DetectionError: the scene cannot be opened or has no CRS.
    """
    try:
        with rasterio.open(path) as src:
            crs, transform, height, width = src.crs, src.transform, src.height, src.width
    except rasterio.errors.RasterioIOError as exc:
        raise cannot_open(path, exc) from exc
    if crs is None:
        raise InputFormatError(f"{path}: has no CRS; expected a georeferenced (UTM) GeoTIFF")
    return crs, transform, height, width


def scene_radiometry(src: rasterio.io.DatasetReader, bands: Sequence[str]) -> SceneRadiometry:
    """Find ``bands`` in an open scene file and how its values become reflectance.

    Band names come from the band descriptions (``B02``...); how their values become
    reflectance is the rule of :func:`tiles.radiometry.file_radiometry` (float files hold
    reflectance; integer files by GDAL scale/offset, ``REFLECTANCE_SCALE``, or digital numbers
    with the offset of their tags; DESIGN.md section 3).

    Args:
        src: the open scene.
        bands: the bands the network needs, in its order.

    Returns:
        The radiometry.

    Raises:
        InputFormatError: the file has several dtypes, unnamed bands, or integer bands whose
            offset is not stated.
        BandMismatchError: a band the network needs is missing (the message names it).
    """
    where = src.name
    if len(set(src.dtypes)) != 1:
        raise InputFormatError(f"{where}: bands of several dtypes {sorted(set(src.dtypes))}")
    names = [(d or "").strip().upper() for d in src.descriptions]
    names = [f"B0{n[1]}" if len(n) == 2 and n[0] == "B" and n[1].isdigit() else n for n in names]
    if not any(names):
        raise InputFormatError(
            f"{where}: its bands have no descriptions; name them (B02, B03, ...) e.g. with "
            "rio edit-info --bidx 1 --description B02"
        )
    idx = band_order(bands, names, what=f"the network (scene {where})")
    indexes = tuple(i + 1 for i in idx)
    try:
        rule = file_radiometry(src, indexes)
        level = processing_level(src.tags().get(TAG_PROCESSING_LEVEL), where=where,
                                 key=f"tag {TAG_PROCESSING_LEVEL}")
    except SceneFormatError as exc:
        raise InputFormatError(str(exc)) from exc
    dtype = np.dtype(src.dtypes[0])
    return SceneRadiometry(indexes, tuple(bands), dtype, rule.offset, rule.scale, rule.nodata,
                           level)


#: A window to read: ``(row, col, height, width)`` in scene pixels (may reach past the edges).
WindowSpec = tuple[int, int, int, int]


def _fill_value(radiometry: SceneRadiometry) -> float:
    """What pads a window past the scene edge: the nodata value (NaN or 0 when none is set)."""
    fill = radiometry.nodata
    if fill is None or (radiometry.is_float and np.isnan(fill)):
        return np.nan if radiometry.is_float else 0
    return fill


def valid_pixels(raw: np.ndarray, radiometry: SceneRadiometry, fill: float) -> np.ndarray:
    """``(row, col)``: whether each pixel of ``(band, row, col)`` raw values is observed."""
    if radiometry.is_float:
        valid = np.isfinite(raw).all(axis=0)
        if radiometry.nodata is not None and not np.isnan(radiometry.nodata):
            valid &= (raw != radiometry.nodata).all(axis=0)
    else:
        valid = (raw != fill).all(axis=0)
    return cast(np.ndarray, valid)


def read_into(
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
        raise InputReadError(
            f"{path}: window at row {row}, col {col}: decoding failed ({exc}); the "
            "file is truncated or corrupt"
        ) from exc


class BlockReader:
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
        read_into(self._path, self._rad, out, r0, c0)
        observed = valid_pixels(out, self._rad, self._fill)
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
