"""Writing Cloud-Optimized GeoTIFFs (tiled, compressed, with overviews), atomically."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.io import MemoryFile

from tiles.files import atomic_path


def write_cog(
    path: str | Path,
    data: np.ndarray,
    *,
    crs: CRS,
    transform: Affine,
    nodata: float | int | None = None,
    band_descriptions: Sequence[str] | None = None,
    tags: Mapping[str, str] | None = None,
    band_tags: Sequence[Mapping[str, str]] | None = None,
    compress: str = "DEFLATE",
    resampling: str = "average",
    blocksize: int = 512,
) -> Path:
    """Write ``data`` (``(band, row, col)`` or ``(row, col)``) to ``path`` as a COG.

    Written through GDAL's COG driver to a temporary file and renamed, so a reader never sees a
    half-written file.

    Args:
        path: target file.
        data: the raster; its dtype is kept.
        crs: CRS of the raster.
        transform: affine transform of the raster.
        nodata: nodata value recorded in the file.
        band_descriptions: one description per band (sources read band names from these).
        tags: dataset-level metadata tags.
        band_tags: per-band metadata tags.
        compress: GDAL compression (DEFLATE detects corruption on read; ZSTD does not).
        resampling: overview resampling (``average`` for reflectance, ``nearest`` for classes).
        blocksize: internal tile size in pixels.

    Returns:
        The path written.
    """
    arr = data[np.newaxis] if data.ndim == 2 else data
    if arr.ndim != 3:
        raise ValueError(f"write_cog: data must be 2-D or 3-D, got shape {data.shape}")
    count, height, width = arr.shape
    if band_descriptions is not None and len(band_descriptions) != count:
        raise ValueError(
            f"write_cog: {len(band_descriptions)} band descriptions for {count} bands"
        )
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": arr.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(arr)
            if band_descriptions is not None:
                for i, desc in enumerate(band_descriptions, start=1):
                    dst.set_band_description(i, desc)
            if tags:
                dst.update_tags(**tags)
            if band_tags:
                for i, bt in enumerate(band_tags, start=1):
                    dst.update_tags(i, **bt)
        with mem.open() as src, atomic_path(path) as tmp:
            try:
                rasterio.shutil.copy(
                    src,
                    tmp,
                    driver="COG",
                    COMPRESS=compress,
                    BLOCKSIZE=str(blocksize),
                    OVERVIEW_RESAMPLING=resampling.upper(),
                    BIGTIFF="IF_SAFER",
                    NUM_THREADS="ALL_CPUS",
                )
            except (RasterioError, CPLE_BaseError) as exc:
                # GDAL reports a full disk as "IO error writing tag data" (libtiff prints the
                # errno to stderr only): name it as the OSError it is.
                raise _write_error(Path(path), exc) from exc
    return Path(path)


def _write_error(path: Path, exc: Exception) -> OSError:
    free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
    if free < 1024 * 1024 or "space" in str(exc).lower():
        return OSError(
            errno.ENOSPC, f"No space left on device writing {path} ({free} bytes free): {exc}"
        )
    return OSError(errno.EIO, f"could not write {path}: {exc}")


def is_cog(path: str | Path) -> bool:
    """Whether ``path`` is a valid Cloud-Optimized GeoTIFF (rio-cogeo's validator)."""
    from rio_cogeo.cogeo import cog_validate

    valid, _errors, _warnings = cog_validate(str(path), quiet=True)
    return bool(valid)


def read_tags(path: str | Path) -> dict[str, str]:
    with rasterio.open(path) as src:
        return dict(src.tags())
