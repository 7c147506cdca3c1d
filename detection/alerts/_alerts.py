"""The alert contract (DESIGN.md section 6): a site table -> an RFC 7946 FeatureCollection.

One Feature per site, ``id`` = ``site_id``, the properties of :data:`ALERT_PROPERTIES` in that
order, WGS 84 lon/lat coordinates rounded to 7 decimals, polygons wound by the right-hand rule
(counter-clockwise exteriors, clockwise holes), no ``crs`` member, and the run metadata in the
foreign member ``minewatch``. Features are sorted by ``site_id`` and numbers rounded to fixed
decimals, so the same alerts and metadata always give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from detection.alerts._evidence import scene_date
from detection.errors import ConfigError, InputFormatError
from detection.sites import LEGAL_STATUSES, STATUSES
from detection.values import iso_date, present
from models.detector import ALERT_CLASSES, ModelInfo
from tiles.periods import Period

log = logging.getLogger(__name__)

#: Properties of every alert Feature, in order (DESIGN.md section 6).
ALERT_PROPERTIES: tuple[str, ...] = (
    "site_id", "alert_class", "status", "area_ha", "area_change_ha", "confidence",
    "confidence_level", "first_detected", "last_detected", "first_image_date", "last_image_date",
    "period_start", "period_end", "observed_fraction", "lon", "lat", "aoi_id", "aoi_name",
    "aoi_kind", "aoi_relation", "distance_to_boundary_m", "aoi_area_ha", "aoi_areas",
    "municipality", "state", "municipalities", "legal_status", "legal", "satellite", "platforms",
    "sensor", "processing_level", "tile_id", "scene_ids", "evidence", "review_status",
)

#: Columns the alerts table must have; the other properties have defaults or are derived.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "site_id", "alert_class", "status", "area_ha", "area_change_ha", "confidence", "first_detected",
    "last_detected", "observed_fraction", "aoi_id", "aoi_name", "aoi_kind", "aoi_relation",
    "distance_to_boundary_m", "tile_id", "scene_ids",
)

#: The words of ``confidence_level``, lowest band first; each is also the key of its threshold in
#: the run metadata's ``confidence_levels`` (and the scan config's ``alerts.confidence_levels``):
#: ``probable`` from the detection threshold (0.5), ``likely`` from 0.7, ``very_likely`` from 0.9
#: by default. Chosen not to collide with GFW's ``nominal`` / ``high`` / ``highest``, which count
#: agreeing alert systems rather than bound a probability. The one place that owns them: the
#: QGIS style, the review page and the docs follow this tuple.
CONFIDENCE_LEVELS: tuple[str, ...] = ("probable", "likely", "very_likely")
#: Words (and threshold keys) of alert format 1.x, read and translated.
LEGACY_CONFIDENCE_LEVELS: Mapping[str, str] = MappingProxyType(
    {"low": "probable", "high": "likely", "highest": "very_likely"}
)
AOI_RELATIONS: tuple[str, ...] = ("inside", "buffer")
REVIEW_STATUSES: tuple[str, ...] = ("unreviewed", "confirmed", "rejected")

#: Keys of ``metadata`` for :func:`build_feature_collection`; all required.
METADATA_KEYS: tuple[str, ...] = (
    "version", "run_id", "generated_at", "period", "previous_period", "model", "source",
    "confidence_levels",
)

#: Keys of ``metadata`` a scan adds when they apply (RELIABILITY.md): ``outcome`` (``success``,
#: ``partial`` or ``failed``), ``unobserved_periods`` (labels of periods in which no chip was
#: observed), ``failed_units`` and ``dropped_scenes`` (counts).
OPTIONAL_METADATA_KEYS: tuple[str, ...] = (
    "outcome",
    "unobserved_periods",
    "failed_units",
    "dropped_scenes",
)
OUTCOMES: tuple[str, ...] = ("success", "partial", "failed")

#: Decimals kept in the output: areas to 1 m2, probabilities to 1e-4, distances to 0.1 m,
#: the centroid to 1e-6 degrees (about 0.1 m).
DECIMALS: Mapping[str, int] = MappingProxyType(
    {
        "area_ha": 4,
        "area_change_ha": 4,
        "aoi_area_ha": 4,
        "confidence": 4,
        "observed_fraction": 4,
        "distance_to_boundary_m": 1,
        "lon": 6,
        "lat": 6,
    }
)
#: The source of every alert: Sentinel-2's MultiSpectral Instrument (every source of this
#: minewatch reads Sentinel-2 bands; the synthetic world simulates them).
SATELLITE = "Sentinel-2"
SENSOR = "MSI"
_PLATFORM = re.compile(r"^(S2[A-D])_")
_LEVEL = re.compile(r"(?:MSI|_)(L1C|L2A)(?:_|$)")
COORDINATE_DECIMALS = 7


def confidence_level(value: float, thresholds: Mapping[str, float]) -> str:
    """The word of a confidence: the highest band of :data:`CONFIDENCE_LEVELS` whose threshold
    ``value`` reaches (``very_likely`` at or above ``thresholds["very_likely"]``, ``likely`` at or
    above ``thresholds["likely"]``, else ``probable``).

    ``thresholds["probable"]`` is the detection threshold (alerts below it are not expected); it
    is recorded with the others in the run metadata. Thresholds keyed by the words of format 1.x
    (``low`` / ``high`` / ``highest``) are read as the same bands.

    Raises:
        DetectionError: ``value`` is not a number in 0..1, or ``thresholds`` is not one
            threshold per word, ``0 <= probable <= likely <= very_likely <= 1``.
    """
    t = _check_thresholds(thresholds)
    if not isinstance(value, (int, float, np.number)) or not (0.0 <= float(value) <= 1.0):
        raise InputFormatError(f"confidence {value!r}: expected a number in 0..1")
    for word in reversed(CONFIDENCE_LEVELS[1:]):
        if value >= t[word]:
            return word
    return CONFIDENCE_LEVELS[0]


def site_locations(geoms: Any) -> list[tuple[float, float]]:
    """``(lon, lat)`` of each site (EPSG:4326 geometries), rounded to 6 decimals: its centroid,
    or, where the centroid falls outside the site (a ring, a crescent, parts apart), the point
    on its surface, so the point always lies on the site."""
    arr = np.asarray(list(geoms), dtype=object)
    if len(arr) == 0:
        return []
    points = shapely.centroid(arr)
    off = ~shapely.covers(arr, points)
    if off.any():
        points[off] = shapely.point_on_surface(arr[off])
    xs = np.round(shapely.get_x(points), DECIMALS["lon"]) + 0.0
    ys = np.round(shapely.get_y(points), DECIMALS["lat"]) + 0.0
    return [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]


def platforms_of(scene_ids: Any) -> list[str]:
    """The Sentinel-2 units (``S2A``, ``S2B``, ``S2C``...) named by scene ids, sorted."""
    return sorted({m.group(1) for s in scene_ids if (m := _PLATFORM.match(str(s)))})


def level_of(scene_ids: Any) -> str | None:
    """The processing level (``L2A`` / ``L1C``) named by scene ids, if they name one."""
    levels = {m.group(1) for s in scene_ids if (m := _LEVEL.search(str(s)))}
    return levels.pop() if len(levels) == 1 else None


def build_feature_collection(alerts: gpd.GeoDataFrame, *, metadata: Mapping[str, Any]) -> dict:
    """Build the alert FeatureCollection of a run.

    Args:
        alerts: one row per site with the columns of :data:`REQUIRED_COLUMNS`; optional
            ``period_start`` / ``period_end`` (default: the run's period), ``evidence`` (a dict,
            default ``{}``), ``review_status`` (default ``unreviewed``). ``confidence_level`` is
            always recomputed from ``confidence`` and the thresholds. Any CRS (reprojected to
            ``EPSG:4326``).
        metadata: every key of :data:`METADATA_KEYS`: ``version``, ``run_id`` (strings),
            ``generated_at`` (timezone-aware datetime or RFC 3339 string), ``period`` and
            ``previous_period`` (:class:`~tiles.periods.Period`, a ``{"start", "end"}`` mapping, or
            ``None`` for ``previous_period``), ``model`` (:class:`~models.detector.ModelInfo` or a
            ``{"name", "version", "sha256"}`` mapping), ``source`` (string) and
            ``confidence_levels`` (one threshold per word of :data:`CONFIDENCE_LEVELS`).

    Returns:
        A JSON-ready dict: ``type``, ``minewatch`` (the metadata, normalised), ``features``.

    Raises:
        DetectionError: a metadata key is missing, unknown or malformed; a column is missing; a
            value is missing, NaN or out of its domain (the message names the site and property);
            a site id repeats; a geometry is empty or not polygonal; the table has no CRS.
    """
    meta = normalise_metadata(metadata)
    thresholds = meta["confidence_levels"]
    if len(alerts) == 0:
        features: list[dict[str, Any]] = []
    else:
        if alerts.crs is None:
            raise InputFormatError("alerts: table has no CRS; set it (EPSG:4326 expected)")
        if CRS.from_user_input(alerts.crs) != CRS.from_epsg(4326):
            log.debug("alerts: reprojecting from %s to EPSG:4326", alerts.crs)
            alerts = alerts.to_crs(4326)
        records = alert_records(alerts, thresholds=thresholds, period=meta["period"])
        features = []
        for record, geom in zip(records, _sorted_geometries(alerts), strict=True):
            features.append(
                {
                    "type": "Feature",
                    "id": record["site_id"],
                    "geometry": _geojson_geometry(geom, record["site_id"]),
                    "properties": record,
                }
            )
    log.info("alerts: %d features for period %s", len(features), meta["period"])
    return {"type": "FeatureCollection", "minewatch": meta, "features": features}


def alert_records(
    alerts: pd.DataFrame,
    *,
    thresholds: Mapping[str, float] | None = None,
    period: Mapping[str, str] | Period | None = None,
) -> list[dict[str, Any]]:
    """The validated properties of each alert, sorted by ``site_id``, keys in
    :data:`ALERT_PROPERTIES` order.

    Args:
        alerts: the alerts table (see :func:`build_feature_collection`).
        thresholds: confidence thresholds; ``None`` takes ``confidence_level`` from its column.
        period: fills ``period_start`` / ``period_end`` where the table has no such column;
            ``None`` leaves them ``None`` there.

    Raises:
        DetectionError: as :func:`build_feature_collection`.
    """
    _require_alert_columns(alerts, thresholds)
    span = _period_dict(period, "period") if period is not None else None
    ids = _unique_ids(alerts)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    table = alerts.reset_index(drop=True)
    locations = _locations(table, ids)
    # Columns a table may lack, read once (a pandas row lookup per site is slow).
    optional = {c: table[c].tolist() for c in _OPTIONAL_COLUMNS if c in table.columns}
    records = []
    for i in order:
        row = table.iloc[i]
        sid = ids[i]
        extra = {c: values[i] for c, values in optional.items()}
        rec: dict[str, Any] = {"site_id": sid}
        rec |= _detection_fields(row, sid, thresholds)
        rec |= _image_dates(extra, rec["scene_ids"], sid)
        for key in ("period_start", "period_end"):
            if key in table.columns and present(row[key]):
                rec[key] = _date(row[key], key, sid)
            else:
                rec[key] = None if span is None else span[key.removeprefix("period_")]
        rec["observed_fraction"] = _number(
            row["observed_fraction"], "observed_fraction", sid, lo=0.0, hi=1.0
        )
        rec |= _aoi_fields(row, sid)
        rec["lon"], rec["lat"] = locations[i]
        rec |= _places(extra, rec["aoi_id"], sid)
        rec |= _legal_fields(row, sid)
        rec |= _source_fields(extra, rec["scene_ids"], sid)
        rec["tile_id"] = _string(row["tile_id"], "tile_id", sid)
        rec["evidence"] = _object(row["evidence"] if "evidence" in table.columns else None, sid)
        review = row["review_status"] if "review_status" in table.columns else None
        rec["review_status"] = (
            _choice(review, "review_status", sid, REVIEW_STATUSES)
            if present(review)
            else "unreviewed"
        )
        records.append({key: rec[key] for key in ALERT_PROPERTIES})
    return records


def _require_alert_columns(alerts: pd.DataFrame, thresholds: Mapping[str, float] | None) -> None:
    """Raise when a required column is missing (``confidence_level`` too without thresholds)."""
    columns = (
        REQUIRED_COLUMNS if thresholds is not None else (*REQUIRED_COLUMNS, "confidence_level")
    )
    missing = [c for c in columns if c not in alerts.columns]
    if missing:
        raise InputFormatError(
            f"alerts: missing columns {missing}; has {[str(c) for c in alerts.columns]}"
        )


def _unique_ids(alerts: pd.DataFrame) -> list[str]:
    """The ``site_id`` of each row; raise when one is not a string or appears twice."""
    ids = [_string(v, "site_id", "?") for v in alerts["site_id"]]
    seen: set[str] = set()
    for sid in ids:
        if sid in seen:
            raise InputFormatError(f"alerts: site_id {sid!r} appears twice; one row per site")
        seen.add(sid)
    return ids


def _detection_fields(
    row: pd.Series, sid: str, thresholds: Mapping[str, float] | None
) -> dict[str, Any]:
    """Class, status, area, confidence (and its level: from ``thresholds``, else the row's,
    1.x words translated), detection dates and scene ids of one alert."""
    rec: dict[str, Any] = {}
    rec["alert_class"] = _choice(row["alert_class"], "alert_class", sid, ALERT_CLASSES)
    rec["status"] = _choice(row["status"], "status", sid, STATUSES)
    rec["area_ha"] = _number(row["area_ha"], "area_ha", sid, lo=0.0)
    rec["area_change_ha"] = _number(row["area_change_ha"], "area_change_ha", sid)
    rec["confidence"] = _number(row["confidence"], "confidence", sid, lo=0.0, hi=1.0)
    if thresholds is not None:
        rec["confidence_level"] = confidence_level(rec["confidence"], thresholds)
    else:
        word = row["confidence_level"]
        rec["confidence_level"] = _choice(
            LEGACY_CONFIDENCE_LEVELS.get(word, word), "confidence_level", sid, CONFIDENCE_LEVELS
        )
    rec["first_detected"] = _date(row["first_detected"], "first_detected", sid)
    rec["last_detected"] = _date(row["last_detected"], "last_detected", sid)
    rec["scene_ids"] = _string_list(row["scene_ids"], "scene_ids", sid)
    return rec


def _aoi_fields(row: pd.Series, sid: str) -> dict[str, Any]:
    """The AOI an alert lies in or near, and how far from its boundary."""
    return {
        "aoi_id": _string(row["aoi_id"], "aoi_id", sid),
        "aoi_name": _string(row["aoi_name"], "aoi_name", sid),
        "aoi_kind": _string(row["aoi_kind"], "aoi_kind", sid),
        "aoi_relation": _choice(row["aoi_relation"], "aoi_relation", sid, AOI_RELATIONS),
        "distance_to_boundary_m": _number(
            row["distance_to_boundary_m"], "distance_to_boundary_m", sid, lo=0.0
        ),
    }


def _legal_fields(row: pd.Series, sid: str) -> dict[str, Any]:
    """``legal_status`` (``unknown`` when absent) and ``legal`` of one alert."""
    status = row["legal_status"] if "legal_status" in row.index else None
    return {
        "legal_status": (
            _choice(status, "legal_status", sid, LEGAL_STATUSES) if present(status) else "unknown"
        ),
        "legal": _object(row["legal"] if "legal" in row.index else None, sid, prop="legal"),
    }


def _source_fields(row: Mapping[str, Any], scene_ids: list[str], sid: str) -> dict[str, Any]:
    """Satellite, platforms, sensor and processing level (its column, else from the scene ids)."""
    level = row.get("processing_level")
    return {
        "satellite": SATELLITE,
        "platforms": platforms_of(scene_ids),
        "sensor": SENSOR,
        "processing_level": (
            _string(level, "processing_level", sid) if present(level) else level_of(scene_ids)
        ),
    }


def _locations(table: pd.DataFrame, ids: list[str]) -> list[tuple[float, float]]:
    """``(lon, lat)`` of each row: its ``lon`` / ``lat`` columns, else from its geometry."""
    if "lon" in table.columns and "lat" in table.columns:
        return [
            (_number(x, "lon", sid, lo=-180.0, hi=180.0), _number(y, "lat", sid, lo=-90.0, hi=90.0))
            for x, y, sid in zip(table["lon"], table["lat"], ids, strict=True)
        ]
    if not isinstance(table, gpd.GeoDataFrame) or table.crs is None:
        raise InputFormatError(
            "alerts: no lon/lat columns and no geometry with a CRS to place the sites; "
            "pass the GeoDataFrame (EPSG:4326) or add lon and lat"
        )
    geoms = table.geometry.to_crs(4326) if table.crs != CRS.from_epsg(4326) else table.geometry
    for geom, sid in zip(geoms, ids, strict=True):
        if geom is None or geom.is_empty:
            raise InputFormatError(f"alert {sid}: empty geometry")
    return site_locations(geoms)


#: Columns of the alerts table read when present (a scan writes them all).
_OPTIONAL_COLUMNS: tuple[str, ...] = (
    "first_image_date", "last_image_date", "aoi_areas", "municipality", "state", "municipalities",
    "processing_level",
)


def _image_dates(row: Mapping[str, Any], scene_ids: list[str], sid: str) -> dict[str, str | None]:
    """``first_image_date`` / ``last_image_date`` from their columns, else the earliest and
    latest acquisition named by ``scene_ids``; ``None`` when neither says (no scene)."""
    dates = sorted(d for s in scene_ids if (d := scene_date(s)) is not None)
    out: dict[str, str | None] = {}
    for key, fallback in (
        ("first_image_date", dates[0] if dates else None),
        ("last_image_date", dates[-1] if dates else None),
    ):
        value = row.get(key)
        out[key] = _date(value, key, sid) if present(value) else fallback
    first, last = out["first_image_date"], out["last_image_date"]
    if first is not None and last is not None and first > last:
        raise InputFormatError(
            f"alert {sid}: first_image_date {first} is after last_image_date {last}"
        )
    return out


def _places(row: Mapping[str, Any], aoi_id: str, sid: str) -> dict[str, Any]:
    """``aoi_area_ha`` / ``aoi_areas`` and ``municipality`` / ``state`` / ``municipalities``
    (:func:`detection.sites.attribute_aois`, :func:`detection.admin.assign_admin`)."""
    areas = _object_list(row.get("aoi_areas"), "aoi_areas", sid, ("aoi_id", "aoi_name"))
    inside = [a["area_ha"] for a in areas if a["aoi_id"] == aoi_id]
    out: dict[str, Any] = {
        "aoi_area_ha": inside[0] if inside else (0.0 if "aoi_areas" in row else None),
        "aoi_areas": areas,
    }
    for key in ("municipality", "state"):
        value = row.get(key)
        out[key] = str(value) if present(value) and str(value) else None
    out["municipalities"] = _object_list(
        row.get("municipalities"), "municipalities", sid, ("municipality", "state")
    )
    return out


def _object_list(value: Any, prop: str, sid: str, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """A list of ``{<names>..., "area_ha"}`` objects (JSON text accepted); ``[]`` when absent."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InputFormatError(f"alert {sid}: {prop} {value!r} is not a JSON list") from exc
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise InputFormatError(f"alert {sid}: {prop} {value!r}; expected a list of objects")
    out = []
    for item in value:
        if not isinstance(item, Mapping) or not {*names, "area_ha"} <= set(item):
            raise InputFormatError(
                f"alert {sid}: {prop} item {item!r}; expected keys {[*names, 'area_ha']}"
            )
        entry: dict[str, Any] = {k: None if item[k] is None else str(item[k]) for k in names}
        entry["area_ha"] = _number(item["area_ha"], "aoi_area_ha", sid, lo=0.0)
        out.append(entry)
    return out


def normalise_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The ``minewatch`` foreign member from run metadata (see :func:`build_feature_collection`).

    Raises:
        DetectionError: a key is missing, unknown, or malformed.
    """
    missing = [k for k in METADATA_KEYS if k not in metadata]
    unknown = sorted(set(metadata) - set(METADATA_KEYS) - set(OPTIONAL_METADATA_KEYS))
    if missing or unknown:
        raise InputFormatError(
            f"alert metadata: missing keys {missing}, unknown keys {unknown}; "
            f"expected {list(METADATA_KEYS)} and optionally {list(OPTIONAL_METADATA_KEYS)}"
        )
    out: dict[str, Any] = {}
    for key in ("version", "run_id", "source"):
        value = metadata[key]
        if not isinstance(value, str) or not value:
            raise InputFormatError(f"alert metadata: {key} {value!r}; expected a non-empty string")
        out[key] = value
    out["generated_at"] = _rfc3339(metadata["generated_at"])
    out["period"] = _period_dict(metadata["period"], "period")
    previous = metadata["previous_period"]
    out["previous_period"] = None if previous is None else _period_dict(previous, "previous_period")
    out["model"] = _model_dict(metadata["model"])
    out["source"] = metadata["source"]
    out["confidence_levels"] = _check_thresholds(metadata["confidence_levels"])
    order = (
        "version", "run_id", "generated_at", "period", "previous_period", "model", "source",
        "confidence_levels",
    )
    result = {key: out[key] for key in order}
    if "outcome" in metadata:
        if metadata["outcome"] not in OUTCOMES:
            raise InputFormatError(
                f"alert metadata: outcome {metadata['outcome']!r}; expected one of {list(OUTCOMES)}"
            )
        result["outcome"] = metadata["outcome"]
    if "unobserved_periods" in metadata:
        result["unobserved_periods"] = [str(v) for v in metadata["unobserved_periods"]]
    for key in ("failed_units", "dropped_scenes"):
        if key in metadata:
            result[key] = int(metadata[key])
    return result


# ------------------------------------------------------------------------------------ helpers


def _sorted_geometries(alerts: gpd.GeoDataFrame) -> list[Any]:
    ids = [str(v) for v in alerts["site_id"]]
    geoms = alerts.geometry.to_numpy()
    return [geoms[i] for i in sorted(range(len(ids)), key=ids.__getitem__)]


def _geojson_geometry(geom: Any, sid: str) -> dict[str, Any]:
    """RFC 7946 geometry: snapped to 1e-7 degrees, valid, right-hand rule, rounded."""
    if geom is None or geom.is_empty:
        raise InputFormatError(f"alert {sid}: empty geometry")
    snapped = shapely.set_precision(geom, 10.0**-COORDINATE_DECIMALS)
    if snapped.is_empty:
        raise InputFormatError(f"alert {sid}: geometry collapses at 1e-7 degrees (too small)")
    if snapped.geom_type not in ("Polygon", "MultiPolygon"):
        polygons = [g for g in getattr(snapped, "geoms", []) if g.geom_type == "Polygon"]
        if not polygons:
            raise InputFormatError(
                f"alert {sid}: geometry type {geom.geom_type}; expected Polygon or MultiPolygon"
            )
        snapped = polygons[0] if len(polygons) == 1 else shapely.MultiPolygon(polygons)
    oriented = shapely.orient_polygons(snapped, exterior_cw=False)

    def ring(coords: Any) -> list[list[float]]:
        return [
            [round(float(x), COORDINATE_DECIMALS) + 0.0, round(float(y), COORDINATE_DECIMALS) + 0.0]
            for x, y, *_ in coords
        ]

    def polygon(p: shapely.Polygon) -> list[list[list[float]]]:
        return [ring(p.exterior.coords), *(ring(h.coords) for h in p.interiors)]

    if oriented.geom_type == "Polygon":
        return {"type": "Polygon", "coordinates": polygon(oriented)}
    return {"type": "MultiPolygon", "coordinates": [polygon(p) for p in oriented.geoms]}


def _check_thresholds(thresholds: Mapping[str, float]) -> dict[str, float]:
    if isinstance(thresholds, Mapping) and set(thresholds) == set(LEGACY_CONFIDENCE_LEVELS):
        thresholds = {LEGACY_CONFIDENCE_LEVELS[k]: v for k, v in thresholds.items()}
    example = dict(zip(CONFIDENCE_LEVELS, (0.5, 0.7, 0.9), strict=True))
    if not isinstance(thresholds, Mapping) or set(thresholds) != set(CONFIDENCE_LEVELS):
        raise ConfigError(
            f"confidence thresholds {thresholds!r}: expected a mapping with exactly "
            f"{list(CONFIDENCE_LEVELS)}, e.g. {example}"
        )
    try:
        t = {k: float(thresholds[k]) for k in CONFIDENCE_LEVELS}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"confidence thresholds {thresholds!r}: {exc}") from exc
    values = [t[k] for k in CONFIDENCE_LEVELS]
    if not (values[0] >= 0.0 and values == sorted(values) and values[-1] <= 1.0):
        raise ConfigError(
            f"confidence thresholds {t}: expected 0 <= {' <= '.join(CONFIDENCE_LEVELS)} <= 1"
        )
    return t


def _rfc3339(value: Any) -> str:
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InputFormatError(
                f"alert metadata: generated_at {value!r} is not RFC 3339 "
                "(e.g. 2024-07-01T12:00:00Z)"
            ) from exc
        value = parsed
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise InputFormatError(
            f"alert metadata: generated_at {value!r}; expected a timezone-aware datetime "
            "(e.g. datetime.now(timezone.utc)) or an RFC 3339 string"
        )
    utc = value.astimezone(dt.timezone.utc)
    return utc.isoformat(timespec="seconds").replace("+00:00", "Z")


def _period_dict(value: Any, what: str) -> dict[str, str]:
    if isinstance(value, Period):
        return value.as_dict()
    if isinstance(value, Mapping) and {"start", "end"} <= set(value):
        start = _date(value["start"], f"{what}.start", "metadata")
        end = _date(value["end"], f"{what}.end", "metadata")
        if end < start:
            raise InputFormatError(f"alert metadata: {what} ends {end} before it starts {start}")
        return {"start": start, "end": end}
    raise InputFormatError(
        f"alert metadata: {what} {value!r}; expected a Period or a {{'start', 'end'}} mapping"
    )


def _model_dict(value: Any) -> dict[str, str]:
    if isinstance(value, ModelInfo):
        return value.as_dict()
    if isinstance(value, Mapping) and all(
        isinstance(value.get(k), str) and value.get(k) for k in ("name", "version", "sha256")
    ):
        return {k: str(value[k]) for k in ("name", "version", "sha256")}
    raise InputFormatError(
        f"alert metadata: model {value!r}; expected a ModelInfo or a mapping with non-empty "
        "'name', 'version' and 'sha256'"
    )


def _missing(prop: str, sid: str, value: Any) -> InputFormatError:
    return InputFormatError(f"alert {sid}: property {prop} is {value!r}; a real value is required")


def _string(value: Any, prop: str, sid: str) -> str:
    if not present(value) or (isinstance(value, str) and not value):
        raise _missing(prop, sid, value)
    return str(value)


def _choice(value: Any, prop: str, sid: str, allowed: tuple[str, ...]) -> str:
    text = _string(value, prop, sid)
    if text not in allowed:
        raise InputFormatError(f"alert {sid}: {prop} {text!r}; expected one of {list(allowed)}")
    return text


def _number(
    value: Any, prop: str, sid: str, *, lo: float | None = None, hi: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise _missing(prop, sid, value)
    number = float(value)
    if not math.isfinite(number):
        raise _missing(prop, sid, value)
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise InputFormatError(
            f"alert {sid}: {prop} {number!r} is outside {lo if lo is not None else '-inf'}.."
            f"{hi if hi is not None else 'inf'}"
        )
    return round(number, DECIMALS[prop]) + 0.0


def _date(value: Any, prop: str, sid: str) -> str:
    try:
        return iso_date(value)
    except InputFormatError:
        raise InputFormatError(
            f"alert {sid}: {prop} {value!r}; expected a date (YYYY-MM-DD)"
        ) from None


def _string_list(value: Any, prop: str, sid: str) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InputFormatError(
                f"alert {sid}: {prop} {value!r} is a string but not a JSON list"
            ) from exc
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return [str(v) for v in value]
    raise InputFormatError(f"alert {sid}: {prop} {value!r}; expected a list of strings")


def _object(value: Any, sid: str, *, prop: str = "evidence") -> dict[str, Any]:
    if not present(value):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InputFormatError(f"alert {sid}: {prop} {value!r} is not a JSON object") from exc
    if not isinstance(value, Mapping):
        raise InputFormatError(f"alert {sid}: {prop} {value!r}; expected an object (dict)")
    try:
        # Round-trip through JSON: plain types only, keys sorted for stable bytes.
        return dict(json.loads(json.dumps(value, sort_keys=True, allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise InputFormatError(f"alert {sid}: {prop} is not JSON-serialisable: {exc}") from exc
