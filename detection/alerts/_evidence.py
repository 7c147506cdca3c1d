"""Evidence of an alert: before/after image chips from the period composites of a scan.

For each site the chips show the previous period (*before*) and the alert's period (*after*) as
true colour (B04, B03, B02) and SWIR false colour (B12, B08, B04: bare sediment and tailings
stand out magenta-pink against green forest, water is dark blue), with the site's
polygon drawn on top. Both sides of one site share one stretch, so a change of brightness is a
change on the ground, not of the display. The chips come from the unit composites a scan writes
(``<units_dir>/<period_label>/<tile_id>_<period_label>_composite.tif``: uint16 =
round(reflectance x 10000), nodata 0, band descriptions naming the bands, tags ``SCENE_IDS``,
``PERIOD_START``, ``PERIOD_END``).

The same composites give the review page its background (:func:`period_overlay`): a downsampled
true-colour mosaic of a period in Web Mercator.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo
from pyproj import CRS
from rasterio.warp import Resampling, reproject, transform_bounds

from aoi.geometry import utm_crs_for
from detection.errors import ConfigError, InputFormatError, InputReadError
from tiles.files import atomic_path
from tiles.periods import Period

log = logging.getLogger(__name__)

#: Paths an alert's ``evidence`` holds, relative to the run's output folder.
EVIDENCE_IMAGES: tuple[str, ...] = (
    "before_true_colour",
    "after_true_colour",
    "before_swir",
    "after_swir",
)

#: Band triplets (red, green, blue) of each rendering.
RENDERINGS: Mapping[str, tuple[str, str, str]] = {
    "true_colour": ("B04", "B03", "B02"),
    "swir": ("B12", "B08", "B04"),
}

#: Every band of the renderings, once, in order: the bands read into an evidence window.
_WINDOW_BANDS: tuple[str, ...] = tuple(dict.fromkeys(b for t in RENDERINGS.values() for b in t))

#: What each rendering is called in captions.
RENDERING_TITLES: Mapping[str, str] = {"true_colour": "true colour", "swir": "SWIR false colour"}

#: Lengths a scale bar may have, metres (the longest that fits in 40 % of the chip is drawn).
SCALE_BAR_STEPS_M: tuple[int, ...] = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)

#: Colour of the site outline drawn on every chip (RGB).
OUTLINE_RGB: tuple[int, int, int] = (255, 255, 0)
#: Colour of pixels with no clear observation (RGB).
NODATA_RGB: tuple[int, int, int] = (60, 60, 60)

_SCENE_DATE = re.compile(r"_(\d{8})T\d{6}")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")
_COMPOSITE_GLOB = "*_composite.tif"


@dataclass(frozen=True)
class _Composite:
    """One unit composite on disk: where it is, its grid and its provenance tags."""

    path: Path
    crs: CRS
    bounds: tuple[float, float, float, float]
    resolution_m: float
    bands: tuple[str, ...]
    scene_ids: tuple[str, ...]
    period_start: str
    period_end: str


@dataclass(frozen=True)
class Overlay:
    """A georeferenced image (``mime`` ``image/webp``, with alpha): ``bbox`` is
    ``(west, south, east, north)`` in lon/lat of the image's Web Mercator extent (what a Leaflet
    ``imageOverlay`` needs)."""

    image: bytes
    mime: str
    bbox: tuple[float, float, float, float]
    width: int
    height: int


@dataclass(frozen=True)
class _Window:
    """The square grid a site's chips are drawn on."""

    crs: CRS
    res: float  # metres per pixel
    n: int  # pixels per side
    scale: int  # enlargement of the PNGs
    transform: Affine
    site: shapely.Geometry  # the site, in ``crs``
    site_mask: np.ndarray  # the window's pixels in the site
    lonlat: shapely.Geometry  # the window's footprint, EPSG:4326


@dataclass(frozen=True)
class _Side:
    """One side of a window: every band read, where observed, the composites used."""

    data: np.ndarray
    valid: np.ndarray
    used: list[_Composite]


def write_evidence(
    alerts: gpd.GeoDataFrame,
    *,
    units_dir: Path,
    period: Period,
    previous_period: Period | None,
    out_dir: Path,
    chip_px: int = 256,
    margin_m: float = 200.0,
    min_extent_m: float = 800.0,
    scene_dates: Mapping[str, str] | None = None,
    composites: Mapping[str, Sequence[Path]] | None = None,
) -> gpd.GeoDataFrame:
    """Write before/after chips of every alert and fill its ``evidence`` column.

    Chips are PNGs under ``<out_dir>/evidence/<site_id>/``: ``before_true_colour.png``,
    ``after_true_colour.png``, ``before_swir.png``, ``after_swir.png``. Each is a square window
    around the site (its bounds plus ``margin_m``, at least ``min_extent_m`` wide) at the
    composites' resolution, mosaicked from every composite of the period that covers it (a site
    across chips or UTM zones included), enlarged by an integer factor to about ``chip_px``
    pixels (nearest neighbour: one Sentinel-2 pixel stays one visible block), with the site's
    outline drawn in :data:`OUTLINE_RGB`. Below the image a caption names the site, the side and
    its period, the acquisition dates of the images, the band combination, and draws a scale
    bar (:func:`captioned_png`); the same text is in the PNG's ``Title``/``Description`` text
    chunks. Beside each PNG a GeoTIFF of the same name (``.tif``) holds the same pixels at the
    composites' resolution, georeferenced (uint8 RGB, unobserved pixels masked), to lay over
    the alerts in a GIS. Files are written atomically.

    ``evidence`` becomes a dict (JSON-ready) with, for ``side`` in ``before``/``after``:

    * ``<side>_true_colour``, ``<side>_swir``: path relative to ``out_dir`` (POSIX ``/``), or
      ``None`` when no composite of that period covers the site (or no previous period);
    * ``<side>_period_start``, ``<side>_period_end``: the composite's period (from its tags);
    * ``<side>_observed_fraction``: share of the site's pixels with a clear observation;

    plus ``scenes``, the scenes in the composites used (tag ``SCENE_IDS``), each
    ``{"id", "date", "role"}`` (``role`` ``before`` or ``after``; ``date`` the acquisition date
    ``YYYY-MM-DD`` from ``scene_dates``, else from the id, else ``None``), before first, then by
    date and id; and ``bands`` (the band triplet of each rendering). Other keys already in
    ``evidence`` are kept.

    Args:
        alerts: one row per site with ``site_id`` and ``geometry`` (any CRS); other columns are
            kept. Call it on the final alerts table, before
            :func:`detection.alerts.build_feature_collection`.
        units_dir: the scan's ``units`` folder.
        period: the alerts' period (the *after* side).
        previous_period: the period compared against (the *before* side), or ``None``.
        out_dir: the run's output folder; chips go to ``out_dir/evidence``.
        chip_px: target chip size in pixels (the enlargement factor is an integer).
        margin_m: context around the site's bounds, metres.
        min_extent_m: smallest window side, metres.
        scene_dates: acquisition date (``YYYY-MM-DD``) by scene id (the scan's scene list), for
            ids :func:`scene_date` cannot read one from (a STAC item id such as
            ``S2B_21MVN_20240408_0_L2A``).
        composites: the composite files of each period (by label), as the units that wrote
            them report; default: every composite found under ``units_dir``.

    Returns:
        A copy of ``alerts`` with ``evidence`` filled.

    Raises:
        DetectionError: ``alerts`` has no CRS or lacks ``site_id``, a site geometry is empty,
            an option is out of range, or a composite cannot be read (the message names it).
    """
    _check_evidence_input(alerts, chip_px=chip_px, margin_m=margin_m, min_extent_m=min_extent_m)
    out = alerts.copy()
    if len(out) == 0:
        if "evidence" not in out.columns:
            out["evidence"] = []
        return out
    wgs84 = out.geometry.to_crs(4326)
    after = _index(units_dir, period, composites)
    before = _index(units_dir, previous_period, composites) if previous_period is not None else []
    if not after:
        log.warning(
            "write_evidence: no composite of period %s under %s; chips will be missing",
            period.label,
            units_dir,
        )
    old = out["evidence"].tolist() if "evidence" in out.columns else [None] * len(out)
    out["evidence"] = _render_sites(
        out["site_id"],
        wgs84,
        old,
        after=after,
        before=before,
        out_dir=out_dir,
        chip_px=chip_px,
        margin_m=margin_m,
        min_extent_m=min_extent_m,
        dates=scene_dates or {},
    )
    log.info("write_evidence: chips of %d alerts under %s", len(out), out_dir / "evidence")
    return out


def _render_sites(
    site_ids: Iterable[Any],
    geoms: Iterable[shapely.Geometry],
    previous: Iterable[Any],
    *,
    after: Sequence[_Composite],
    before: Sequence[_Composite],
    out_dir: Path,
    chip_px: int,
    margin_m: float,
    min_extent_m: float,
    dates: Mapping[str, str],
) -> list[dict[str, Any]]:
    """The evidence of each site (lon/lat geometry): its ``previous`` evidence keys updated
    with those of its chips, each composite opened once for all sites."""
    evidence: list[dict[str, Any]] = []
    with ExitStack() as stack:
        opened: dict[Path, Any] = {}

        def open_(path: Path) -> Any:
            if path not in opened:
                try:
                    opened[path] = stack.enter_context(rasterio.open(path))
                except rasterio.errors.RasterioIOError as exc:
                    raise InputReadError(f"write_evidence: composite {path}: {exc}") from exc
            return opened[path]

        for sid, geom, earlier in zip(site_ids, geoms, previous, strict=True):
            if geom is None or geom.is_empty:
                raise InputFormatError(f"write_evidence: alert {sid}: empty geometry")
            record: dict[str, Any] = dict(earlier) if isinstance(earlier, Mapping) else {}
            window = _window(
                geom, after, before, chip_px=chip_px, margin_m=margin_m, min_extent_m=min_extent_m
            )
            record.update(
                _site_evidence(
                    str(sid),
                    window,
                    after=after,
                    before=before,
                    out_dir=out_dir,
                    open_=open_,
                    dates=dates,
                )
            )
            evidence.append(record)
    return evidence


def _check_evidence_input(
    alerts: gpd.GeoDataFrame, *, chip_px: int, margin_m: float, min_extent_m: float
) -> None:
    """Raise for an option out of range, or ``alerts`` without a CRS or ``site_id``."""
    if chip_px < 16 or margin_m < 0 or min_extent_m <= 0:
        raise ConfigError(
            f"write_evidence: chip_px {chip_px!r} (>= 16), margin_m {margin_m!r} (>= 0), "
            f"min_extent_m {min_extent_m!r} (> 0) out of range"
        )
    if alerts.crs is None:
        raise InputFormatError("write_evidence: alerts have no CRS; set it (EPSG:4326 expected)")
    if "site_id" not in alerts.columns:
        raise InputFormatError(
            f"write_evidence: alerts lack 'site_id'; has {[str(c) for c in alerts.columns]}"
        )


def period_overlay(
    units_dir: Path,
    period: Period,
    *,
    max_px: int = 1600,
    rendering: str = "true_colour",
    composites: Mapping[str, Sequence[Path]] | None = None,
) -> Overlay | None:
    """A downsampled mosaic of a period's composites in Web Mercator, as a WebP image.

    Pixels with no observation are transparent; lossy WebP (quality 80) keeps a 1600 px mosaic
    of noisy imagery near 400 kB, a tenth of a PNG. The stretch is the 2-98 percentile of each band
    over the mosaic.

    Args:
        units_dir: the scan's ``units`` folder.
        period: the period to draw.
        max_px: the longer side of the image, pixels.
        rendering: a key of :data:`RENDERINGS`.
        composites: as :func:`write_evidence`'s.

    Returns:
        The overlay, or ``None`` when the period has no composite.

    Raises:
        DetectionError: ``rendering`` is unknown, ``max_px`` < 16, or a composite cannot be read.
    """
    if rendering not in RENDERINGS:
        raise ConfigError(f"period_overlay: rendering {rendering!r}; one of {list(RENDERINGS)}")
    if max_px < 16:
        raise ConfigError(f"period_overlay: max_px {max_px!r}; expected >= 16")
    found = _index(units_dir, period, composites)
    if not found:
        return None
    mercator = CRS.from_epsg(3857)
    boxes = np.array([transform_bounds(c.crs, mercator, *c.bounds) for c in found])
    left, bottom = boxes[:, 0].min(), boxes[:, 1].min()
    right, top = boxes[:, 2].max(), boxes[:, 3].max()
    res = max(right - left, top - bottom) / max_px
    width = max(1, math.ceil((right - left) / res))
    height = max(1, math.ceil((top - bottom) / res))
    transform = Affine(res, 0.0, left, 0.0, -res, top)
    bands = RENDERINGS[rendering]
    data = np.zeros((3, height, width), dtype=np.uint16)
    for comp in found:
        try:
            with rasterio.open(comp.path) as src:
                _warp_into(src, comp, bands, data, transform, mercator, Resampling.average)
        except rasterio.errors.RasterioIOError as exc:
            raise InputReadError(f"period_overlay: composite {comp.path}: {exc}") from exc
    valid: np.ndarray = np.asarray((data > 0).all(axis=0), dtype=bool)
    lo, hi = _stretch_limits([data], [valid])
    rgb = _to_rgb(data, valid, lo, hi)
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    image = Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA")
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=80)
    west, south, east, north = transform_bounds(
        mercator, CRS.from_epsg(4326), left, top - height * res, left + width * res, top
    )
    log.info(
        "period_overlay %s: %d composites -> %dx%d px (%.0f m/px)",
        period.label,
        len(found),
        width,
        height,
        res,
    )
    return Overlay(buffer.getvalue(), "image/webp", (west, south, east, north), width, height)


def scene_date(scene_id: str) -> str | None:
    """The acquisition date (``YYYY-MM-DD``) in a Sentinel-2 product or scene id, if any.

    ``S2B_MSIL2A_20240408T135538_N0510_R067_T21MVN_20240408T185244`` gives ``2024-04-08`` (the
    first ``YYYYMMDDTHHMMSS`` is the sensing time).
    """
    match = _SCENE_DATE.search(scene_id)
    if match is None:
        return None
    text = match.group(1)
    return f"{text[:4]}-{text[4:6]}-{text[6:]}"


# ------------------------------------------------------------------------------------ helpers


def _index(
    units_dir: Path, period: Period, composites: Mapping[str, Sequence[Path]] | None = None
) -> list[_Composite]:
    """The composites of ``period`` (``composites``' own, else those under ``units_dir``),
    skipping any tagged for another period."""
    folder = Path(units_dir) / period.label
    paths = (
        composites.get(period.label, ()) if composites is not None else folder.glob(_COMPOSITE_GLOB)
    )
    found: list[_Composite] = []
    for path in sorted(paths):
        try:
            with rasterio.open(path) as ds:
                tags = ds.tags()
                bands = tuple(str(d) for d in ds.descriptions)
                crs = CRS.from_user_input(ds.crs)
                b = ds.bounds
                bounds = (float(b.left), float(b.bottom), float(b.right), float(b.top))
                res = float(abs(ds.transform.a))
        except rasterio.errors.RasterioIOError as exc:
            raise InputReadError(f"evidence: composite {path}: {exc}") from exc
        start, end = tags.get("PERIOD_START", ""), tags.get("PERIOD_END", "")
        if (start, end) != (period.start.isoformat(), period.end.isoformat()):
            log.warning(
                "evidence: %s is tagged %s..%s, not period %s (%s..%s); skipped",
                path,
                start,
                end,
                period.label,
                period.start,
                period.end,
            )
            continue
        ids = tuple(s for s in tags.get("SCENE_IDS", "").split(",") if s)
        found.append(_Composite(path, crs, bounds, res, bands, ids, start, end))
    return found


def _window(
    geom: shapely.Geometry,
    after: Sequence[_Composite],
    before: Sequence[_Composite],
    *,
    chip_px: int,
    margin_m: float,
    min_extent_m: float,
) -> _Window:
    """The square grid around a site (lon/lat): the CRS and resolution of the first
    after-composite that covers the site, else of any composite, else the site's UTM zone at
    10 m; the site's bounds plus ``margin_m``, at least ``min_extent_m`` and 8 pixels wide; the
    PNGs enlarged by the integer factor nearest ``chip_px``."""
    candidates = list(_covering(after, geom)) or list(_covering(before, geom))
    if candidates:
        crs, res = candidates[0].crs, candidates[0].resolution_m
    else:
        crs, res = CRS.from_epsg(_utm_epsg(geom.centroid.x, geom.centroid.y)), 10.0
    site = gpd.GeoSeries([geom], crs=4326).to_crs(crs).iloc[0]
    minx, miny, maxx, maxy = site.bounds
    side = max(maxx - minx + 2 * margin_m, maxy - miny + 2 * margin_m, min_extent_m)
    n = max(8, math.ceil(side / res))
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    left, top = cx - n * res / 2, cy + n * res / 2
    transform = Affine(res, 0.0, left, 0.0, -res, top)
    lonlat = shapely.box(*transform_bounds(crs, CRS.from_epsg(4326), *_grid_bounds(transform, n)))
    scale = max(1, round(chip_px / n))
    return _Window(crs, res, n, scale, transform, site, _site_mask(site, transform, n), lonlat)


def _site_evidence(
    sid: str,
    window: _Window,
    *,
    after: Sequence[_Composite],
    before: Sequence[_Composite],
    out_dir: Path,
    open_: Any,
    dates: Mapping[str, str],
) -> dict[str, Any]:
    """Render the four chips of one site; the evidence keys of that site."""
    record: dict[str, Any] = {"bands": {k: ",".join(v) for k, v in RENDERINGS.items()}}
    sides: dict[str, _Side | None] = {}
    scenes: list[dict[str, str | None]] = []
    for name, index in (("after", after), ("before", before)):
        used = list(_covering(index, window.lonlat))
        scenes.extend(
            {"id": s, "date": dates.get(s) or scene_date(s), "role": name}
            for s in sorted({s for c in used for s in c.scene_ids})
        )
        record[f"{name}_period_start"] = used[0].period_start if used else None
        record[f"{name}_period_end"] = used[0].period_end if used else None
        if not used:
            sides[name] = None
            record[f"{name}_observed_fraction"] = 0.0
            continue
        side = _read_side(used, window, open_)
        sides[name] = side
        seen = side.valid[window.site_mask].mean() if window.site_mask.any() else 0.0
        record[f"{name}_observed_fraction"] = round(float(seen), 4)
    record["scenes"] = sorted(
        scenes, key=lambda e: (e["role"] != "before", e["date"] or "", e["id"] or "")
    )
    folder = out_dir / "evidence" / _SAFE_NAME.sub("_", sid)
    for rendering, triplet in RENDERINGS.items():
        idx = [_WINDOW_BANDS.index(b) for b in triplet]
        present = {k: v for k, v in sides.items() if v is not None}
        lo, hi = _stretch_limits(
            [v.data[idx] for v in present.values()], [v.valid for v in present.values()]
        )
        for name in ("before", "after"):
            key = f"{name}_{rendering}"
            side_data = sides.get(name)
            if side_data is None:
                record[key] = None
                continue
            rgb = _to_rgb(side_data.data[idx], side_data.valid, lo, hi)
            path = folder / f"{key}.png"
            _write_chip(
                path, rgb, side_data, window, sid=sid, side=name, rendering=rendering, dates=dates
            )
            record[key] = path.relative_to(out_dir).as_posix()
    return record


def _read_side(used: Sequence[_Composite], window: _Window, open_: Any) -> _Side:
    """One side's pixels in the window, mosaicked from the composites ``used``, in order."""
    data = np.zeros((len(_WINDOW_BANDS), window.n, window.n), dtype=np.uint16)
    for comp in used:
        src = open_(comp.path)
        _warp_into(src, comp, _WINDOW_BANDS, data, window.transform, window.crs, Resampling.nearest)
    valid: np.ndarray = np.asarray((data > 0).all(axis=0), dtype=bool)
    return _Side(data, valid, list(used))


def _write_chip(
    path: Path,
    rgb: np.ndarray,
    side_data: _Side,
    window: _Window,
    *,
    sid: str,
    side: str,
    rendering: str,
    dates: Mapping[str, str],
) -> None:
    """Write one chip: the captioned PNG (enlarged, the site outlined) and, beside it, the
    GeoTIFF of its pixels at the composites' resolution."""
    n, scale, valid = window.n, window.scale, side_data.valid
    image = Image.fromarray(rgb, mode="RGB").resize(
        (n * scale, n * scale), Image.Resampling.NEAREST
    )
    _draw_outline(image, window.site, window.transform, scale)
    used = side_data.used
    lines = caption_lines(
        sid,
        side,
        rendering,
        period_start=used[0].period_start,
        period_end=used[0].period_end,
        scene_ids=sorted({s for c in used for s in c.scene_ids}),
        scene_dates=dates,
    )
    with atomic_path(path) as tmp:
        tmp.write_bytes(captioned_png(image, lines, metres_per_px=window.res / scale))
    tags = {
        "SITE_ID": sid,
        "SIDE": side,
        "RENDERING": rendering,
        "PERIOD_START": used[0].period_start,
        "PERIOD_END": used[0].period_end,
        "SCENE_IDS": ",".join(sorted({s for c in used for s in c.scene_ids})),
        "CAPTION": " | ".join(lines),
    }
    bands = RENDERINGS[rendering]
    _write_rgb_geotiff(
        path.with_suffix(".tif"), rgb, valid, window.transform, window.crs, bands=bands, tags=tags
    )


def caption_lines(
    site_id: str,
    side: str,
    rendering: str,
    *,
    period_start: str | None,
    period_end: str | None,
    scene_ids: Sequence[str],
    scene_dates: Mapping[str, str] | None = None,
) -> list[str]:
    """The caption of one chip: site, side and period, image dates, band combination.

    Args:
        site_id: the alert's ``site_id``.
        side: ``before`` or ``after``.
        rendering: a key of :data:`RENDERINGS`.
        period_start, period_end: the composite's period (ISO dates).
        scene_ids: the scenes in the composite.
        scene_dates: their acquisition dates by id (the scan's scene list); an id not in it has
            its date read from the id.

    Returns:
        Lines of text (long ones are wrapped by :func:`captioned_png`).
    """
    known = scene_dates or {}
    dates = sorted({d for s in scene_ids if (d := known.get(s) or scene_date(s)) is not None})
    bands = RENDERINGS[rendering]
    count = f"{len(scene_ids)} scene{'s' if len(scene_ids) != 1 else ''}"
    return [
        f"site {site_id}",
        f"{side.upper()}: composite of {period_start}..{period_end}",
        f"images of {', '.join(dates) if dates else 'unknown dates'} ({count})",
        f"{RENDERING_TITLES.get(rendering, rendering)}: R {bands[0]}, G {bands[1]}, B {bands[2]}",
    ]


def captioned_png(image: Image.Image, lines: Sequence[str], *, metres_per_px: float) -> bytes:
    """``image`` with ``lines`` of text and a scale bar below it, as PNG bytes.

    The scale bar is the longest of :data:`SCALE_BAR_STEPS_M` that fits in 40 % of the image's
    width, drawn black, labelled in m or km. The text also goes into the PNG's ``Title`` (first
    line) and ``Description`` chunks, with ``scale_bar_m`` and ``metres_per_pixel``. The same
    inputs give the same bytes.

    Args:
        image: the chip (RGB).
        lines: caption text; lines wider than the image are wrapped at spaces.
        metres_per_px: ground size of one pixel of ``image``, metres.

    Raises:
        DetectionError: ``metres_per_px`` is not positive.
    """
    if not metres_per_px > 0:
        raise ConfigError(f"captioned_png: metres_per_px {metres_per_px!r}; expected > 0")
    font = ImageFont.load_default()
    wrapped = [part for line in lines for part in _wrap(line, font, image.width - 8)]
    line_h, bar_h = 14, 16
    text_bottom = image.height + 3 + line_h * len(wrapped)
    canvas = Image.new("RGB", (image.width, text_bottom + bar_h + 4), "white")
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(wrapped):
        draw.text((4, image.height + 3 + i * line_h), text, fill=(0, 0, 0), font=font)
    fits = [m for m in SCALE_BAR_STEPS_M if m / metres_per_px <= 0.4 * image.width]
    bar_m = fits[-1] if fits else SCALE_BAR_STEPS_M[0]
    bar_px = max(1, round(bar_m / metres_per_px))
    top = text_bottom + 4
    draw.rectangle((4, top + 4, 4 + bar_px - 1, top + 8), fill=(0, 0, 0))
    for x in (4, 4 + bar_px - 1):  # end ticks
        draw.line((x, top, x, top + 8), fill=(0, 0, 0))
    label = f"{bar_m // 1000} km" if bar_m >= 1000 else f"{bar_m} m"
    draw.text((4 + bar_px + 6, top), label, fill=(0, 0, 0), font=font)
    info = PngInfo()
    info.add_text("Title", lines[0] if lines else "")
    info.add_text("Description", "\n".join(lines))
    info.add_text("Software", "minewatch")
    info.add_text("scale_bar_m", str(bar_m))
    info.add_text("metres_per_pixel", f"{metres_per_px:g}")
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _wrap(text: str, font: Any, width: float) -> list[str]:
    """``text`` split at spaces into lines no wider than ``width`` (a longer word stays whole)."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        trial = f"{current} {word}" if current else word
        if current and font.getlength(trial) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    return [*lines, current]


def _write_rgb_geotiff(
    path: Path,
    rgb: np.ndarray,
    valid: np.ndarray,
    transform: Affine,
    crs: CRS,
    *,
    bands: Sequence[str],
    tags: Mapping[str, str | None],
) -> None:
    """Write ``(H, W, 3)`` uint8 RGB as a georeferenced GeoTIFF, atomically: band descriptions
    name the Sentinel-2 band behind each channel, pixels outside ``valid`` are masked."""
    profile = {
        "driver": "GTiff",
        "width": rgb.shape[1],
        "height": rgb.shape[0],
        "count": 3,
        "dtype": "uint8",
        "crs": crs,
        "transform": transform,
        "photometric": "RGB",
        "compress": "deflate",
    }
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        atomic_path(path) as tmp,
        rasterio.open(tmp, "w", **profile) as dst,  # closed before the rename
    ):
        dst.write(np.moveaxis(rgb, -1, 0))
        dst.write_mask(np.where(valid, 255, 0).astype(np.uint8))
        dst.descriptions = tuple(bands)
        dst.update_tags(**{k: v for k, v in tags.items() if v is not None})


def _covering(index: Sequence[_Composite], geom: shapely.Geometry) -> Iterator[_Composite]:
    """The composites whose footprint intersects ``geom`` (lon/lat)."""
    for comp in index:
        footprint = shapely.box(*transform_bounds(comp.crs, CRS.from_epsg(4326), *comp.bounds))
        if footprint.intersects(geom):
            yield comp


def _grid_bounds(transform: Affine, n: int) -> tuple[float, float, float, float]:
    left, top = transform.c, transform.f
    return left, top + transform.e * n, left + transform.a * n, top


def _warp_into(
    src: Any,
    comp: _Composite,
    bands: Sequence[str],
    dest: np.ndarray,
    transform: Affine,
    crs: CRS,
    resampling: Resampling,
) -> None:
    """Warp ``bands`` of one composite into ``dest`` (uint16, reflectance x 10000, 0 = no
    data) where ``dest`` is still empty. uint16 composites are taken as they are; float
    composites as reflectance (NaN or their nodata = no data)."""
    missing = [b for b in bands if b not in comp.bands]
    if missing:
        raise InputFormatError(
            f"evidence: composite {comp.path} lacks bands {missing}; has {list(comp.bands)}"
        )
    floating = np.dtype(src.dtypes[0]).kind == "f"
    layers = np.zeros(dest.shape, dtype=np.float32)
    reproject(
        source=rasterio.band(src, [comp.bands.index(b) + 1 for b in bands]),
        destination=layers,
        src_nodata=src.nodata if src.nodata is not None else (np.nan if floating else 0),
        dst_nodata=0,
        dst_transform=transform,
        dst_crs=crs,
        resampling=resampling,
    )
    layers = np.nan_to_num(layers, nan=0.0)
    if floating:  # float32 reflectance composites: to the uint16 scale of the scan's
        layers = np.where(layers > 0, np.maximum(layers * 10000.0, 1.0), 0.0)
    scaled = np.clip(np.rint(layers), 0, 65535).astype(np.uint16)
    empty = dest == 0
    dest[empty] = scaled[empty]


def _stretch_limits(
    stacks: Sequence[np.ndarray], masks: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band 2nd and 98th percentiles over the valid pixels of every stack (shared stretch)."""
    values = [s[:, m] for s, m in zip(stacks, masks, strict=True) if m.any()]
    if not values:
        return np.zeros(3), np.full(3, 3000.0)
    joined = np.concatenate(values, axis=1).astype(np.float64)
    lo = np.percentile(joined, 2, axis=1)
    hi = np.percentile(joined, 98, axis=1)
    hi = np.where(hi - lo < 1.0, lo + 1.0, hi)
    return lo, hi


def _to_rgb(data: np.ndarray, valid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` scaled reflectance -> ``(H, W, 3)`` uint8 RGB; invalid pixels grey."""
    scaled = (data.astype(np.float64) - lo[:, None, None]) / (hi - lo)[:, None, None]
    rgb = (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    rgb = np.moveaxis(rgb, 0, -1).copy()
    rgb[~valid] = NODATA_RGB
    return rgb


def _pixel_rings(geom: shapely.Geometry, transform: Affine, scale: int) -> list[list[tuple]]:
    inverse = ~transform
    rings = []
    for polygon in getattr(geom, "geoms", [geom]):
        if polygon.geom_type != "Polygon":
            continue
        for ring in (polygon.exterior, *polygon.interiors):
            pts = []
            for x, y in ring.coords:
                col, row = inverse * (x, y)
                pts.append((col * scale, row * scale))
            rings.append(pts)
    return rings


def _draw_outline(
    image: Image.Image, geom: shapely.Geometry, transform: Affine, scale: int
) -> None:
    draw = ImageDraw.Draw(image)
    width = 2 if image.width >= 128 else 1
    for pts in _pixel_rings(geom, transform, scale):
        draw.line(pts, fill=OUTLINE_RGB, width=width, joint="curve")


def _site_mask(geom: shapely.Geometry, transform: Affine, n: int) -> np.ndarray:
    """Pixels of the ``n`` x ``n`` window whose centre lies in the site (touched ones for a site
    smaller than a pixel)."""
    from rasterio.features import geometry_mask

    inside = ~geometry_mask([geom], out_shape=(n, n), transform=transform, all_touched=False)
    if inside.any():
        return inside
    return ~geometry_mask([geom], out_shape=(n, n), transform=transform, all_touched=True)


def _utm_epsg(lon: float, lat: float) -> int:
    return int(utm_crs_for(lon, lat).to_epsg())
