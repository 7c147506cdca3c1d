"""Labelled tiles in three forms, all georeferenced, and the patches a network trains on.

(a) chip folders of image + mask GeoTIFF pairs (:func:`read_chip_folder`, written by
    :func:`write_chip_folder`); (b) scenes plus label polygons, composited and rasterised on the
    fly (:func:`scene_label_images`); (c) the synthetic world (:func:`synthetic_images`).
Each yields :class:`LabelledImage` objects carrying a *region*: splits are made by region, never
by pixels of the same place.

Label codes: 0 background, 1 mining, 2 deforestation, 255 ignored (unobserved or unlabelled).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from aoi.grid import GridCell
from models.registry import NETWORK_CLASSES
from tiles.clouds import bands_to_read
from tiles.composite import composite_period
from tiles.errors import TileError
from tiles.periods import Period
from tiles.radiometry import TOA_OFFSETS, check_one_level, toa_to_surface
from tiles.sources import list_scenes, read_scene
from tiles.synthetic import TruthClass, WorldSpec, generate_world, parse_quarter
from training.config import (
    ChipsData,
    CompositeOptions,
    RegionSplit,
    ScenesData,
    SyntheticData,
)
from training.errors import DatasetError
from training.patches import IGNORE_INDEX
from training.splits import assign_splits as _assign

log = logging.getLogger(__name__)

BACKGROUND, MINING, DEFORESTATION = 0, 1, 2
CHIPS_CSV = "chips.csv"

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class LabelledImage:
    """A georeferenced image with its label mask.

    Attributes:
        name: unique name (e.g. ``seed-101_2024Q3``).
        region: the region it shows; splits never share a region.
        bands: band names of ``image``.
        image: ``(band, row, col)`` float32 reflectance, NaN where unobserved.
        label: ``(row, col)`` uint8 label codes (0/1/2, 255 ignored).
        crs: CRS of the grid.
        transform: affine transform of the grid.
        split: ``train``/``val``/``test`` when the source decides it, else None.
    """

    name: str
    region: str
    bands: tuple[str, ...]
    image: np.ndarray
    label: np.ndarray
    crs: CRS
    transform: Affine
    split: str | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[0] != len(self.bands):
            raise DatasetError(
                f"{self.name}: image shape {self.image.shape} does not hold the "
                f"{len(self.bands)} band(s) {list(self.bands)}"
            )
        if self.label.shape != self.image.shape[1:]:
            raise DatasetError(
                f"{self.name}: label shape {self.label.shape} != image grid {self.image.shape[1:]}"
            )

    def select(self, bands: Sequence[str]) -> LabelledImage:
        """The same image with ``bands`` in that order.

        Raises:
            DatasetError: a band is missing (names it and the bands offered).
        """
        missing = [b for b in bands if b not in self.bands]
        if missing:
            raise DatasetError(
                f"{self.name}: band(s) {missing} missing; the image has {list(self.bands)}; "
                "rebuild the chips with those bands or train on the bands offered"
            )
        if tuple(bands) == self.bands:
            return self
        idx = [self.bands.index(b) for b in bands]
        return LabelledImage(
            self.name, self.region, tuple(bands), self.image[idx], self.label,
            self.crs, self.transform, self.split,
        )


def truth_to_label(truth: np.ndarray) -> np.ndarray:
    """Synthetic truth codes (:class:`tiles.synthetic.TruthClass`) -> label codes; look-alikes,
    water, roads and everything else are background."""
    label = np.zeros(truth.shape, dtype=np.uint8)
    label[truth == TruthClass.MINING] = MINING
    label[truth == TruthClass.DEFORESTATION] = DEFORESTATION
    return label


# ----------------------------------------------------------------------------- (c) synthetic
def synthetic_images(
    spec: WorldSpec,
    world_dir: Path,
    *,
    bands: Sequence[str],
    composite: CompositeOptions,
    region: str | None = None,
    split: str | None = None,
) -> list[LabelledImage]:
    """Composite each period of a synthetic world (generated into ``world_dir`` if missing).

    Composites are made as a scan makes them (cloud-masked, per period, NaN where unobserved);
    they are cached beside the world as ``.npy``.

    Returns:
        One labelled image per period, region ``region`` (default ``seed-<seed>``).

    Raises:
        DatasetError: ``world_dir`` holds a world of another spec.
    """
    region = region or f"seed-{spec.seed}"
    meta_path = world_dir / "world.json"
    if meta_path.is_file():
        saved = json.loads(meta_path.read_text(encoding="utf-8")).get("spec", {})
        if WorldSpec.model_validate(saved) != spec:
            raise DatasetError(
                f"{world_dir}: holds a synthetic world of another spec; delete the folder or "
                "point data.workdir elsewhere"
            )
    else:
        log.info("region %s: generating synthetic world into %s", region, world_dir)
        generate_world(world_dir, spec)
    truth_dir = world_dir / "truth"
    infos = list_scenes(world_dir / "scenes")
    key = hashlib.sha256(
        json.dumps([list(bands), composite.model_dump()], sort_keys=True).encode()
    ).hexdigest()[:10]
    out = []
    for label_text in spec.periods:
        period = parse_quarter(label_text)
        with rasterio.open(truth_dir / f"{label_text}.tif") as src:
            truth = src.read(1)
            crs, transform = src.crs, src.transform
        cell = GridCell(f"{region}", crs, transform, truth.shape[1], truth.shape[0])
        cache = world_dir / "composites" / f"{label_text}-{key}.npy"
        if cache.is_file():
            data = np.load(cache)
        else:
            data = _composite(infos, cell, period, bands, composite)
            cache.parent.mkdir(exist_ok=True)
            np.save(cache, data)
        out.append(
            LabelledImage(
                f"{region}_{label_text}", region, tuple(bands), data, truth_to_label(truth),
                crs, transform, split,
            )
        )
    log.info("region %s: %d period composite(s)", region, len(out))
    return out


def _composite(
    infos: Sequence[Any],
    cell: GridCell,
    period: Period,
    bands: Sequence[str],
    options: CompositeOptions,
) -> np.ndarray:
    chosen = [i for i in infos if period.contains(i.datetime)]
    if not chosen:
        raise DatasetError(f"{cell.tile_id}: no scene in period {period.label}")
    with warnings.catch_warnings():
        # A cloudy period is expected here: its gaps are NaN and ignored in training.
        warnings.simplefilter("ignore")
        comp = composite_period(
            # (scenes without SCL are masked by the cloud detector, which needs its own bands)
            (read_scene(i, cell, bands=bands_to_read(bands, i, "auto")) for i in chosen),
            cell=cell,
            period=period,
            bands=bands,
            method=options.method,
            masked_scl=options.masked_scl,
            dilation_px=options.dilation_px,
        )
    return comp.data


# ----------------------------------------------------------------------------- (a) chip folders
def write_chip_folder(
    images: Iterable[LabelledImage],
    folder: Path,
    *,
    splits: dict[str, str],
    chip_size_px: int = 256,
    min_observed_share: float = 0.2,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Cut labelled images into chip GeoTIFF pairs, by region split.

    Layout: ``<folder>/<split>/images/<name>.tif`` (float32 reflectance, band descriptions =
    band names, NaN nodata), ``<folder>/<split>/masks/<name>.tif`` (uint8 labels, 255 nodata)
    and ``<folder>/chips.csv`` (name, region, split, image, mask).

    Args:
        images: labelled images.
        folder: output folder (created).
        splits: region -> split; every image's region must be in it.
        chip_size_px: chip side (grid windows; edge chips are shifted inside the image).
        min_observed_share: chips with less observed and labelled area are skipped.
        progress: ``progress(stage, done, total)`` per image.

    Returns:
        Chips written per split.

    Raises:
        DatasetError: an image's region has no split.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    counts = {s: 0 for s in ("train", "val", "test")}
    images = list(images)
    for n, img in enumerate(images, start=1):
        split = splits.get(img.region)
        if split is None:
            raise DatasetError(f"{img.name}: region {img.region!r} has no split")
        for r, c in grid_windows(img.label.shape, chip_size_px, chip_size_px):
            x = img.image[:, r : r + chip_size_px, c : c + chip_size_px]
            y = img.label[r : r + chip_size_px, c : c + chip_size_px]
            usable = np.all(np.isfinite(x), axis=0) & (y != IGNORE_INDEX)
            if usable.mean() < min_observed_share:
                continue
            name = f"{img.name}_{r:05d}_{c:05d}"
            transform = img.transform * Affine.translation(c, r)
            ipath = Path(split) / "images" / f"{name}.tif"
            mpath = Path(split) / "masks" / f"{name}.tif"
            _write_tif(folder / ipath, x.astype(np.float32), img.crs, transform, np.nan,
                       list(img.bands), {"REGION": img.region})
            _write_tif(folder / mpath, y[None], img.crs, transform, IGNORE_INDEX,
                       ["label"], {"REGION": img.region, "CLASSES": ",".join(NETWORK_CLASSES)})
            rows.append({"name": name, "region": img.region, "split": split,
                         "image": ipath.as_posix(), "mask": mpath.as_posix()})
            counts[split] += 1
        if progress:
            progress("writing chips", n, len(images))
    with (folder / CHIPS_CSV).open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["name", "region", "split", "image", "mask"])
        writer.writeheader()
        writer.writerows(rows)
    log.info("%s: %s chips (train/val/test)", folder, counts)
    return counts


def _write_tif(
    path: Path,
    data: np.ndarray,
    crs: CRS,
    transform: Affine,
    nodata: float,
    descriptions: list[str],
    tags: dict[str, str],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
        "count": data.shape[0], "dtype": data.dtype.name, "crs": crs, "transform": transform,
        "nodata": nodata, "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions, start=1):
            dst.set_band_description(i, d)
        dst.update_tags(**tags)


def read_chip_folder(folder: Path, *, splits: Sequence[str] | None = None) -> list[LabelledImage]:
    """Read the chip pairs of a chip folder (``chips.csv``).

    Args:
        folder: a folder written by :func:`write_chip_folder` (or laid out the same way).
        splits: only chips of these splits (default: all).

    Raises:
        DatasetError: no ``chips.csv``, a listed file is missing, or an image's band
            descriptions are not band names.
    """
    index = folder / CHIPS_CSV
    if not index.is_file():
        raise DatasetError(
            f"{folder}: no {CHIPS_CSV}; build a chip folder with `minewatch dataset build`"
        )
    out = []
    with index.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if splits is not None and row["split"] not in splits:
                continue
            ipath, mpath = folder / row["image"], folder / row["mask"]
            try:
                with rasterio.open(ipath) as src:
                    image = src.read().astype(np.float32)
                    bands = tuple(d or "" for d in src.descriptions)
                    crs, transform = src.crs, src.transform
                    if src.nodata is not None and not np.isnan(src.nodata):
                        image[image == src.nodata] = np.nan
                with rasterio.open(mpath) as src:
                    label = src.read(1).astype(np.uint8)
            except rasterio.errors.RasterioIOError as exc:
                raise DatasetError(f"{folder}: chip {row['name']}: {exc}") from exc
            if not all(bands):
                raise DatasetError(f"{ipath}: band descriptions {bands} must name the bands")
            out.append(LabelledImage(row["name"], row["region"], bands, image, label, crs,
                                     transform, row["split"]))
    log.info("%s: %d chip(s)", folder, len(out))
    return out


# ----------------------------------------------------------------------------- (b) scenes+labels
def scene_label_images(
    scenes_dir: Path,
    labels_path: Path,
    *,
    bands: Sequence[str],
    period: Period,
    class_field: str,
    class_map: dict[str, str],
    region_field: str | None,
    margin_m: float,
    composite: CompositeOptions,
    l1c_offsets: Mapping[str, float] = TOA_OFFSETS,
) -> list[LabelledImage]:
    """Composite the scenes of ``period`` around each region's label polygons and rasterise them.

    Each region's grid covers its labels' bounds plus ``margin_m`` in the scenes' CRS, aligned to
    the scenes' pixel grid. Pixels of polygons mapped to ``ignore`` are ignored (255). L1C
    (top-of-atmosphere) scenes are brought to surface-like reflectance by subtracting
    ``l1c_offsets``, as the real gallery chips are (none: read as they are, for a network
    trained on L1C).

    Raises:
        DatasetError: the labels are unreadable or lack ``class_field``/``region_field``, or no
            scene falls in the period.
    """
    import geopandas as gpd
    from rasterio.features import rasterize

    try:
        labels = gpd.read_file(labels_path)
    except Exception as exc:
        raise DatasetError(f"{labels_path}: cannot read label polygons ({exc})") from exc
    for fieldname in (class_field, region_field):
        if fieldname and fieldname not in labels.columns:
            raise DatasetError(
                f"{labels_path}: no field {fieldname!r}; fields are {list(labels.columns)}"
            )
    if labels.crs is None:
        raise DatasetError(f"{labels_path}: label layer has no CRS")
    infos = [i for i in list_scenes(scenes_dir) if period.contains(i.datetime)]
    if not infos:
        raise DatasetError(f"{scenes_dir}: no scene within {period.start}..{period.end}")
    try:
        level = check_one_level(infos)
    except TileError as exc:
        raise DatasetError(f"{scenes_dir}: {exc}") from exc
    surface = dict(l1c_offsets) if level == "L1C" else {}
    if surface:
        log.info("%s: L1C scenes brought to surface-like reflectance (minus %s)", scenes_dir,
                 ", ".join(f"{b} {v:g}" for b, v in sorted(surface.items())))
    ref = infos[0]
    res = float(ref.transform.a)
    labels = labels.to_crs(ref.crs)
    codes = {"background": BACKGROUND, "mining": MINING, "deforestation": DEFORESTATION,
             "ignore": IGNORE_INDEX}
    groups = labels.groupby(region_field) if region_field else [(labels_path.stem, labels)]
    out = []
    for region, frame in groups:
        left, bottom, right, top = frame.total_bounds
        x0 = ref.transform.c + np.floor((left - margin_m - ref.transform.c) / res) * res
        y0 = ref.transform.f - np.floor((ref.transform.f - top - margin_m) / res) * res
        width = int(np.ceil((right + margin_m - x0) / res))
        height = int(np.ceil((y0 - bottom + margin_m) / res))
        transform = Affine(res, 0.0, x0, 0.0, -res, y0)
        cell = GridCell(str(region), ref.crs, transform, width, height)
        data = _composite(infos, cell, period, bands, composite)
        if surface:
            data = toa_to_surface(data, bands, surface)
        shapes = [
            (geom, codes[class_map.get(str(v), "background")])
            for geom, v in zip(frame.geometry, frame[class_field], strict=True)
            if geom is not None and not geom.is_empty
        ]
        # Burn background first, then classes, then ignore, so the rarer class wins overlaps.
        shapes.sort(key=lambda s: (s[1] == IGNORE_INDEX, s[1]))
        label = rasterize(shapes, out_shape=(height, width), transform=transform, fill=BACKGROUND,
                          dtype="uint8")
        out.append(LabelledImage(f"{region}_{period.label}", str(region), tuple(bands), data,
                                 label, ref.crs, transform))
    return out


# ----------------------------------------------------------------------------- splits
def assign_splits(regions: Iterable[str], split: RegionSplit) -> dict[str, str]:
    """Region -> ``train``/``val``/``test`` as ``split`` says (:mod:`training.splits`).

    Raises:
        DatasetError: a named region does not exist, or is named for both val and test.
    """
    return _assign(regions, val=split.val, test=split.test, seed=split.seed)


# ----------------------------------------------------------------------------- windows
def grid_windows(shape: tuple[int, int], size: int, stride: int) -> list[tuple[int, int]]:
    """Upper-left corners of ``size`` windows every ``stride`` pixels covering ``shape``; the
    last row/column is shifted inside the image (an image smaller than ``size`` gives (0, 0))."""

    def starts(n: int) -> list[int]:
        if n <= size:
            return [0]
        s = list(range(0, n - size, stride))
        return [*s, n - size]

    return [(r, c) for r in starts(shape[0]) for c in starts(shape[1])]


def cut_window(image: LabelledImage, r: int, c: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` window at (r, c) (may hang over the edges: NaN / ignored there)."""
    C, H, W = image.image.shape
    x = np.full((C, size, size), np.nan, dtype=np.float32)
    y = np.full((size, size), IGNORE_INDEX, dtype=np.uint8)
    r0, c0, r1, c1 = max(r, 0), max(c, 0), min(r + size, H), min(c + size, W)
    if r1 > r0 and c1 > c0:
        x[:, r0 - r : r1 - r, c0 - c : c1 - c] = image.image[:, r0:r1, c0:c1]
        y[r0 - r : r1 - r, c0 - c : c1 - c] = image.label[r0:r1, c0:c1]
    return x, y


# --------------------------------------------------------------------- a data config's images
def load_labelled_images(
    data: ChipsData | ScenesData | SyntheticData,
    *,
    bands: list[str] | tuple[str, ...],
    composite: CompositeOptions,
    splits: tuple[str, ...] = ("train", "val", "test"),
    l1c_offsets: Mapping[str, float] = TOA_OFFSETS,
) -> list[LabelledImage]:
    """The labelled images of a data config whose split is in ``splits`` (split set on each);
    L1C scenes minus ``l1c_offsets`` (:func:`scene_label_images`).

    Raises:
        DatasetError: the data is missing or malformed.
    """
    out: list[LabelledImage] = []
    if isinstance(data, SyntheticData):
        for reg in data.regions:
            if reg.split not in splits:
                continue
            out += synthetic_images(
                reg.world, data.workdir / reg.region, bands=bands, composite=composite,
                region=reg.region, split=reg.split,
            )
    elif isinstance(data, ChipsData):
        out = [im.select(bands) for im in read_chip_folder(data.folder, splits=splits)]
    else:
        import datetime as dt

        period = Period(
            dt.date.fromisoformat(data.period_start), dt.date.fromisoformat(data.period_end),
            f"{data.period_start}..{data.period_end}",
        )
        images = scene_label_images(
            data.scenes, data.labels, bands=bands, period=period, class_field=data.class_field,
            class_map=dict(data.class_map), region_field=data.region_field,
            margin_m=data.margin_m, composite=composite, l1c_offsets=l1c_offsets,
        )
        chosen = assign_splits([im.region for im in images], data.split)
        out = [
            LabelledImage(im.name, im.region, im.bands, im.image, im.label, im.crs, im.transform,
                          chosen[im.region])
            for im in images
            if chosen[im.region] in splits
        ]
    _check_regions(out)
    return out


def _check_regions(images: list[LabelledImage]) -> None:
    seen: dict[str, str | None] = {}
    for im in images:
        if seen.setdefault(im.region, im.split) != im.split:
            raise DatasetError(
                f"region {im.region!r} is in splits {seen[im.region]!r} and {im.split!r}; a "
                "region must belong to one split only"
            )
