"""The review loop: analysts' decisions back into labels, and comparing two alert files.

An analyst reviews alerts in the review page (*Export decisions* writes a GeoJSON) or in QGIS
(editing ``review_status`` in the ``alerts`` layer of ``alerts.gpkg``). :func:`read_reviewed_alerts`
reads either; :func:`review_labels` turns the decisions into label polygons that ``training``
uses directly:

* ``confirmed`` -> ``class`` = the alert's class (``mining`` or ``deforestation``);
* ``rejected`` -> ``class`` = ``background`` (a negative example: the model was wrong there);
* ``unreviewed`` -> left out.

Label columns: :data:`LABEL_COLUMNS`, geometry in ``EPSG:4326``. :func:`write_labels` writes them
as GeoJSON or GeoPackage (layer ``labels``), optionally merged into an existing label file
(a later decision on the same site and period replaces the earlier one).

:func:`diff_alerts` compares two alert files site by site (``site_id``): new, removed, changed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS

from aoi.geometry import EQUAL_AREA_CRS
from detection.alerts._alerts import LEGACY_CONFIDENCE_LEVELS, REVIEW_STATUSES
from detection.errors import (
    ConfigError,
    InputFormatError,
    InputNotFoundError,
    InputReadError,
    OutputWriteError,
)
from models.detector import ALERT_CLASSES
from tiles.files import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

#: Classes of a label polygon: the alert classes plus ``background`` (rejected alerts).
LABEL_CLASSES: tuple[str, ...] = (*ALERT_CLASSES, "background")

#: Columns of the label table, in order (geometry last).
LABEL_COLUMNS: tuple[str, ...] = (
    "class", "site_id", "alert_class", "period_start", "period_end", "review_status", "confidence",
    "reviewer", "reviewed_at", "review_note", "source", "geometry",
)

#: Columns a reviewed alerts file must have.
REVIEW_REQUIRED: tuple[str, ...] = (
    "site_id", "alert_class", "period_start", "period_end", "review_status",
)

#: Properties compared by :func:`diff_alerts` (numbers with :data:`DIFF_TOLERANCES`).
DIFF_FIELDS: tuple[str, ...] = (
    "alert_class", "status", "area_ha", "confidence_level", "observed_fraction", "aoi_id",
    "aoi_relation", "review_status", "period_end",
)
DIFF_TOLERANCES: Mapping[str, float] = {"area_ha": 0.01, "observed_fraction": 0.01}


def read_reviewed_alerts(path: str | Path, *, layer: str | None = None) -> gpd.GeoDataFrame:
    """Read reviewed alerts: the review page's export (GeoJSON) or an edited ``alerts.gpkg``.

    Args:
        path: a ``.geojson``/``.json`` FeatureCollection or a GeoPackage.
        layer: the GeoPackage layer (default ``alerts``).

    Returns:
        One row per alert in ``EPSG:4326`` with at least :data:`REVIEW_REQUIRED`; a missing or
        empty ``review_status`` reads as ``unreviewed``; ``source`` holds the file name.

    Raises:
        DetectionError: the file is missing or unreadable, lacks a column, holds a
            ``review_status`` or ``alert_class`` outside the contract, or repeats a site id.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"reviewed alerts {str(path)!r}: no such file")
    gpkg = path.suffix.lower() == ".gpkg"
    try:
        frame = pyogrio.read_dataframe(path, layer=(layer or "alerts") if gpkg else layer)
    except Exception as exc:
        raise InputReadError(f"reviewed alerts {path}: cannot read: {exc}") from exc
    if frame.crs is None:
        frame = frame.set_crs(4326)
    elif CRS.from_user_input(frame.crs) != CRS.from_epsg(4326):
        frame = frame.to_crs(4326)
    if "confidence_level" in frame.columns:  # a file of format 1.x: today's words
        frame["confidence_level"] = [
            LEGACY_CONFIDENCE_LEVELS.get(v, v) for v in frame["confidence_level"]
        ]
    if "site_id" not in frame.columns and not gpkg:
        frame = _with_feature_ids(frame, path)
    if "review_status" not in frame.columns:
        frame["review_status"] = "unreviewed"
    missing = [c for c in REVIEW_REQUIRED if c not in frame.columns]
    if missing:
        raise InputFormatError(
            f"reviewed alerts {path}: missing columns {missing}; has "
            f"{[str(c) for c in frame.columns]} (is it a minewatch alerts file?)"
        )
    frame["site_id"] = frame["site_id"].astype(str)
    twice = sorted(set(frame["site_id"][frame["site_id"].duplicated()]))
    if twice:
        raise InputFormatError(f"reviewed alerts {path}: site ids {twice} appear more than once")
    frame["review_status"] = [
        "unreviewed" if _blank(v) else str(v).strip().lower() for v in frame["review_status"]
    ]
    for col, allowed in (("review_status", REVIEW_STATUSES), ("alert_class", ALERT_CLASSES)):
        bad = frame[~frame[col].isin(allowed)]
        if len(bad):
            row = bad.iloc[0]
            raise InputFormatError(
                f"reviewed alerts {path}: site {row['site_id']}: {col} {row[col]!r}; expected "
                f"one of {list(allowed)}"
            )
    frame["source"] = path.name
    log.info(
        "read %d alerts from %s (%s)",
        len(frame),
        path,
        ", ".join(f"{k}: {v}" for k, v in sorted(frame["review_status"].value_counts().items())),
    )
    return frame


def review_labels(reviewed: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Label polygons from reviewed alerts: confirmed -> their class, rejected -> background.

    Args:
        reviewed: alerts as :func:`read_reviewed_alerts` returns them (or several concatenated).

    Returns:
        One row per reviewed alert with :data:`LABEL_COLUMNS`, in ``EPSG:4326``, sorted by
        ``period_end`` then ``site_id``; empty geometries are dropped (logged).

    Raises:
        DetectionError: a column of :data:`REVIEW_REQUIRED` is missing or the table has no CRS.
    """
    missing = [c for c in REVIEW_REQUIRED if c not in reviewed.columns]
    if missing:
        raise InputFormatError(f"review_labels: missing columns {missing}")
    if reviewed.crs is None:
        raise InputFormatError("review_labels: table has no CRS; expected EPSG:4326")
    done = reviewed[reviewed["review_status"].isin(["confirmed", "rejected"])].copy()
    if len(done):
        done = done.to_crs(4326)
    geoms = done.geometry.to_numpy()
    empty = shapely.is_empty(geoms) | shapely.is_missing(geoms)
    if empty.any():
        log.warning(
            "review_labels: dropped %d reviewed alerts with empty geometry: %s",
            int(empty.sum()),
            done["site_id"][empty].tolist(),
        )
        done = done[~empty]
    out = pd.DataFrame(
        {
            "class": [
                str(c) if s == "confirmed" else "background"
                for c, s in zip(done["alert_class"], done["review_status"], strict=True)
            ],
            "site_id": done["site_id"].astype(str).to_list(),
            "alert_class": done["alert_class"].astype(str).to_list(),
            "period_start": [_date_text(v) for v in done["period_start"]],
            "period_end": [_date_text(v) for v in done["period_end"]],
            "review_status": done["review_status"].to_list(),
        }
    )
    for col in ("confidence", "reviewer", "reviewed_at", "review_note", "source"):
        values = done[col].to_list() if col in done.columns else [None] * len(done)
        out[col] = [None if _blank(v) else v for v in values]
    out["confidence"] = pd.to_numeric(out["confidence"], errors="coerce")
    labels = gpd.GeoDataFrame(out, geometry=list(done.geometry), crs="EPSG:4326")
    labels = labels.sort_values(["period_end", "site_id"], kind="stable").reset_index(drop=True)
    counts = labels["class"].value_counts().to_dict()
    log.info("review_labels: %d labels %s", len(labels), dict(sorted(counts.items())))
    return gpd.GeoDataFrame(labels[list(LABEL_COLUMNS)], geometry="geometry", crs="EPSG:4326")


def write_labels(
    path: str | Path, labels: gpd.GeoDataFrame, *, merge: bool = False
) -> gpd.GeoDataFrame:
    """Write label polygons as GeoJSON (``.geojson``/``.json``) or GeoPackage (layer ``labels``).

    Args:
        path: the target file; its suffix picks the format.
        labels: as :func:`review_labels` returns them.
        merge: read the labels already in ``path`` (if any) and keep those of other sites or
            periods; a label of the same ``site_id`` and ``period_end`` is replaced by the new one.

    Returns:
        The labels written.

    Raises:
        DetectionError: the suffix is not ``.geojson``, ``.json`` or ``.gpkg``, the existing
            file cannot be read, or writing fails.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".geojson", ".json", ".gpkg"):
        raise ConfigError(
            f"labels {str(path)!r}: unknown format {suffix!r}; use .geojson or .gpkg"
        )
    out = labels
    if merge and path.exists():
        try:
            old = pyogrio.read_dataframe(path, layer="labels" if suffix == ".gpkg" else None)
        except Exception as exc:
            raise InputReadError(f"labels {path}: cannot read to merge: {exc}") from exc
        if old.crs is None:
            old = old.set_crs(4326)
        keys = set(zip(labels["site_id"], labels["period_end"], strict=True))
        keep = [
            (s, p) not in keys
            for s, p in zip(old["site_id"].astype(str), old["period_end"].astype(str), strict=True)
        ]
        old = old[keep].to_crs(4326)
        for col in LABEL_COLUMNS:
            if col not in old.columns:
                old[col] = None
        out = gpd.GeoDataFrame(
            pd.concat([old[list(LABEL_COLUMNS)], labels[list(LABEL_COLUMNS)]], ignore_index=True),
            geometry="geometry",
            crs="EPSG:4326",
        )
        out = out.sort_values(["period_end", "site_id"], kind="stable").reset_index(drop=True)
    if suffix == ".gpkg":
        with atomic_path(path) as tmp:
            work = tmp.with_name(tmp.name + ".gpkg")
            try:
                pyogrio.write_dataframe(
                    out,
                    work,
                    layer="labels",
                    driver="GPKG",
                    promote_to_multi=True,
                    geometry_type="MultiPolygon" if out.empty else None,
                )
            except Exception as exc:
                raise OutputWriteError(f"labels {path}: {exc}") from exc
            work.replace(tmp)
    else:
        fc = json.loads(out.to_json(drop_id=True, to_wgs84=True))
        write_text_atomic(path, json.dumps(fc, ensure_ascii=False, allow_nan=False) + "\n")
    log.info("wrote %s (%d labels)", path, len(out))
    return out


@dataclass
class AlertDiff:
    """Sites of ``b`` not in ``a`` (``new``), of ``a`` not in ``b`` (``removed``), in both with
    different properties (``changed``: ``{site_id: {field: [a, b]}}``), and the unchanged count.
    """

    new: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    unchanged: int = 0
    geometry_changed: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.new or self.removed or self.changed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "new": self.new,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "geometry_changed": self.geometry_changed,
        }


def diff_alerts(
    a: gpd.GeoDataFrame,
    b: gpd.GeoDataFrame,
    *,
    fields: Sequence[str] = DIFF_FIELDS,
    geometry_tolerance: float = 0.01,
) -> AlertDiff:
    """Compare two alert tables site by site.

    Args:
        a: the earlier (or reference) alerts, with ``site_id``.
        b: the later alerts, with ``site_id``.
        fields: properties to compare where both tables have them. Numbers compare within
            :data:`DIFF_TOLERANCES` (absolute), others exactly.
        geometry_tolerance: a site whose outline changed by more than this share of its area
            (symmetric difference / union, on ``EPSG:6933``) is listed in ``geometry_changed``
            and reported as changed (field ``geometry``).

    Returns:
        The differences; ids sorted.

    Raises:
        DetectionError: a table lacks ``site_id`` or repeats one.
    """
    ia, ib = _by_id(a, "a"), _by_id(b, "b")
    out = AlertDiff(
        new=sorted(set(ib.index) - set(ia.index)),
        removed=sorted(set(ia.index) - set(ib.index)),
    )
    common = sorted(set(ia.index) & set(ib.index))
    compare = [f for f in fields if f in ia.columns and f in ib.columns]
    geo_a = ia.geometry.to_crs(EQUAL_AREA_CRS) if ia.crs is not None else ia.geometry
    geo_b = ib.geometry.to_crs(EQUAL_AREA_CRS) if ib.crs is not None else ib.geometry
    for sid in common:
        changes: dict[str, list[Any]] = {}
        for name in compare:
            va, vb = _plain(ia.at[sid, name]), _plain(ib.at[sid, name])
            if not _same(va, vb, DIFF_TOLERANCES.get(name)):
                changes[name] = [va, vb]
        ga, gb = geo_a.loc[sid], geo_b.loc[sid]
        if ga is not None and gb is not None and not (ga.is_empty and gb.is_empty):
            union = ga.union(gb).area
            moved = ga.symmetric_difference(gb).area / union if union > 0 else 0.0
            if moved > geometry_tolerance:
                out.geometry_changed.append(sid)
                changes["geometry"] = [round(ga.area / 1e4, 4), round(gb.area / 1e4, 4)]
        if changes:
            out.changed[sid] = changes
        else:
            out.unchanged += 1
    log.info(
        "diff: %d new, %d removed, %d changed, %d unchanged",
        len(out.new),
        len(out.removed),
        len(out.changed),
        out.unchanged,
    )
    return out


def read_alerts(path: str | Path, *, layer: str | None = None) -> gpd.GeoDataFrame:
    """Read an alerts file (GeoJSON or GeoPackage layer ``alerts``) for :func:`diff_alerts`.

    Raises:
        DetectionError: the file is missing or unreadable, or has no ``site_id``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"alerts {str(path)!r}: no such file")
    gpkg = path.suffix.lower() == ".gpkg"
    try:
        frame = pyogrio.read_dataframe(path, layer=(layer or "alerts") if gpkg else layer)
    except Exception as exc:
        raise InputReadError(f"alerts {path}: cannot read: {exc}") from exc
    if frame.crs is None:
        frame = frame.set_crs(4326)
    # GDAL reads the GeoJSON's dates as strings and the GeoPackage's as datetimes: compare them
    # as the contract writes them, YYYY-MM-DD.
    for name in frame.columns:
        if name != frame.geometry.name and pd.api.types.is_datetime64_any_dtype(frame[name]):
            frame[name] = [_date_text(v) for v in frame[name]]
    if "confidence_level" in frame.columns:  # a file of format 1.x: today's words
        frame["confidence_level"] = [
            LEGACY_CONFIDENCE_LEVELS.get(v, v) for v in frame["confidence_level"]
        ]
    if "site_id" not in frame.columns and not gpkg:
        frame = _with_feature_ids(frame, path)
    if "site_id" not in frame.columns:
        raise InputFormatError(
            f"alerts {path}: no 'site_id' column; is it a minewatch alerts file?"
        )
    return frame


# ------------------------------------------------------------------------------------ helpers


def _with_feature_ids(frame: gpd.GeoDataFrame, path: Path) -> gpd.GeoDataFrame:
    """``site_id`` from the GeoJSON Features' ``id`` when the properties lack it."""
    try:
        fc = json.loads(path.read_text(encoding="utf-8"))
        ids = [f.get("id") for f in fc.get("features", [])]
    except (OSError, ValueError, AttributeError):
        return frame
    if len(ids) == len(frame) and all(i is not None for i in ids):
        frame = frame.copy()
        frame["site_id"] = [str(i) for i in ids]
    return frame


def _by_id(frame: gpd.GeoDataFrame, what: str) -> gpd.GeoDataFrame:
    if "site_id" not in frame.columns:
        raise InputFormatError(f"diff_alerts: {what} has no 'site_id' column")
    ids = frame["site_id"].astype(str)
    twice = sorted(set(ids[ids.duplicated()]))
    if twice:
        raise InputFormatError(f"diff_alerts: {what} holds site ids {twice} more than once")
    out = frame.copy()
    out.index = pd.Index(ids.to_list())
    return out


def _plain(value: Any) -> Any:
    if _blank(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def _same(a: Any, b: Any, tolerance: float | None) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and tolerance is not None:
        return abs(float(a) - float(b)) <= tolerance
    return bool(a == b)


def _blank(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _date_text(value: Any) -> str | None:
    if _blank(value):
        return None
    if hasattr(value, "date") and callable(value.date):
        return str(value.date().isoformat())
    return str(value)[:10]
