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
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
import rasterio.io
import rasterio.shutil
import rasterio.windows

from detection.inference._cog import _Outputs, _quantize, _temporary_beside, _write_cog
from detection.inference._common import (
    UINT8_NODATA,
    Device,
    InferenceOptions,
    ProgressFn,
    RasterPrediction,
    RowsFn,
    _axis_lengths,
    _on,
    _round_up,
)
from detection.inference._device import (
    _Accumulator,
    _auto_batch_size,
    _batches,
    _prefetch,
    _run_batch,
    _Runner,
    _weight_2d,
)
from detection.inference._reading import BlockReader, cannot_open, scene_grid, scene_radiometry
from models.blend import axis_starts, axis_weights
from models.checkpoint import Checkpoint
from models.detector import ALERT_CLASSES
from models.errors import torch_available
from models.network import (
    NetworkDetector,
    device_name,
    load_network_detector,
    load_shipped,
    resolve_device,
)
from models.registry import DEFAULT_MODEL
from models.runtime import Engine, build_engine, cpu_threads
from models.site_rule import checkpoint_thresholds
from tiles.files import atomic_path

log = logging.getLogger(__name__)


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
            raise cannot_open(src_path, exc) from exc

        runner = _Runner(checkpoint, radiometry, device, opts, self.engine)
        grid = _WindowGrid.of(height, width, opts, runner.stride)
        win_h, win_w, step, overlap = grid.win_h, grid.win_w, grid.step, grid.overlap
        rows, cols, row_len, col_len = grid.rows, grid.cols, grid.row_len, grid.col_len
        row_w, row_total = axis_weights(rows, row_len, overlap)
        col_w, col_total = axis_weights(cols, col_len, overlap)
        pad_w = cols[-1] + col_len[-1]
        n_cls = len(ALERT_CLASSES)
        batch = opts.batch_size or self._batch_size(runner, len(radiometry.bands), win_h, win_w)
        origins = [(i, j) for i in range(len(rows)) for j in range(len(cols))]
        log.info(
            "%s: %d x %d px, %d window(s) of %d x %d px (overlap %d px, step %d), batch %d, on %s",
            src_path.name, width, height, len(origins), win_h, win_w, overlap, step, batch,
            runner.device,
        )

        dtype = opts.probability_dtype
        profile = _tiled_profile(crs, transform, height, width, dtype)
        thresholds, windows_done = checkpoint_thresholds(checkpoint), 0
        weights: dict[tuple[Any, ...], Any] = {}  # by (border sides, device)
        with atomic_path(out_path) as final, _temporary_beside(out_path) as tmp:
            specs = [(rows[i], cols[j], row_len[i], col_len[j]) for i, j in origins]
            reader = BlockReader(
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
                current_row = done = 0
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
            cog_started = time.perf_counter()
            _write_cog(tmp, final, checkpoint, thresholds, outputs.pyramid.paths)
        cog_seconds = time.perf_counter() - cog_started
        seconds = time.perf_counter() - started
        mpx = width * height / 1e6
        log.info(
            "%s: %.1f Mpx in %.1f s (%.2f Mpx/s, network %.1f s) -> %s",
            src_path.name, mpx, seconds, mpx / seconds, runner.model_seconds, out_path,
        )
        return RasterPrediction(
            path=out_path, classes=ALERT_CLASSES, crs=crs, transform=transform, width=width,
            height=height, device=str(runner.device), backend=runner.engine.backend,
            window_px=max(win_h, win_w), overlap_px=overlap, batch_size=batch,
            windows=windows_done, seconds=seconds, model_seconds=runner.model_seconds,
            cog_seconds=cog_seconds, megapixels_per_s=mpx / seconds, thresholds=thresholds,
        )

    def _batch_size(self, runner: _Runner, bands: int, height: int, width: int) -> int:
        key = (str(runner.device), bands, height, width)
        if key not in self._batch_sizes:
            self._batch_sizes[key] = _auto_batch_size(runner, bands, height, width)
        return self._batch_sizes[key]


def _checkpoint_of(model: NetworkDetector | Checkpoint | str | Path | None) -> Checkpoint:
    if isinstance(model, NetworkDetector):
        return model.checkpoint
    if isinstance(model, Checkpoint):
        return model
    if model is None:
        return load_shipped(DEFAULT_MODEL)
    return load_network_detector(model, device="cpu").checkpoint


@dataclass(frozen=True)
class _WindowGrid:
    """The windows of a scene: their side (shrunk to a small scene), step and overlap, rounded
    to the network's stride, and their starts and lengths per axis (the last window of each axis
    shrinks to the scene edge: no network time on padding)."""

    win_h: int
    win_w: int
    step: int
    overlap: int
    rows: list[int]
    cols: list[int]
    row_len: list[int]
    col_len: list[int]

    @classmethod
    def of(cls, height: int, width: int, opts: InferenceOptions, stride: int) -> _WindowGrid:
        win = _round_up(opts.window_px, stride)
        win_h = min(win, _round_up(height, stride))
        win_w = min(win, _round_up(width, stride))
        step = max(stride, ((win - opts.overlap_px) // stride) * stride)
        rows = axis_starts(height, win_h, step)
        cols = axis_starts(width, win_w, step)
        return cls(
            win_h, win_w, step, win - step, rows, cols,
            _axis_lengths(rows, height, win_h, stride), _axis_lengths(cols, width, win_w, stride),
        )


def _tiled_profile(crs: Any, transform: Any, height: int, width: int, dtype: str) -> dict[str, Any]:
    """The temporary GeoTIFF's profile: one band per alert class, 512 px tiles."""
    return {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": len(ALERT_CLASSES),
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "nodata": UINT8_NODATA if dtype == "uint8" else float("nan"),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "BIGTIFF": "IF_SAFER",
    }


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
