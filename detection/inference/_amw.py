"""Whole scenes through an Amazon Mining Watch patch classifier (``minewatch predict``).

The scene GeoTIFF is read in strips of window rows (a strip holds every band the classifier
needs, in float32), each strip is scored by :class:`models.amw.AmwDetector` on the scene's
window grid, and the strips' rasters are merged (a pixel keeps the highest score of the
windows that cover it). The result is a one-band ``mining`` probability COG, ``uint8`` like the
network's (``round(p * 254)``, nodata 255), with the model and its 0.5 threshold in its tags,
so the sites come from the same rule as every detector's (:func:`detection.sites
.sites_from_probabilities`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil
import rasterio.windows

from detection.errors import DetectionError
from detection.inference._inference import (
    TAG_THRESHOLDS,
    UINT8_NODATA,
    UINT8_SCALE,
    ProgressFn,
    scene_radiometry,
)
from models.site_rule import checkpoint_thresholds
from tiles.files import atomic_path

if TYPE_CHECKING:  # models.amw imports torch: the CPU install imports this room without it
    from models.amw import AmwDetector

log = logging.getLogger(__name__)

#: Rows of a strip read at once (rounded to whole window rows).
STRIP_ROWS = 512


@dataclass(frozen=True)
class AmwScenePrediction:
    """What :func:`predict_scene_amw` wrote, and how fast (the fields ``predict`` reports)."""

    path: Path
    width: int
    height: int
    windows: int
    stride_px: int
    device: str
    backend: str
    batch_size: int
    seconds: float
    model_seconds: float
    megapixels_per_s: float


def _band_names(src: rasterio.io.DatasetReader) -> list[str]:
    names = [(d or "").strip().upper() for d in src.descriptions]
    return [f"B0{n[1]}" if len(n) == 2 and n[0] == "B" and n[1].isdigit() else n for n in names]


def predict_scene_amw(
    scene: str | Path,
    detector: AmwDetector,
    *,
    out_path: str | Path,
    progress: ProgressFn | None = None,
) -> AmwScenePrediction:
    """The ``mining`` probability COG of a scene GeoTIFF through an AMW classifier.

    The scene's band descriptions name its bands (any order; a superset is fine); float bands
    hold top-of-atmosphere reflectance (L1C DN / 10000), integer bands are converted as in
    :func:`detection.inference.scene_radiometry` (GDAL scale/offset, ``REFLECTANCE_SCALE``,
    ``BOA_ADD_OFFSET`` or ``PROCESSING_BASELINE``).

    Raises:
        BandMismatchError: the scene lacks a band the classifier needs (names them and the fix).
        DetectionError: the scene cannot be read, has no CRS, or the COG cannot be written.
    """
    from models.amw import window_starts

    started = time.monotonic()
    scene, out_path = Path(scene), Path(out_path)
    try:
        src = rasterio.open(scene)
    except rasterio.errors.RasterioIOError as exc:
        raise DetectionError(f"{scene}: cannot open the scene ({exc})") from exc
    model_seconds = 0.0
    with src:
        if src.crs is None:
            raise DetectionError(f"{scene}: has no CRS; expected a georeferenced (UTM) GeoTIFF")
        names = _band_names(src)
        detector.check_bands(names)  # the AMW message: which bands, and the fix
        radiometry = scene_radiometry(src, detector.bands)
        height, width = src.height, src.width
        p, stride = detector.checkpoint.metadata.patch_size_px, detector.stride_px
        starts = window_starts(height, p, stride)
        per_strip = max(1, (STRIP_ROWS - p) // stride + 1)
        chunks = [starts[i : i + per_strip] for i in range(0, len(starts), per_strip)]
        prob = np.full((height, width), np.nan, dtype=np.float32)
        windows = 0
        for n, chunk in enumerate(chunks):
            r0, r1 = chunk[0], min(chunk[-1] + p, height)
            raw = src.read(
                list(radiometry.indexes), window=rasterio.windows.Window(0, r0, width, r1 - r0)
            )
            data = raw.astype(np.float32)
            if not radiometry.is_float:
                off = np.asarray(radiometry.offset, np.float32)[:, None, None]
                scale = np.asarray(radiometry.scale, np.float32)[:, None, None]
                data = np.maximum((data + off) * scale, 0.0)
            if radiometry.nodata is not None:
                data[raw == radiometry.nodata] = np.nan
            t0 = time.monotonic()
            strip = detector.predict(data, detector.bands).of("mining")
            model_seconds += time.monotonic() - t0
            windows += len(window_starts(r1 - r0, p, stride)) * len(window_starts(width, p, stride))
            np.fmax(prob[r0:r1], strip, out=prob[r0:r1])
            if progress is not None:
                progress("amw", n + 1, len(chunks))
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": 1,
            "dtype": "uint8",
            "crs": src.crs,
            "transform": src.transform,
            "nodata": UINT8_NODATA,
        }
    q = np.where(np.isfinite(prob), np.round(np.clip(prob, 0, 1) * UINT8_SCALE), UINT8_NODATA)
    _write_cog(out_path, q.astype(np.uint8), profile, detector)
    seconds = time.monotonic() - started
    return AmwScenePrediction(
        path=out_path,
        width=width,
        height=height,
        windows=windows,
        stride_px=stride,
        device=detector.device,
        backend=detector.backend,
        batch_size=128,
        seconds=seconds,
        model_seconds=model_seconds,
        megapixels_per_s=width * height / 1e6 / max(seconds, 1e-9),
    )


def _write_cog(path: Path, band: np.ndarray, profile: dict, detector: AmwDetector) -> None:
    meta = detector.checkpoint.metadata
    thresholds = checkpoint_thresholds(detector.checkpoint)
    try:
        with atomic_path(path) as final:
            tmp = final.with_name(final.name + ".gtiff")
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(band, 1)
                dst.set_band_description(1, "mining")
                dst.update_tags(1, PROBABILITY_SCALE=f"{1 / UINT8_SCALE:.10f}")
                dst.scales = (1 / UINT8_SCALE,)
                dst.update_tags(
                    MODEL_NAME=meta.name,
                    MODEL_VERSION=meta.version,
                    MODEL_SHA256=meta.sha256,
                    CLASSES="mining",
                    AMW_STRIDE_PX=str(detector.stride_px),
                    **({TAG_THRESHOLDS: json.dumps(thresholds)} if thresholds else {}),
                )
            rasterio.shutil.copy(
                tmp, final, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE="512",
                OVERVIEW_RESAMPLING="AVERAGE",
            )
            tmp.unlink()
    except (rasterio.errors.RasterioError, OSError) as exc:
        raise DetectionError(f"{path}: cannot write the probability COG ({exc})") from exc
