"""Reading a scan's output folder for the report: the run store (read-only), the layers of
``alerts.gpkg`` and ``run.json``. Nothing here writes."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely

from detection.errors import InputFormatError, InputReadError
from detection.runs import RunStore
from tiles.periods import Period

log = logging.getLogger(__name__)

#: Buffer (m) used when ``run.json`` does not record the scan's ``aoi.buffer_m``.
DEFAULT_BUFFER_M = 5000.0


def _read_store(out_dir: Path) -> tuple[list[dict[str, Any]], gpd.GeoDataFrame]:
    """Runs and site history of a scan folder's run store, read-only (never modified)."""
    store = RunStore.open_existing(out_dir)
    runs = store.list_runs()
    features = store.site_history()
    if features:
        history = gpd.GeoDataFrame.from_features(features, crs="EPSG:4326")
    else:
        history = gpd.GeoDataFrame(
            {c: pd.Series(dtype=object) for c in _HISTORY_NEEDED},
            geometry=gpd.GeoSeries([], crs="EPSG:4326"),
            crs="EPSG:4326",
        )
    missing = [c for c in _HISTORY_NEEDED if c not in history.columns]
    if missing:
        raise InputFormatError(
            f"{store.path}: site history records lack {missing}; rerun the scan with this "
            "minewatch"
        )
    history["area_ha"] = pd.to_numeric(history["area_ha"], errors="coerce").astype(float)
    history["area_change_ha"] = pd.to_numeric(history["area_change_ha"], errors="coerce").astype(
        float
    )
    history["observed_fraction"] = pd.to_numeric(
        history["observed_fraction"], errors="coerce"
    ).astype(float)
    return runs, history


_HISTORY_NEEDED = (
    "site_id", "alert_class", "period_label", "period_start", "period_end", "status", "area_ha",
    "area_change_ha", "observed_fraction",
)


def _read_layer(gpkg: Path, layer: str) -> gpd.GeoDataFrame:
    try:
        layers = {str(name) for name, _ in pyogrio.list_layers(gpkg)}
        if layer not in layers:
            raise InputFormatError(
                f"{gpkg}: no layer {layer!r} (has {sorted(layers)}); rerun the scan with this "
                "minewatch"
            )
        frame = pyogrio.read_dataframe(gpkg, layer=layer)
    except InputFormatError:
        raise
    except Exception as exc:  # GDAL errors come in several classes
        raise InputReadError(f"{gpkg}: layer {layer!r}: {exc}") from exc
    if frame.crs is None:
        raise InputFormatError(f"{gpkg}: layer {layer!r} has no CRS; expected EPSG:4326")
    return frame.to_crs(4326) if frame.crs.to_epsg() != 4326 else frame


def _read_run_json(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "run.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s); the report does without it", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _buffer_m(run_json: dict[str, Any]) -> float:
    try:
        return float(run_json["config"]["aoi"]["buffer_m"])
    except (KeyError, TypeError, ValueError):
        log.warning(
            "run.json does not record the scan's aoi.buffer_m; sites within %.0f m of a reserve "
            "count as its buffer zone",
            DEFAULT_BUFFER_M,
        )
        return DEFAULT_BUFFER_M


def _title(runs: list[dict[str, Any]], run_json: dict[str, Any]) -> str:
    name = (
        run_json.get("config", {}).get("name") if isinstance(run_json.get("config"), dict) else None
    )
    if not name:
        names = [r["config_name"] for r in runs if r.get("config_name")]
        name = names[-1] if names else "scan"
    return str(name)


def _periods(history: gpd.GeoDataFrame, coverage: gpd.GeoDataFrame) -> list[Period]:
    found: dict[str, Period] = {}
    for frame, label_col in ((coverage, "period"), (history, "period_label")):
        if not len(frame):
            continue
        cols = frame[[label_col, "period_start", "period_end"]].drop_duplicates()
        for label, start, end in cols.itertuples(index=False):
            if label not in found:
                found[str(label)] = Period(
                    dt.date.fromisoformat(str(start)[:10]),
                    dt.date.fromisoformat(str(end)[:10]),
                    str(label),
                )
    return sorted(found.values(), key=lambda p: (p.start, p.end))


def _normalise_aois(aois: gpd.GeoDataFrame, gpkg: Path) -> gpd.GeoDataFrame:
    missing = [c for c in ("aoi_id", "aoi_name", "aoi_kind") if c not in aois.columns]
    if missing:
        raise InputFormatError(f"{gpkg}: layer 'aois' lacks {missing}; rerun the scan")
    if aois.empty:
        raise InputFormatError(f"{gpkg}: layer 'aois' is empty; rerun the scan")
    aois = aois[["aoi_id", "aoi_name", "aoi_kind", "geometry"]].copy()
    aois["aoi_id"] = aois["aoi_id"].astype(str)
    aois["aoi_name"] = aois["aoi_name"].astype(str)
    aois["aoi_kind"] = aois["aoi_kind"].astype(str)
    geoms = aois.geometry.to_numpy()
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        aois.loc[invalid, "geometry"] = shapely.make_valid(geoms[invalid])
    return aois.reset_index(drop=True)
