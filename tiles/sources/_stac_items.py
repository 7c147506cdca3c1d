"""STAC items of Sentinel-2: an item as a `SceneInfo` (its band assets, grid, CRS, processing
level and baseline) and the DN offset its COGs need."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from typing import Any

from affine import Affine
from rasterio.crs import CRS

from tiles.bands import BANDS, SCL
from tiles.errors import SceneFormatError
from tiles.radiometry import add_offset, format_baseline
from tiles.scene import SceneInfo

log = logging.getLogger(__name__)

#: Earth Search v1 asset keys (common names) of the Sentinel-2 bands.
EARTH_SEARCH_ASSETS: dict[str, str] = {
    "B01": "coastal",
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B05": "rededge1",
    "B06": "rededge2",
    "B07": "rededge3",
    "B08": "nir",
    "B8A": "nir08",
    "B09": "nir09",
    "B10": "cirrus",
    "B11": "swir16",
    "B12": "swir22",
    SCL: "scl",
}

#: Item properties kept in `SceneInfo.properties`.
KEPT_PROPERTIES = (
    "eo:cloud_cover", "s2:processing_baseline", "earthsearch:boa_offset_applied", "s2:product_uri",
    "s2:product_type", "processing:level", "s2:mgrs_tile", "grid:code", "mgrs:utm_zone",
    "mgrs:latitude_band", "mgrs:grid_square", "platform", "sat:relative_orbit", "updated",
)

_BASELINE_IN_ID = re.compile(r"_N(\d{2})(\d{2})_")


# --------------------------------------------------------------------------------------------
# public API


def item_to_scene_info(
    item: Mapping[str, Any], *, asset_keys: Mapping[str, str] | None = None
) -> SceneInfo:
    """The `SceneInfo` of a STAC item (Earth Search v1, Planetary Computer, or similar).

    Args:
        item: the item as a dict.
        asset_keys: band -> asset key overrides.

    Raises:
        SceneFormatError: no datetime, no reflectance asset, no CRS/grid, or no baseline.
    """
    item_id = str(item.get("id", "?"))
    props = dict(item.get("properties") or {})
    when_text = props.get("datetime") or props.get("start_datetime")
    if not when_text:
        raise SceneFormatError(f"item {item_id}: no datetime")
    when = parse_datetime(str(when_text))
    assets = dict(item.get("assets") or {})
    found: dict[str, dict[str, Any]] = {}
    for band in (*BANDS, SCL):
        key = _asset_key(band, assets, asset_keys or {})
        if key is None:
            continue
        asset = dict(assets[key])
        rb = (asset.get("raster:bands") or [{}])[0]
        entry: dict[str, Any] = {"href": asset["href"], "key": key}
        for name in ("file:size", "file:checksum", "proj:transform", "proj:shape"):
            if name in asset:
                entry[name] = asset[name]
        if "nodata" in rb:
            entry["nodata"] = rb["nodata"]
        found[band] = entry
    bands = tuple(b for b in BANDS if b in found)
    if not bands:
        raise SceneFormatError(
            f"item {item_id}: no Sentinel-2 band asset among {sorted(assets)}; expected keys such "
            f"as {EARTH_SEARCH_ASSETS['B02']!r} (Earth Search) or 'B02' (Planetary Computer)"
        )
    crs = _item_crs(props, item_id)
    finest = min(bands, key=lambda b: BANDS[b].resolution_m)
    grid = asset_grid(found[finest], None, props)
    if grid is None:
        raise SceneFormatError(
            f"item {item_id}: no proj:transform/proj:shape for {finest}; the projection "
            "extension is needed to place the scene"
        )
    transform, (height, width) = grid
    baseline = item_baseline(props, item_id=item_id)
    level = item_level(item)
    if level == "L1C" and SCL in found:
        log.debug("item %s: L1C with an SCL asset; SCL is ignored", item_id)
        del found[SCL]
    kept = {k: props[k] for k in KEPT_PROPERTIES if k in props}
    kept["processing_baseline"] = baseline
    kept["collection"] = item.get("collection")
    kept["bbox"] = item.get("bbox")
    return SceneInfo(
        scene_id=item_id,
        datetime=when,
        crs=crs,
        transform=transform,
        width=width,
        height=height,
        bands=bands,
        has_scl=SCL in found,
        processing_baseline=baseline,
        href=_self_href(item) or item_id,
        assets=found,
        properties=kept,
        processing_level=level,
    )


def item_level(item: Mapping[str, Any]) -> str:
    """``"L1C"`` or ``"L2A"``: from ``s2:product_type`` (``S2MSI1C``/``S2MSI2A``), else
    ``processing:level``, else the collection id (``...l1c...``); L2A when nothing says."""
    props = item.get("properties") or {}
    product = str(props.get("s2:product_type") or "").upper()
    if product in ("S2MSI1C", "S2MSI2A"):
        return "L1C" if product == "S2MSI1C" else "L2A"
    level = str(props.get("processing:level") or "").upper()
    if level in ("L1C", "L2A"):
        return level
    return "L1C" if "l1c" in str(item.get("collection") or "").lower() else "L2A"


def item_baseline(properties: Mapping[str, Any], *, item_id: str) -> str:
    """The processing baseline (``"MM.mm"``) an item states: ``s2:processing_baseline``, else
    ``sentinel:processing_baseline``, else the ``_Nxxxx_`` of its product id or item id.

    Raises:
        SceneFormatError: none of these is there.
    """
    for key in ("s2:processing_baseline", "sentinel:processing_baseline"):
        if properties.get(key):
            return format_baseline(str(properties[key]))
    for key in ("s2:product_uri", "sentinel:product_id", "s2:product_id"):
        match = _BASELINE_IN_ID.search(str(properties.get(key) or ""))
        if match:
            return f"{match.group(1)}.{match.group(2)}"
    match = _BASELINE_IN_ID.search(item_id)
    if match:
        return f"{match.group(1)}.{match.group(2)}"
    raise SceneFormatError(
        f"item {item_id}: no processing baseline (s2:processing_baseline or an _Nxxxx_ product "
        "id); the radiometric offset cannot be decided, so the scene is refused"
    )


def item_boa_offset(properties: Mapping[str, Any], *, scene_id: str, level: str = "L2A") -> float:
    """The DN offset to apply to an item's COG values (``-1000.0`` or ``0.0``):
    ``BOA_ADD_OFFSET`` for L2A, ``RADIO_ADD_OFFSET`` for L1C (same rule: from baseline 04.00).

    ``earthsearch:boa_offset_applied: true`` means the COG values already had it applied.

    Raises:
        SceneFormatError: the item states no processing baseline.
    """
    baseline = properties.get("processing_baseline") or item_baseline(properties, item_id=scene_id)
    if properties.get("earthsearch:boa_offset_applied") is True:
        return 0.0
    return add_offset(str(baseline), level=level)


# --------------------------------------------------------------------------------------------
# helpers


def _asset_key(band: str, assets: Mapping[str, Any], overrides: Mapping[str, str]) -> str | None:
    if band in overrides:
        return overrides[band] if overrides[band] in assets else None
    candidates = [band, EARTH_SEARCH_ASSETS.get(band, ""), band.lower()]
    if band.startswith("B0"):
        candidates.append("B" + band[2:])
    for key in candidates:
        if key and key in assets and _is_cog(assets[key]):
            return key
    return None


def _is_cog(asset: Mapping[str, Any]) -> bool:
    media = str(asset.get("type", "image/tiff"))
    href = str(asset.get("href", ""))
    return "tiff" in media or href.split("?", 1)[0].lower().endswith((".tif", ".tiff"))


def _item_crs(props: Mapping[str, Any], item_id: str) -> CRS:
    if props.get("proj:epsg"):
        return CRS.from_epsg(int(props["proj:epsg"]))
    if props.get("proj:code"):
        return CRS.from_user_input(str(props["proj:code"]))
    if props.get("proj:wkt2"):
        return CRS.from_wkt(str(props["proj:wkt2"]))
    raise SceneFormatError(
        f"item {item_id}: no proj:epsg / proj:code / proj:wkt2; the scene's CRS is unknown"
    )


def asset_grid(
    asset: Mapping[str, Any], info: SceneInfo | None, props: Mapping[str, Any] | None = None
) -> tuple[Affine, tuple[int, int]] | None:
    """``(transform, (height, width))`` of an asset from its projection fields."""
    tr = asset.get("proj:transform") or (props or {}).get("proj:transform")
    shape = asset.get("proj:shape") or (props or {}).get("proj:shape")
    if not tr or not shape:
        return None
    return Affine(*[float(v) for v in list(tr)[:6]]), (int(shape[0]), int(shape[1]))


def parse_datetime(text: str) -> dt.datetime:
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        when = dt.datetime.fromisoformat(iso)
    except ValueError as exc:
        raise SceneFormatError(f"datetime {text!r} is not ISO 8601") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)


def int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _self_href(item: Mapping[str, Any]) -> str | None:
    for link in item.get("links") or []:
        if link.get("rel") == "self" and link.get("href"):
            return str(link["href"])
    return None
