"""Fixtures of the tiles tests: tiny real Sentinel-2-like rasters written to ``tmp_path``.

The world is a 64 x 64 pixel, 10 m chip in UTM zone 21S (EPSG:32721) over the Amazon: forest,
a planted bare-sediment mining patch (``World.feature``, aligned to the 20 m grid so 20 m bands
hold it exactly), a no-data swath edge (the first columns), and a cloud with its shadow in SCL.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from aoi.grid import GridCell
from tiles.cog import write_cog
from tiles.periods import Period
from tiles.scene import Scene, SceneInfo

CRS_UTM21S = CRS.from_epsg(32721)
ORIGIN_X, ORIGIN_Y = 600_000.0, 9_450_000.0
SIZE = 64
NODATA_COLS = 4  # columns 0..3 lie outside the swath

#: Surface reflectance of forest and of bare mining sediment, per band.
FOREST = {"B02": 0.03, "B03": 0.06, "B04": 0.04, "B08": 0.30, "B11": 0.15, "B12": 0.07}
SEDIMENT = {"B02": 0.12, "B03": 0.15, "B04": 0.18, "B08": 0.22, "B11": 0.30, "B12": 0.25}
BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B11", "B12")
ALL_BANDS = BANDS_10M + BANDS_20M

WHEN = dt.datetime(2024, 2, 10, 14, 3, 21, tzinfo=dt.timezone.utc)
Q1_2024 = Period(dt.date(2024, 1, 1), dt.date(2024, 3, 31), "2024Q1")


@dataclass(frozen=True)
class World:
    """The surface every fixture scene shows."""

    crs: CRS
    transform: Affine
    shape: tuple[int, int]
    reflectance: dict[str, np.ndarray]  # band -> (row, col) float32, at 10 m
    feature: np.ndarray  # (row, col) bool: the planted mining patch
    valid: np.ndarray  # (row, col) bool: inside the swath
    cloud: np.ndarray  # (row, col) bool: SCL 9
    shadow: np.ndarray  # (row, col) bool: SCL 3
    scl: np.ndarray  # (row, col) uint8

    def dn(self, band: str, *, offset: float) -> np.ndarray:
        """L2A digital numbers of a band: reflectance * 10000 - offset, 0 outside the swath."""
        dn = np.round(self.reflectance[band] * 10_000 - offset).astype(np.uint16)
        dn[~self.valid] = 0
        return dn


def _make_world() -> World:
    shape = (SIZE, SIZE)
    feature = np.zeros(shape, dtype=bool)
    feature[20:30, 24:36] = True  # even edges: whole 20 m pixels
    valid = np.ones(shape, dtype=bool)
    valid[:, :NODATA_COLS] = False
    cloud = np.zeros(shape, dtype=bool)
    cloud[44:50, 44:50] = True
    shadow = np.zeros(shape, dtype=bool)
    shadow[52:56, 36:40] = True
    reflectance = {
        b: np.where(feature, SEDIMENT[b], FOREST[b]).astype(np.float32) for b in ALL_BANDS
    }
    scl = np.full(shape, 4, dtype=np.uint8)
    scl[feature] = 5
    scl[cloud] = 9
    scl[shadow] = 3
    scl[~valid] = 0
    return World(
        crs=CRS_UTM21S,
        transform=Affine(10.0, 0.0, ORIGIN_X, 0.0, -10.0, ORIGIN_Y),
        shape=shape,
        reflectance=reflectance,
        feature=feature,
        valid=valid,
        cloud=cloud,
        shadow=shadow,
        scl=scl,
    )


@pytest.fixture(scope="session")
def world() -> World:
    return _make_world()


@pytest.fixture
def world_cell(world: World) -> GridCell:
    """A cell on exactly the world's grid."""
    return GridCell("21MXT_0000", world.crs, world.transform, SIZE, SIZE)


@pytest.fixture
def inner_cell(world: World) -> GridCell:
    """A 32 x 32 cell inside the world, offset by (8, 16) pixels, holding the whole feature."""
    transform = world.transform @ Affine.translation(16, 8)
    return GridCell("21MXT_0101", world.crs, transform, 32, 32)


def _offset_of(baseline: str) -> float:
    return -1000.0 if baseline >= "04.00" else 0.0


def write_single(
    path: Path,
    world: World,
    *,
    baseline: str | None = "04.00",
    bands: Sequence[str] = ALL_BANDS,
    when: dt.datetime | str | None = WHEN,
    scl: bool = True,
    dtype: str = "uint16",
    tags: dict[str, str] | None = None,
    offset_tag: bool = True,
    descriptions: Sequence[str] | None = None,
) -> Path:
    """Write one scene as a single multi-band COG with band descriptions and tags.

    ``dtype="float32"`` writes reflectance; otherwise L2A digital numbers of ``baseline``.
    """
    names = list(bands) + (["SCL"] if scl else [])
    if dtype == "float32":
        layers = [np.where(world.valid, world.reflectance[b], np.nan) for b in bands]
        nodata: float | None = float("nan")
    else:
        offset = _offset_of(baseline or "04.00")
        layers = [world.dn(b, offset=offset) for b in bands]
        nodata = 0
    if scl:
        layers.append(world.scl.astype(layers[0].dtype))
    all_tags: dict[str, str] = {}
    if when is not None:
        all_tags["ACQUISITION_DATETIME"] = when if isinstance(when, str) else when.isoformat()
    if baseline is not None:
        all_tags["PROCESSING_BASELINE"] = baseline
        if offset_tag:
            all_tags["BOA_ADD_OFFSET"] = str(int(_offset_of(baseline)))
    all_tags.update(tags or {})
    return write_cog(
        path,
        np.stack(layers).astype(dtype),
        crs=world.crs,
        transform=world.transform,
        nodata=nodata,
        band_descriptions=list(descriptions) if descriptions is not None else names,
        tags=all_tags,
        blocksize=256,
    )


def write_folder(
    folder: Path,
    world: World,
    *,
    baseline: str = "04.00",
    bands: Sequence[str] = ALL_BANDS,
    when: dt.datetime = WHEN,
    scl: bool = True,
    meta: dict[str, object] | None = None,
) -> Path:
    """Write one scene as a folder of per-band COGs (B11/B12 and SCL at 20 m) plus scene.json."""
    folder.mkdir(parents=True)
    offset = _offset_of(baseline)
    transform_20m = world.transform @ Affine.scale(2)
    for band in bands:
        dn = world.dn(band, offset=offset)
        if band in BANDS_20M:  # the surface is constant on 2 x 2 blocks: take one of each
            write_cog(
                folder / f"{band}.tif",
                dn[::2, ::2],
                crs=world.crs,
                transform=transform_20m,
                nodata=0,
            )
        else:
            write_cog(
                folder / f"{band}.tif", dn, crs=world.crs, transform=world.transform, nodata=0
            )
    if scl:
        write_cog(
            folder / "SCL.tif",
            world.scl[::2, ::2],
            crs=world.crs,
            transform=transform_20m,
            nodata=0,
            resampling="nearest",
        )
    content: dict[str, object] = {
        "datetime": when.isoformat(),
        "processing_baseline": baseline,
        "boa_add_offset": int(offset),
    }
    content.update(meta or {})
    (folder / "scene.json").write_text(json.dumps(content), encoding="utf-8")
    return folder


@pytest.fixture
def scene_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "scenes"
    folder.mkdir()
    return folder


def make_scene(
    cell: GridCell,
    values: dict[str, np.ndarray | float],
    *,
    scene_id: str,
    when: dt.datetime = WHEN,
    scl: np.ndarray | int | None = 4,
    valid: np.ndarray | None = None,
    baseline: str = "04.00",
) -> Scene:
    """An in-memory scene on ``cell`` with the given per-band reflectance (arrays or constants)."""
    shape = cell.shape
    bands = tuple(values)
    data = np.stack(
        [np.broadcast_to(np.asarray(values[b], dtype=np.float32), shape) for b in bands]
    ).copy()
    ok = np.ones(shape, dtype=bool) if valid is None else valid
    data[:, ~ok] = np.nan
    scl_arr = None if scl is None else np.broadcast_to(np.asarray(scl, np.uint8), shape).copy()
    info = SceneInfo(
        scene_id=scene_id,
        datetime=when,
        crs=cell.crs,
        transform=cell.transform,
        width=cell.width,
        height=cell.height,
        bands=bands,
        has_scl=scl is not None,
        processing_baseline=baseline,
        href=f"memory://{scene_id}",
    )
    return Scene(info, bands, data, ok, cell.crs, cell.transform, scl_arr)


@pytest.fixture
def scene_factory() -> Callable[..., Scene]:
    return make_scene


@pytest.fixture
def small_cell() -> GridCell:
    """A 6 x 8 cell for in-memory composites."""
    transform = Affine(10.0, 0.0, ORIGIN_X, 0.0, -10.0, ORIGIN_Y)
    return GridCell("21MXT_0202", CRS_UTM21S, transform, 8, 6)


def truncate(path: Path, *, keep: float = 0.5) -> None:
    """Cut a file to a fraction of its size, as an interrupted download does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def corrupt_first_block(path: Path) -> None:
    """Overwrite the middle of the first data block with garbage (a flipped-bytes download)."""
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        nbytes = int(src.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    raw = bytearray(path.read_bytes())
    start = offset + nbytes // 4
    raw[start : start + nbytes // 2] = b"\xff" * (nbytes // 2)
    path.write_bytes(bytes(raw))


__all__ = [
    "ALL_BANDS",
    "FOREST",
    "Q1_2024",
    "SEDIMENT",
    "WHEN",
    "World",
    "corrupt_first_block",
    "make_scene",
    "truncate",
    "write_folder",
    "write_single",
]
