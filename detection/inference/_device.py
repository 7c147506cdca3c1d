"""The network on its device: raw batches converted and run (NumPy and ONNX Runtime on the
CPU, PyTorch on CUDA, halving the batch on out-of-memory), and the weighted accumulator.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from detection.inference._common import Device, InferenceOptions, _on, _stack
from detection.inference._reading import SceneRadiometry
from models.checkpoint import Checkpoint, surface_offsets
from models.detector import ALERT_CLASSES
from models.network import softmax
from models.runtime import Engine

if TYPE_CHECKING:  # PyTorch is an extra: without it the CPU path below runs on NumPy arrays
    import torch

log = logging.getLogger(__name__)


_MAX_BATCH = 64


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
        # L1C read by a network trained on surface reflectance: its top-of-atmosphere offsets
        surface = surface_offsets(self.checkpoint.metadata, rad.level)
        self._surface = const([surface.get(b, 0.0) for b in rad.bands]) if surface else None

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
        if self._surface is not None:
            x = x.sub_(self._surface).clamp_(min=0.0)
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
        if self._surface is not None:
            x -= self._surface
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
