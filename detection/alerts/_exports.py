"""Write a run's alerts: GeoJSON, a QGIS-styled GeoPackage, a CSV summary and KML.

Every file is written to a temporary name beside the target and renamed into place
(:func:`tiles.files.atomic_path`), so a crash or a full disk never leaves a half file.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import os
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
from pyproj import CRS

from detection.alerts._alerts import REVIEW_STATUSES, alert_records, confidence_level
from detection.alerts._qml import STYLE_FILES, style_qml
from detection.errors import DetectionError, InputFormatError, OutputWriteError
from detection.sites import legal_columns, statuses_of
from tiles.files import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

#: Columns of the CSV summary, in order: one row per site.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "site_id", "alert_class", "status", "confidence_level", "confidence", "area_ha",
    "area_change_ha", "first_detected", "last_detected", "first_image_date", "last_image_date",
    "observed_fraction", "lon", "lat", "aoi_id", "aoi_name", "aoi_kind", "aoi_relation",
    "distance_to_boundary_m", "aoi_area_ha", "municipality", "state", "legal_status", "title_ids",
    "title_phases", "title_share", "satellite", "platforms", "processing_level", "tile_id",
    "review_status",
)

#: Encoding of the CSV summary: UTF-8 with a byte-order mark, so a spreadsheet (Excel, LibreOffice
#: in a pt-BR or es locale) reads accented reserve names as UTF-8 rather than its ANSI code page.
#: Read it back with ``encoding="utf-8-sig"``.
SUMMARY_ENCODING = "utf-8-sig"

#: Values of the coverage layer's ``status`` (what its style and the review page draw).
COVERAGE_STATUSES: tuple[str, ...] = (
    "observed", "partly_observed", "not_observed", "no_imagery", "failed",
)

#: Columns written as GeoPackage ``DATE`` fields even when empty; any other column is one when
#: every value is a date (``YYYY-MM-DD`` text or a ``date``).
DATE_COLUMNS: tuple[str, ...] = ("first_detected", "last_detected", "period_start", "period_end")

#: GeoPackage version written: 1.4 (GDAL >= 3.7's default) makes GDAL 3.6, the one QGIS 3.22 on
#: Debian 12 uses, warn on every open.
GPKG_VERSION = "1.2"
_ISO_DATE = r"\d{4}-\d{2}-\d{2}"

_LAYER_STYLES_DDL = (
    "CREATE TABLE IF NOT EXISTS layer_styles ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_catalog TEXT(256), f_table_schema TEXT(256), "
    "f_table_name TEXT(256), f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT, "
    "styleSLD TEXT, useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30), "
    "update_time DATETIME DEFAULT CURRENT_TIMESTAMP)"
)


def write_geojson(path: str | Path, fc: Mapping[str, Any]) -> None:
    """Write a FeatureCollection as UTF-8 JSON, atomically, one Feature per line.

    Keys keep the order of ``fc`` (as built by
    :func:`detection.alerts.build_feature_collection`), so the same collection always gives the
    same bytes; NaN and infinity are refused (not JSON).

    Args:
        path: the target file (``alerts.geojson``).
        fc: a GeoJSON FeatureCollection.

    Raises:
        DetectionError: ``fc`` is not a FeatureCollection or holds a value JSON cannot encode.
    """
    if fc.get("type") != "FeatureCollection" or not isinstance(fc.get("features"), list):
        raise InputFormatError(
            f"write_geojson {path}: expected a FeatureCollection with a 'features' list, got "
            f"type {fc.get('type')!r}"
        )

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    try:
        members = [f"{dump(k)}:{dump(v)}" for k, v in fc.items() if k != "features"]
        features = ",\n".join(dump(f) for f in fc["features"])
    except (TypeError, ValueError) as exc:
        raise InputFormatError(f"write_geojson {path}: not JSON-serialisable: {exc}") from exc
    body = f"[\n{features}\n]" if features else "[]"
    text = "{" + ",".join([*members, f'"features":{body}']) + "}\n"
    write_text_atomic(path, text)
    log.info("wrote %s (%d features)", path, len(fc["features"]))


def write_geopackage(
    path: str | Path,
    *,
    alerts: gpd.GeoDataFrame,
    coverage: gpd.GeoDataFrame,
    aois: gpd.GeoDataFrame,
    history: gpd.GeoDataFrame | None = None,
    thresholds: Mapping[str, float] | None = None,
    titles: gpd.GeoDataFrame | None = None,
    run: Mapping[str, Any] | None = None,
) -> None:
    """Write the run's GeoPackage with QGIS styles, atomically.

    Layers ``alerts``, ``coverage``, ``aois`` and, when given, ``sites_history`` and ``titles``
    (the mining titles the legal status was judged against), all in
    ``EPSG:4326`` as multi-polygons, in a GeoPackage of version :data:`GPKG_VERSION`. List and
    dict values become JSON strings; dates (:data:`DATE_COLUMNS` and any column of dates only)
    become ``DATE`` fields, datetimes ``DATETIME``. The QML styles of
    :data:`detection.alerts.STYLE_FILES` go into the QGIS ``layer_styles`` table as each layer's
    default style, so the file opens styled in QGIS, legend included.

    Args:
        path: the target file (``alerts.gpkg``).
        alerts: the alerts table (as given to the FeatureCollection builder).
        coverage: coverage polygons with a ``status`` column (:data:`COVERAGE_STATUSES`: only
            ``observed`` and ``partly_observed`` areas were seen; elsewhere "no alert" means
            "not seen").
        aois: the AOIs of the run.
        history: the site history (:func:`detection.sites.append_history`), optional.
        titles: the mining-title table (:func:`aoi.titles.load_titles`), optional.
        run: the run metadata (the GeoJSON's ``minewatch`` member). A partial or failed run
            (:func:`run_warning`) adds a ``run`` table (outcome, failed units, unobserved
            periods, the warning) and the warning as the description of ``alerts`` and
            ``coverage`` (QGIS shows it in the layer list and the layer's information); a
            successful run adds neither.
        thresholds: the run's confidence thresholds (one per word of
            :data:`detection.alerts.CONFIDENCE_LEVELS`); when given, ``confidence_level`` is
            (re)computed from ``confidence`` for the ``alerts`` layer (its style dashes the
            outline of ``probable`` sites). ``None`` keeps the table's ``confidence_level``
            column if any.

    The ``alerts`` layer always has ``review_status`` (``unreviewed`` where missing): analysts
    set it in QGIS (the style gives it a drop-down) and ``minewatch alerts import-review`` reads
    it back.

    Raises:
        DetectionError: a layer has no CRS, ``coverage`` lacks ``status``, a confidence is not
            in 0..1 or the thresholds are malformed (with ``thresholds``), or GDAL or SQLite
            fails (the message names the file and layer).
    """
    if "status" not in coverage.columns:
        raise InputFormatError(
            f"write_geopackage {path}: coverage lacks the 'status' column its style needs "
            f"(one of {list(COVERAGE_STATUSES)}); has {[str(c) for c in coverage.columns]}"
        )
    alerts = _with_review_columns(alerts, thresholds)
    layers: dict[str, gpd.GeoDataFrame] = {"alerts": alerts, "coverage": coverage, "aois": aois}
    if history is not None:
        layers["sites_history"] = history
    if titles is not None:
        layers["titles"] = titles
    prepared = {name: _prepare_layer(frame, name, path) for name, frame in layers.items()}
    with atomic_path(path) as tmp:
        # GDAL wants a .gpkg name; atomic_path removes ``tmp.name + "*"`` if anything fails.
        work = tmp.with_name(tmp.name + ".gpkg")
        for name, frame in prepared.items():
            try:
                _write_layer(work, name, frame)
            except Exception as exc:
                raise OutputWriteError(f"write_geopackage {path}: layer {name!r}: {exc}") from exc
        try:
            _write_styles(work)
        except sqlite3.Error as exc:
            raise OutputWriteError(f"write_geopackage {path}: layer_styles: {exc}") from exc
        warning = run_warning(run)
        if warning is not None:
            try:
                _mark_outcome(work, run or {}, warning)
            except Exception as exc:
                raise OutputWriteError(f"write_geopackage {path}: layer 'run': {exc}") from exc
        os.replace(work, tmp)
    log.info("wrote %s (%s)", path, ", ".join(f"{k}: {len(v)}" for k, v in prepared.items()))


def write_summary_csv(
    path: str | Path,
    alerts: gpd.GeoDataFrame | Mapping[str, Any],
    *,
    thresholds: Mapping[str, float] | None = None,
) -> None:
    """Write one CSV row per site with the columns of :data:`SUMMARY_COLUMNS`, sorted by id.

    Values are validated and rounded exactly as in the GeoJSON. The file is UTF-8 with a
    byte-order mark (:data:`SUMMARY_ENCODING`), so spreadsheets decode accented names.

    Args:
        path: the target file (``summary.csv``).
        alerts: the alert FeatureCollection (rows are its features' properties), or the alerts
            table.
        thresholds: for a table, the confidence thresholds that give ``confidence_level``;
            ``None`` reads the table's ``confidence_level`` column.

    Raises:
        DetectionError: ``alerts`` is a dict but not a FeatureCollection, or as
            :func:`detection.alerts.alert_records` (a table without ``confidence_level`` needs
            ``thresholds``).
    """
    if isinstance(alerts, pd.DataFrame):
        records = alert_records(alerts, thresholds=thresholds) if len(alerts) else []
    else:
        if alerts.get("type") != "FeatureCollection" or not isinstance(
            alerts.get("features"), list
        ):
            raise InputFormatError(
                f"write_summary_csv {path}: expected a FeatureCollection or a GeoDataFrame, got "
                f"type {alerts.get('type')!r}"
            )
        records = sorted(
            (dict(f.get("properties") or {}) for f in alerts["features"]),
            key=lambda r: str(r.get("site_id")),
        )
    # A partial or failed run says so in a first column, on every row (on a row of its own when
    # there is no site), where a spreadsheet user sees it; a successful run's CSV has no such
    # column.
    warning = None if isinstance(alerts, pd.DataFrame) else run_warning(alerts.get("minewatch"))
    columns = SUMMARY_COLUMNS if warning is None else ("run_outcome", *SUMMARY_COLUMNS)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for rec in records:
        row = {
            **rec,
            **legal_columns(rec),
            "platforms": ";".join(rec.get("platforms") or []),
            "run_outcome": warning,
        }
        writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    if warning is not None and not records:
        writer.writerow([warning] + [""] * len(SUMMARY_COLUMNS))
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding=SUMMARY_ENCODING)
    log.info("wrote %s (%d sites)", path, len(records))


#: KML colours (``aabbggrr``) of each alert class: fill, outline.
_KML_COLOURS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {"mining": ("a02465f0", "ff150fa5"), "deforestation": ("a08befd9", "ff50981a")}
)
#: Properties shown in a KML placemark's description and ExtendedData, in order.
KML_FIELDS: tuple[str, ...] = (
    "site_id", "alert_class", "status", "area_ha", "area_change_ha", "confidence",
    "confidence_level", "observed_fraction", "first_detected", "last_detected", "first_image_date",
    "last_image_date", "period_start", "period_end", "lon", "lat", "aoi_id", "aoi_name", "aoi_kind",
    "aoi_relation", "distance_to_boundary_m", "aoi_area_ha", "municipality", "state",
    "legal_status", "review_status",
)


def write_kml(path: str | Path, fc: Mapping[str, Any], *, name: str | None = None) -> None:
    """Write the alerts as KML 2.2 for field teams (Google Earth, OsmAnd, Avenza), atomically.

    One Placemark per site, named by ``site_id``, styled by ``alert_class`` (mining orange,
    deforestation yellow-green, as in QGIS), with the main properties in its description and
    in ``ExtendedData`` and a ``TimeSpan`` from ``first_detected`` to ``last_detected`` (Google
    Earth's time slider); coordinates are the GeoJSON's lon/lat. Everything is written through
    an XML serializer, so text from the data is escaped.

    Args:
        path: the target file (``alerts.kml``).
        fc: the alert FeatureCollection (:func:`detection.alerts.build_feature_collection`).
        name: the document name (default: ``minewatch alerts <period>``).

    Raises:
        DetectionError: ``fc`` is not a FeatureCollection, or a feature's geometry is not a
            Polygon or MultiPolygon.
    """
    if fc.get("type") != "FeatureCollection" or not isinstance(fc.get("features"), list):
        raise InputFormatError(
            f"write_kml {path}: expected a FeatureCollection with a 'features' list, got "
            f"type {fc.get('type')!r}"
        )

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, tag, attrs)
        if text is not None:
            el.text = text
        return el

    meta = fc.get("minewatch") or {}
    period = meta.get("period") or {}
    root = ET.Element("kml", xmlns="http://www.opengis.net/kml/2.2")
    doc = sub(root, "Document")
    doc_name = name or f"minewatch alerts {period.get('start', '')}..{period.get('end', '')}"
    warnings_ = []
    warning = run_warning(meta)
    if warning is not None:
        warnings_.append(warning)
        doc_name += f" ({str(meta['outcome']).upper()} RUN)"
    if meta.get("unobserved_periods"):
        warnings_.append(
            "not observed: " + ", ".join(meta["unobserved_periods"]) + "; earlier sites kept"
        )
    sub(doc, "name", doc_name)
    if warnings_:
        sub(doc, "description", "\n".join(warnings_))
    for cls, (fill, line) in _KML_COLOURS.items():
        style = sub(doc, "Style", id=cls)
        line_style = sub(style, "LineStyle")
        sub(line_style, "color", line)
        sub(line_style, "width", "2")
        sub(sub(style, "PolyStyle"), "color", fill)
    for feature in sorted(fc["features"], key=lambda f: str(f.get("id", ""))):
        props = feature.get("properties") or {}
        sid = str(feature.get("id", props.get("site_id", "")))
        placemark = sub(doc, "Placemark", id=_kml_id(sid))
        sub(placemark, "name", sid)
        sub(
            placemark,
            "description",
            "\n".join(f"{k}: {props.get(k)}" for k in KML_FIELDS if props.get(k) is not None),
        )
        _kml_time_span(placemark, props, sub)
        cls = str(props.get("alert_class"))
        if cls in _KML_COLOURS:
            sub(placemark, "styleUrl", f"#{cls}")
        data = sub(placemark, "ExtendedData")
        for key in KML_FIELDS:
            value = props.get(key)
            if value is not None:
                sub(sub(data, "Data", name=key), "value", str(value))
        _kml_geometry(placemark, feature.get("geometry"), sid, sub, path)
    tree = ET.ElementTree(root)
    ET.indent(tree, space=" ")
    buffer = io.BytesIO()
    tree.write(buffer, encoding="utf-8", xml_declaration=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    log.info("wrote %s (%d placemarks)", path, len(fc["features"]))


def run_warning(meta: Mapping[str, Any] | None) -> str | None:
    """The line a partial or failed run puts in every output (``meta``: the GeoJSON's
    ``minewatch`` member); None for a successful run, whose outputs say nothing of it."""
    meta = meta or {}
    outcome = meta.get("outcome")
    if outcome not in ("partial", "failed"):
        return None
    return (
        f"{str(outcome).upper()} RUN: {meta.get('failed_units', '?')} unit(s) failed; "
        "no alert where a unit failed does not mean no mining"
    )


def _mark_outcome(gpkg: Path, run: Mapping[str, Any], warning: str) -> None:
    """A partial or failed run's GeoPackage: a ``run`` table (one row, no geometry) and the
    warning as the description of the ``alerts`` and ``coverage`` layers."""
    row = {
        "run_id": run.get("run_id"),
        "outcome": run.get("outcome"),
        "failed_units": run.get("failed_units"),
        "unobserved_periods": ", ".join(run.get("unobserved_periods") or []),
        "message": warning,
    }
    pyogrio.write_dataframe(pd.DataFrame([row]), gpkg, layer="run", driver="GPKG")
    con = sqlite3.connect(gpkg)
    try:
        with con:
            con.execute(
                "UPDATE gpkg_contents SET description = ? "
                "WHERE table_name IN ('alerts', 'coverage')",
                (warning,),
            )
    finally:
        con.close()


# ------------------------------------------------------------------------------------ helpers


def _with_review_columns(
    alerts: gpd.GeoDataFrame, thresholds: Mapping[str, float] | None
) -> gpd.GeoDataFrame:
    """A copy with ``confidence_level`` (from ``thresholds``) and ``review_status`` filled."""
    out = alerts.copy()
    if thresholds is not None and len(out):
        if "confidence" not in out.columns:
            raise InputFormatError("write_geopackage: alerts lack 'confidence'")
        levels = []
        for sid, value in zip(out.get("site_id", range(len(out))), out["confidence"], strict=True):
            try:
                levels.append(confidence_level(float(value), thresholds))
            except (DetectionError, TypeError, ValueError) as exc:
                raise InputFormatError(f"write_geopackage: alert {sid}: {exc}") from exc
        out["confidence_level"] = levels
    elif thresholds is not None:
        out["confidence_level"] = pd.Series([], dtype=object)
    out["legal_status"] = pd.Series(
        statuses_of(out["legal_status"] if "legal_status" in out.columns else [None] * len(out)),
        index=out.index,
        dtype=object,
    )
    if "legal" not in out.columns:
        out["legal"] = pd.Series([{} for _ in range(len(out))], index=out.index, dtype=object)
    if "review_status" not in out.columns:
        out["review_status"] = pd.Series(["unreviewed"] * len(out), index=out.index, dtype=object)
    else:
        out["review_status"] = [
            v if isinstance(v, str) and v in REVIEW_STATUSES else "unreviewed"
            for v in out["review_status"]
        ]
    return out


def _kml_id(site_id: str) -> str:
    """An XML ``ID`` from a site id (letters, digits, ``-``, ``_``, ``.``; not starting a digit)."""
    clean = "".join(c if c.isalnum() or c in "-_." else "_" for c in site_id)
    return clean if clean[:1].isalpha() or clean[:1] == "_" else f"_{clean}"


#: Properties giving a placemark's ``TimeSpan``: ``begin`` and ``end``.
KML_TIME_SPAN: tuple[str, str] = ("first_detected", "last_detected")


def _kml_time_span(placemark: ET.Element, props: Mapping[str, Any], sub: Any) -> None:
    """A ``TimeSpan`` from the first to the last detection, so Google Earth's time slider shows
    each site from when it was first seen (KML 2.2 puts it after ``description``)."""
    begin, end = (props.get(key) for key in KML_TIME_SPAN)
    if begin is None and end is None:
        return
    span = sub(placemark, "TimeSpan")
    if begin is not None:
        sub(span, "begin", str(begin))
    if end is not None:
        sub(span, "end", str(end))


def _kml_geometry(
    placemark: ET.Element, geometry: Any, sid: str, sub: Any, path: str | Path
) -> None:
    if not isinstance(geometry, Mapping) or geometry.get("type") not in (
        "Polygon",
        "MultiPolygon",
    ):
        kind = geometry.get("type") if isinstance(geometry, Mapping) else geometry
        raise InputFormatError(
            f"write_kml {path}: alert {sid}: geometry {kind!r}; expected Polygon or MultiPolygon"
        )
    polygons = (
        [geometry["coordinates"]]
        if geometry["type"] == "Polygon"
        else list(geometry["coordinates"])
    )
    parent = sub(placemark, "MultiGeometry") if len(polygons) > 1 else placemark

    def coords(ring: Any) -> str:
        return " ".join(f"{float(x)!r},{float(y)!r}" for x, y, *_ in ring)

    for rings in polygons:
        poly = sub(parent, "Polygon")
        sub(sub(sub(poly, "outerBoundaryIs"), "LinearRing"), "coordinates", coords(rings[0]))
        for hole in rings[1:]:
            sub(sub(sub(poly, "innerBoundaryIs"), "LinearRing"), "coordinates", coords(hole))


def _prepare_layer(frame: gpd.GeoDataFrame, name: str, path: str | Path) -> gpd.GeoDataFrame:
    """A copy in EPSG:4326: list/dict values as JSON, dates as ISO text, datetimes as UTC."""
    if frame.crs is None:
        raise InputFormatError(f"write_geopackage {path}: layer {name!r} has no CRS")
    out = frame.copy()
    if CRS.from_user_input(out.crs) != CRS.from_epsg(4326):
        out = out.to_crs(4326)
    geometry = out.geometry.name
    for col in out.columns:
        if col == geometry:
            continue
        series = out[col]
        present = series.dropna()
        if len(present) and all(isinstance(v, dt.datetime) for v in present):
            out[col] = pd.to_datetime(series, utc=True)  # naive ones taken as UTC
        elif series.dtype == object:
            out[col] = pd.Series([_plain(v) for v in series], index=out.index, dtype=object)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple, np.ndarray)):
        return json.dumps([_json_safe(v) for v in value], ensure_ascii=False)
    if isinstance(value, Mapping):
        return json.dumps(_json_safe(value), ensure_ascii=False, sort_keys=True)
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def _write_layer(gpkg: Path, name: str, frame: gpd.GeoDataFrame) -> None:
    """Write one layer (EPSG:4326) with pyogrio's raw writer, which can write ``DATE`` fields.

    ``pyogrio.write_dataframe`` writes a date as text or as a ``DATETIME`` at midnight.
    """
    geometry = frame.geometry.name
    fields = [str(c) for c in frame.columns if c != geometry]
    values = [_field_values(c, frame[c]) for c in fields]
    first = not gpkg.exists()
    pyogrio.raw.write(
        gpkg,
        frame.geometry.to_wkb().to_numpy(dtype=object),
        [v for v, _ in values],
        fields,
        field_mask=[m for _, m in values],
        layer=name,
        driver="GPKG",
        geometry_type="MultiPolygon",
        promote_to_multi=True,
        crs="EPSG:4326",
        dataset_options={"VERSION": GPKG_VERSION} if first else None,
    )


def _field_values(name: str, col: pd.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """One column as pyogrio's raw writer takes it: values and a null mask (or ``None``)."""
    dates = _dates(col, named=name in DATE_COLUMNS)
    if dates is not None:
        return dates, None
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        col = col.dt.tz_convert("UTC").dt.tz_localize(None)
    kind = col.dtype.kind
    numpy_dtype = str(getattr(col.dtype, "numpy_dtype", col.dtype))  # nullable Int64, boolean...
    if kind in "biu":
        mask = col.isna().to_numpy() if col.hasnans else None
        return col.to_numpy(dtype=numpy_dtype, na_value=0), mask
    if kind in "fM":
        return col.to_numpy(dtype=numpy_dtype), None
    return col.to_numpy(dtype=object), (col.isna().to_numpy() if col.hasnans else None)


def _dates(col: pd.Series, *, named: bool) -> np.ndarray | None:
    """``col`` as ``datetime64[D]`` (NaT where missing) when it holds dates only, else ``None``.

    Dates are ``YYYY-MM-DD`` text here (:func:`_plain`). A column of missing values only is a
    date column when ``named``.
    """
    present = col.dropna()
    if len(present) == 0:
        return np.full(len(col), np.datetime64("NaT"), dtype="datetime64[D]") if named else None
    if pd.api.types.infer_dtype(present, skipna=False) != "string":
        return None
    if not present.astype(str).str.fullmatch(_ISO_DATE).all():
        return None
    days = pd.to_datetime(col, format="%Y-%m-%d", errors="coerce")
    if days.notna().sum() != len(present):  # 2024-13-45
        return None
    return days.to_numpy().astype("datetime64[D]")


def _write_styles(gpkg: Path) -> None:
    """Create QGIS's ``layer_styles`` table and store each styled layer's QML as its default."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    con = sqlite3.connect(gpkg)
    try:
        with con:
            con.execute(_LAYER_STYLES_DDL)
            con.execute(
                "INSERT OR REPLACE INTO gpkg_contents (table_name, data_type, identifier, "
                "description, last_change) VALUES ('layer_styles', 'attributes', 'layer_styles', "
                "'QGIS layer styles', ?)",
                (now,),
            )
            for layer, column in con.execute(
                "SELECT table_name, column_name FROM gpkg_geometry_columns ORDER BY table_name"
            ).fetchall():
                if layer not in STYLE_FILES:
                    continue
                con.execute(
                    "DELETE FROM layer_styles WHERE f_table_name = ? AND styleName = ?",
                    (layer, f"minewatch {layer}"),
                )
                con.execute(
                    "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, "
                    "f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description, "
                    "owner, ui, update_time) VALUES ('', '', ?, ?, ?, ?, '', 1, ?, '', NULL, ?)",
                    (
                        layer,
                        column,
                        f"minewatch {layer}",
                        style_qml(layer),
                        f"minewatch default style for {layer}",
                        now,
                    ),
                )
    finally:
        con.close()
