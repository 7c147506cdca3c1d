"""Patch-labelled real imagery: chips with one label each (mining somewhere in the chip, or not).

Two forms give the same :class:`ChipGroup` objects:

- a **gallery** folder (:func:`read_gallery`): mosaics of square chips laid row-major, as Amazon
  Mining Watch's training galleries are (``../shared/data/amw/training_gallery/``). The label
  (``positives``/``negatives``) and the kind of negative (riverbank, aquaculture, ...) are read
  from each file's name; the *set* is the name before ``_S2L1C`` (the ``clear0.05`` and
  ``clear0.75`` mosaics of one set show the same places and always share a split); cells that
  are all zero (the unused end of a mosaic) are dropped. Pixels are RGB of Sentinel-2 L1C top of
  atmosphere: ``uint8 = clip(DN / 3000, 0, 1) * 255``, so reflectance = value / 255 * 0.3,
  saturated (flagged) at 255.
- a **chip folder** with ``labels.csv`` (:func:`read_chip_csv`): one chip file per row (PNG or
  GeoTIFF, any size), columns ``file``, ``label`` (1/0, ``mining``/``positive``/``true`` or not)
  and optionally ``kind``, ``set``, ``region``, ``split``.

Chips keep their radiometry (``toa`` or ``boa``) and their bands; the network's other bands are
absent (NaN) and flagged unavailable. Splits are made by set or by region, never by chip.

Only NumPy and Pillow at import (GeoTIFF chips import rasterio when read), so a GPU machine
without GDAL can train on a gallery.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from training.errors import DatasetError
from training.splits import assign_splits

#: Label of pixels that are not labelled (ignored by the loss and the metrics).
IGNORE_INDEX = 255

log = logging.getLogger(__name__)

#: Reflectance of one gallery DN (``clip(DN / 3000, 0, 1) * 255``): 0.3 / 255.
GALLERY_SCALE = 0.3 / 255.0
#: Bands of a gallery PNG's channels R, G, B.
GALLERY_PNG_BANDS: tuple[str, ...] = ("B04", "B03", "B02")
#: Chip side of the gallery mosaics.
GALLERY_CHIP_PX = 48
#: Mosaics whose chips have another side (name pattern -> px).
GALLERY_CHIP_SIDES: dict[str, int] = {"GeoCompass2023-negatives-curated": 32}
#: Kinds of negative named in gallery file names (first match wins).
NEGATIVE_KINDS: tuple[str, ...] = (
    "riverbank", "aquaculture", "industrial", "landslide", "cloud_remnant", "oxbow", "random",
)
#: Kind of a positive chip; negatives whose name names no kind are ``other``.
MINING_KIND = "mining"
OTHER_KIND = "other"
LABELS_CSV = "labels.csv"


@dataclass(frozen=True)
class ChipGroup:
    """Chips of one file (a mosaic) or one set of equal-sized chip files, one label each.

    Attributes:
        name: the group (mosaic file stem).
        set: the set it belongs to (splits keep a set together).
        region: the region it shows (default: the set).
        bands: band names of ``images``' channels.
        images: ``(chip, band, row, col)`` float32 reflectance.
        labels: ``(chip,)`` uint8, 1 = mining in the chip, 0 = none.
        kinds: ``(chip,)`` kind of each chip (``mining`` or the kind of negative).
        saturated: ``(chip, row, col)`` True where a channel hit the encoding's ceiling.
        radiometry: ``toa`` (L1C) or ``boa`` (L2A).
        split: ``train``/``val``/``test`` once assigned.
        sources: a name per chip (file and cell).
    """

    name: str
    set: str
    region: str
    bands: tuple[str, ...]
    images: np.ndarray
    labels: np.ndarray
    kinds: tuple[str, ...]
    saturated: np.ndarray
    radiometry: str = "toa"
    split: str | None = None
    sources: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.ndim != 4 or self.images.shape[0] != n or len(self.kinds) != n:
            raise DatasetError(
                f"{self.name}: {self.images.shape} images, {n} labels and {len(self.kinds)} "
                "kinds do not match"
            )
        if self.images.shape[1] != len(self.bands):
            raise DatasetError(f"{self.name}: {self.images.shape[1]} channels, bands {self.bands}")

    def __len__(self) -> int:
        return len(self.labels)


def gallery_label(name: str) -> tuple[int, str]:
    """(label, kind) of a gallery file name: ``positives`` (or ``MinesPos...``, the upstream
    set of known mine points) -> (1, ``mining``); ``negatives`` ->
    (0, the first of :data:`NEGATIVE_KINDS` the name holds, else ``other``).

    Raises:
        DatasetError: the name says neither (names the file and the fix).
    """
    low = name.lower()
    if "positives" in low or low.startswith("minespos"):
        return 1, MINING_KIND
    if "negatives" in low:
        kind = next((k for k in NEGATIVE_KINDS if k in low.replace("-", "_")), OTHER_KIND)
        return 0, kind
    raise DatasetError(
        f"{name}: the file name says neither 'positives' nor 'negatives'; rename it, or list its "
        f"chips in a {LABELS_CSV} with a label column"
    )


def gallery_set(name: str) -> str:
    """The set of a gallery file: its stem before ``_S2L1C`` (or ``_rgb``)."""
    stem = Path(name).stem
    return re.split(r"_S2L1C|_rgb", stem, maxsplit=1)[0]


def region_of(set_name: str, regions: Mapping[str, str] | None) -> str:
    """The region of a set: the first ``regions`` pattern (a regular expression, searched
    case-insensitively) that matches its name, else the set itself."""
    for pattern, region in (regions or {}).items():
        if re.search(pattern, set_name, flags=re.IGNORECASE):
            return region
    return set_name


def cut_mosaic(mosaic: np.ndarray, side: int) -> tuple[np.ndarray, list[int]]:
    """Square chips of a ``(row, col, channel)`` mosaic laid row-major; all-zero cells dropped.

    Returns:
        ``(chips (n, row, col, channel), cell index of each chip)``.

    Raises:
        DatasetError: the mosaic is not a whole number of chips.
    """
    h, w = mosaic.shape[:2]
    if h % side or w % side:
        raise DatasetError(
            f"mosaic of {h}x{w} px is not a grid of {side} px chips; set the chip side of this "
            "file (chip_px in the config)"
        )
    rows, cols = h // side, w // side
    cells = mosaic.reshape(rows, side, cols, side, -1).swapaxes(1, 2).reshape(
        rows * cols, side, side, -1
    )
    keep = [i for i in range(len(cells)) if cells[i].any()]
    return cells[keep], keep


def read_gallery(
    folder: Path,
    *,
    regions: Mapping[str, str] | None = None,
    chip_px: Mapping[str, int] | None = None,
    include_unused: bool = False,
    exclude: Sequence[str] = (),
) -> list[ChipGroup]:
    """Read a gallery folder of chip mosaics (PNG).

    Args:
        folder: the folder (its ``*.png``; ``unused_in_final_model_training/`` too with
            ``include_unused``).
        regions: set-name pattern -> region (:func:`region_of`).
        chip_px: file-name pattern -> chip side (default :data:`GALLERY_CHIP_SIDES`, else 48).
        include_unused: also read the sets curated upstream but not used in training.
        exclude: sets to leave out.

    Raises:
        DatasetError: the folder has no mosaic, a file is unreadable, or its name has no label.
    """
    from PIL import Image

    if not folder.is_dir():
        raise DatasetError(f"{folder}: gallery folder not found; give a folder of chip mosaics")
    files = sorted(folder.glob("*.png"))
    if include_unused:
        files += sorted(folder.glob("unused_in_final_model_training/*.png"))
    if not files:
        raise DatasetError(f"{folder}: no *.png mosaic; give a folder of chip mosaics")
    sides = {**GALLERY_CHIP_SIDES, **(chip_px or {})}
    out = []
    for path in files:
        set_name = gallery_set(path.name)
        if set_name in exclude:
            continue
        label, kind = gallery_label(path.name)
        side = next((v for k, v in sides.items() if re.search(k, path.name)), GALLERY_CHIP_PX)
        try:
            with Image.open(path) as im:
                mosaic = np.asarray(im.convert("RGB"))
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read the mosaic ({exc})") from exc
        try:
            chips, cells = cut_mosaic(mosaic, side)
        except DatasetError as exc:
            raise DatasetError(f"{path}: {exc}") from exc
        # PNG channels are R, G, B = B04, B03, B02: store them as B02, B03, B04.
        dn = chips[..., ::-1].transpose(0, 3, 1, 2)
        out.append(
            ChipGroup(
                name=path.stem, set=set_name, region=region_of(set_name, regions),
                bands=GALLERY_PNG_BANDS[::-1], images=dn.astype(np.float32) * GALLERY_SCALE,
                labels=np.full(len(dn), label, dtype=np.uint8), kinds=(kind,) * len(dn),
                saturated=(chips == 255).any(axis=-1), radiometry="toa",
                sources=tuple(f"{path.name}#{c}" for c in cells),
            )
        )
    if not out:
        raise DatasetError(f"{folder}: every set was excluded")
    n = sum(len(g) for g in out)
    pos = sum(int(g.labels.sum()) for g in out)
    log.info("%s: %d chips (%d mining, %d not) in %d mosaics", folder, n, pos, n - pos, len(out))
    return out


def _truthy(value: str, where: str) -> int:
    v = value.strip().lower()
    if v in {"1", "true", "yes", "mining", "positive", "positives"}:
        return 1
    if v in {"0", "false", "no", "background", "negative", "negatives", "none"}:
        return 0
    raise DatasetError(f"{where}: label {value!r}; expected 1/0, mining/background or true/false")


def read_chip_csv(
    folder: Path,
    *,
    bands: Sequence[str] | None = None,
    scale: float | None = None,
    radiometry: str = "boa",
    regions: Mapping[str, str] | None = None,
) -> list[ChipGroup]:
    """Read a folder of chip files listed in ``labels.csv`` (the researcher's own patch labels).

    Args:
        folder: holds ``labels.csv`` and the chips (paths relative to it).
        bands: band names of each file's channels (default: a GeoTIFF's band descriptions; for
            PNG/JPEG, R G B = B04 B03 B02).
        scale: reflectance per stored value (default: 1 for float GeoTIFFs, 1e-4 for integer
            GeoTIFFs, the gallery's 0.3 / 255 for 8-bit images).
        radiometry: ``toa`` or ``boa``.
        regions: set-name pattern -> region.

    Raises:
        DatasetError: ``labels.csv`` is missing or lacks a column, a chip is missing or
            unreadable, or a label is not a label.
    """
    index = folder / LABELS_CSV
    if not index.is_file():
        raise DatasetError(
            f"{folder}: no {LABELS_CSV}; list the chips with columns file,label[,kind,set,region,"
            "split]"
        )
    with index.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise DatasetError(
            f"{index}: needs columns 'file' and 'label'; has {list(rows[0]) if rows else []}"
        )
    grouped: dict[tuple[str, str | None, tuple[int, ...], tuple[str, ...]], list[tuple]] = {}
    for n, row in enumerate(rows, start=2):
        where = f"{index}:{n}"
        label = _truthy(row["label"], where)
        image, names, saturated = _read_chip(folder / row["file"], bands, scale, where)
        kind = (row.get("kind") or "").strip() or (MINING_KIND if label else OTHER_KIND)
        set_name = (row.get("set") or "").strip() or Path(row["file"]).parent.name or folder.name
        split = (row.get("split") or "").strip() or None
        if split not in (None, "train", "val", "test"):
            raise DatasetError(f"{where}: split {split!r}; expected train, val, test or empty")
        region = (row.get("region") or "").strip() or region_of(set_name, regions)
        key = (set_name, split, image.shape, names)
        grouped.setdefault(key, []).append((image, label, kind, saturated, row["file"], region))
    out = []
    for (set_name, split, _, names), items in grouped.items():
        out.append(
            ChipGroup(
                name=set_name, set=set_name, region=items[0][5], bands=names,
                images=np.stack([i[0] for i in items]),
                labels=np.array([i[1] for i in items], dtype=np.uint8),
                kinds=tuple(i[2] for i in items), saturated=np.stack([i[3] for i in items]),
                radiometry=radiometry, split=split, sources=tuple(i[4] for i in items),
            )
        )
    log.info("%s: %d chips in %d group(s)", folder, len(rows), len(out))
    return out


def _read_chip(
    path: Path, bands: Sequence[str] | None, scale: float | None, where: str
) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"{where}: chip {path} not found")
    if path.suffix.lower() in {".tif", ".tiff"}:
        import rasterio

        try:
            with rasterio.open(path) as src:
                raw = src.read()
                names = tuple(bands or (d or "" for d in src.descriptions))
                nodata = src.nodata
        except rasterio.errors.RasterioIOError as exc:
            raise DatasetError(f"{where}: cannot read {path} ({exc})") from exc
        if not all(names) or len(names) != raw.shape[0]:
            raise DatasetError(
                f"{where}: {path} has {raw.shape[0]} band(s) named {list(names)}; name them "
                "(band descriptions) or give bands in the config"
            )
        is_float = np.issubdtype(raw.dtype, np.floating)
        s = scale if scale is not None else (1.0 if is_float else 1e-4)
        image = raw.astype(np.float32) * s
        if nodata is not None and not np.isnan(nodata):
            image[raw == nodata] = np.nan
        ceiling = np.iinfo(raw.dtype).max if not is_float else np.inf
        return image, names, (raw >= ceiling).any(axis=0)
    from PIL import Image

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise DatasetError(f"{where}: cannot read {path} ({exc})") from exc
    names = tuple(bands or GALLERY_PNG_BANDS)
    if len(names) != 3:
        raise DatasetError(f"{where}: an 8-bit image has 3 channels; bands {list(names)}")
    s = scale if scale is not None else GALLERY_SCALE
    return rgb.transpose(2, 0, 1).astype(np.float32) * s, names, (rgb == 255).any(axis=-1)


def split_groups(
    groups: Sequence[ChipGroup],
    *,
    by: str = "set",
    val: Sequence[str] | float = 0.15,
    test: Sequence[str] | float = 0.15,
    seed: int = 0,
) -> list[ChipGroup]:
    """Assign each group a split by its set or its region (groups that carry a split keep it).

    Raises:
        DatasetError: a named set/region does not exist, or a set or region would span splits.
    """
    if by not in ("set", "region"):
        raise DatasetError(f"split.by {by!r}: expected 'set' or 'region'")
    key = (lambda g: g.set) if by == "set" else (lambda g: g.region)
    free = [g for g in groups if g.split is None]
    chosen = assign_splits([key(g) for g in free], val=val, test=test, seed=seed, what=by)
    out = [g if g.split is not None else replace(g, split=chosen[key(g)]) for g in groups]
    seen: dict[str, str | None] = {}
    for g in out:
        for k in {g.set, g.region}:
            if seen.setdefault(k, g.split) != g.split:
                raise DatasetError(
                    f"{k!r} has chips in splits {seen[k]!r} and {g.split!r}; neighbouring chips "
                    "leak: keep each set and region in one split"
                )
    return out


def summary(groups: Sequence[ChipGroup]) -> dict[str, dict[str, int]]:
    """Chip counts per split: mining, not mining, sets, regions."""
    out: dict[str, dict[str, int]] = {}
    for split in sorted({g.split or "none" for g in groups}):
        gs = [g for g in groups if (g.split or "none") == split]
        pos = sum(int(g.labels.sum()) for g in gs)
        out[split] = {"mining": pos, "not_mining": sum(len(g) for g in gs) - pos,
                      "sets": len({g.set for g in gs}), "regions": len({g.region for g in gs})}
    return out
