"""Reading mining titles and permits: a layer of the scan read like an AOI layer.

A title layer (GeoJSON, GeoPackage, Shapefile, anything GDAL reads) becomes one table with the
columns of :data:`TITLE_COLUMNS` (EPSG:4326, valid polygons, RFC 7946 winding), whatever its field
names and CRS. Two field conventions are built in, and explicit fields override them:

* ``sigmine``: Brazil's ANM SIGMINE layers (``PROCESSO``, ``NUMERO``, ``ANO``, ``AREA_HA``, ``ID``,
  ``FASE``, ``ULT_EVENTO``, ``NOME``, ``SUBS``, ``USO``, ``UF``): the process number is the id,
  ``FASE`` the phase (``AUTORIZAÇÃO DE PESQUISA``, ``CONCESSÃO DE LAVRA``, ...), ``NOME`` the
  holder, ``SUBS`` the substance, ``USO`` the use and ``UF`` the state;
* ``generic``: ``id``, ``phase``, ``holder``, ``substance``, ``valid_from``, ``valid_to`` (dates,
  ``YYYY-MM-DD``; an empty ``valid_to`` is open-ended).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import geopandas as gpd
import pandas as pd
import pyogrio
import pyproj
from pydantic import field_validator
from shapely.geometry.base import BaseGeometry

from aoi.config import resolve_path
from aoi.configfile import StrictConfig
from aoi.errors import AOIError, AOIFieldError, AOIGeometryError
from aoi.geometry import WGS84
from aoi.layers import (
    _GEOJSON_DRIVERS,
    _clean_geometry,
    _find_field,
    _finish_geometry,
    _open_layer,
    _read,
    _values,
)

log = logging.getLogger(__name__)

#: The columns of every title table, in order.
TITLE_COLUMNS: tuple[str, ...] = (
    "title_id", "phase", "holder", "substance", "use", "state", "valid_from", "valid_to",
    "geometry",
)

TitleConventionName = Literal["auto", "sigmine", "generic", "custom"]

#: The settings of :class:`TitlesConfig` that name a field, and the column each fills.
FIELD_SETTINGS: tuple[tuple[str, str], ...] = (
    ("id_field", "title_id"),
    ("phase_field", "phase"),
    ("holder_field", "holder"),
    ("substance_field", "substance"),
    ("use_field", "use"),
    ("state_field", "state"),
    ("valid_from_field", "valid_from"),
    ("valid_to_field", "valid_to"),
)


@dataclass(frozen=True)
class TitleConvention:
    """The field names of one well-known title source (None: the source has no such field).

    ``detect``: fields whose joint presence identifies the convention (``auto``).
    """

    name: str
    id_field: str
    phase_field: str
    holder_field: str | None
    substance_field: str | None
    use_field: str | None
    state_field: str | None
    valid_from_field: str | None
    valid_to_field: str | None
    detect: tuple[str, ...]

    def field(self, setting: str) -> str | None:
        value: str | None = getattr(self, setting)
        return value


TITLE_CONVENTIONS: tuple[TitleConvention, ...] = (
    # ANM SIGMINE (Sistema de Informações Geográficas da Mineração), one shapefile per state.
    TitleConvention(
        "sigmine", "PROCESSO", "FASE", "NOME", "SUBS", "USO", "UF", None, None,
        ("PROCESSO", "FASE"),
    ),
    TitleConvention(
        "generic", "id", "phase", "holder", "substance", None, None, "valid_from", "valid_to",
        ("id", "phase"),
    ),
)
"""Built-in title conventions, in the order ``auto`` tries them."""


class TitlesConfig(StrictConfig):
    """Where a mining-title layer is and how to read it (the ``legal.titles`` section).

    Attributes:
        path: the vector file; ``package:<package>/<file>`` names a file shipped with minewatch.
        layer: the layer of a multi-layer source (GeoPackage); required when there are several.
        convention: field convention; ``auto`` detects ``sigmine`` or ``generic`` fields.
        id_field, phase_field, holder_field, substance_field, use_field, state_field,
        valid_from_field, valid_to_field: field names, overriding the convention's.
        where: attribute filter in OGR SQL, applied while reading (e.g. ``UF = 'PA'``).
    """

    path: Path
    layer: str | None = None
    convention: TitleConventionName = "auto"
    id_field: str | None = None
    phase_field: str | None = None
    holder_field: str | None = None
    substance_field: str | None = None
    use_field: str | None = None
    state_field: str | None = None
    valid_from_field: str | None = None
    valid_to_field: str | None = None
    where: str | None = None

    @field_validator(
        "layer", *(s for s, _ in FIELD_SETTINGS), "where"
    )
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank; leave it out instead")
        return value


def _convention(config: TitlesConfig, fields: list[str]) -> TitleConvention | None:
    if config.convention == "custom":
        return None
    if config.convention == "auto":
        for convention in TITLE_CONVENTIONS:
            if all(_find_field(f, fields) for f in convention.detect):
                return convention
        return None
    return next(c for c in TITLE_CONVENTIONS if c.name == config.convention)


def _resolve_fields(
    config: TitlesConfig, fields: list[str], *, path: Path, layer: str
) -> tuple[TitleConvention | None, dict[str, str | None]]:
    """Column -> source field (None where the layer has none)."""
    convention = _convention(config, fields)
    resolved: dict[str, str | None] = {}
    for setting, column in FIELD_SETTINGS:
        explicit = getattr(config, setting)
        name = explicit if explicit is not None else (
            convention.field(setting) if convention else None
        )
        if name is None:
            resolved[column] = None
            continue
        found = _find_field(name, fields)
        if found is None:
            why = (
                f" (expected by the {convention.name!r} convention)"
                if explicit is None and convention is not None
                else ""
            )
            raise AOIFieldError(
                f"{path}: layer {layer!r} has no field {name!r}{why}; available fields: "
                f"{', '.join(fields) or 'none'}; set `legal.titles.{setting}` to one of them"
            )
        resolved[column] = found
    for column, setting in (("title_id", "id_field"), ("phase", "phase_field")):
        if resolved[column] is None:
            raise AOIFieldError(
                f"{path}: layer {layer!r}: no field gives the title's {column} (fields: "
                f"{', '.join(fields) or 'none'}; no known convention, 'sigmine' or 'generic', "
                f"matched); set `legal.titles.{setting}`"
            )
    return convention, resolved


def _date_or_none(value: str | None, *, label: str, field: str) -> str | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value[:10]).isoformat()
    except ValueError as exc:
        raise AOIError(
            f"{label}: {field} {value!r} is not a date; expected YYYY-MM-DD (or empty for "
            "open-ended)"
        ) from exc


def wgs84_geometries(
    frame: gpd.GeoDataFrame, labels: list[str], *, path: Path, layer: str, driver: str | None
) -> list[BaseGeometry]:
    """A layer's geometries checked, repaired and in EPSG:4326, as an AOI layer's
    (``labels`` name each feature in messages).

    Raises:
        AOIGeometryError: the layer has no CRS outside GeoJSON, or a geometry is empty or
            impossible.
    """
    crs = frame.crs
    if crs is None:
        if driver not in _GEOJSON_DRIVERS:
            raise AOIGeometryError(
                f"{path}: layer {layer!r} ({driver}) has no CRS; expected one "
                "(a .prj beside a Shapefile; SIGMINE and IBGE ship SIRGAS 2000, EPSG:4674); "
                "assign it, e.g. `ogr2ogr -a_srs EPSG:4674 fixed.gpkg input.shp`"
            )
        crs = pyproj.CRS.from_user_input(WGS84)
    crs = pyproj.CRS.from_user_input(crs)
    geoms = [
        _clean_geometry(g, src_geographic=crs.is_geographic, label=label)
        for g, label in zip(frame.geometry, labels, strict=True)
    ]
    series = gpd.GeoSeries(geoms, crs=crs)
    if not crs.equals(pyproj.CRS.from_user_input(WGS84)):
        series = series.to_crs(WGS84)
    return [_finish_geometry(g, label=label) for g, label in zip(series, labels, strict=True)]


def read_layer(
    path: Path,
    layer: str,
    columns: list[str],
    where: str | None,
    fields: list[str],
    *,
    bbox: tuple[float, float, float, float] | None,
    crs: str | None,
) -> gpd.GeoDataFrame:
    """The features of ``layer`` (only ``columns``) whose bounding box meets ``bbox`` (lon/lat;
    None: all), in the layer's CRS.

    Raises:
        AOIError: GDAL cannot read it, or it has no geometry.
    """
    if bbox is None:
        return _read(path, layer, columns, where, fields)
    layer_crs = pyproj.CRS.from_user_input(crs) if crs else pyproj.CRS.from_user_input(WGS84)
    transformer = pyproj.Transformer.from_crs(WGS84, layer_crs, always_xy=True)
    box = transformer.transform_bounds(*bbox, densify_pts=21)
    try:
        frame = pyogrio.read_dataframe(
            path, layer=layer, columns=columns, where=where, bbox=box, fid_as_index=True
        )
    except Exception as exc:  # GDAL errors surface as pyogrio DataSourceError/FieldError
        raise AOIError(f"{path}: layer {layer!r}: {exc}") from exc
    if not isinstance(frame, gpd.GeoDataFrame):
        raise AOIError(f"{path}: layer {layer!r} has no geometry column; expected polygons")
    return frame


def load_titles(
    config: TitlesConfig, *, bbox: tuple[float, float, float, float] | None = None
) -> gpd.GeoDataFrame:
    """Read a mining-title layer into the title table.

    Geometry is checked and repaired as an AOI layer's (:func:`aoi.load_aoi`): empty -> error,
    invalid -> repaired, reprojected to EPSG:4326, split at the antimeridian. Titles are not
    merged: a process with several polygons keeps one row each.

    Args:
        config: the title layer's settings.
        bbox: ``(west, south, east, north)`` in lon/lat: read only the titles whose bounding
            box meets it (a state's SIGMINE layer holds tens of thousands; a scan needs those
            over its area). None reads them all.

    Returns:
        A GeoDataFrame with the columns of :data:`TITLE_COLUMNS`: strings (None where the layer
        has no such field or value), ``valid_from``/``valid_to`` ISO dates or None, geometry in
        EPSG:4326.

    Raises:
        AOINotFoundError: the file or the layer does not exist.
        AOIFieldError: a configured or convention field is missing, or nothing gives the id or
            the phase.
        AOIGeometryError: an empty or impossible geometry, or no CRS outside GeoJSON.
        AOIError: the file cannot be read, a title has no id or phase, or a date is malformed.
    """
    path, layer, info, fields = _open_layer(lambda: resolve_path(config.path), config.layer)
    convention, resolved = _resolve_fields(config, fields, path=path, layer=layer)
    columns = sorted({f for f in resolved.values() if f is not None})
    frame = read_layer(path, layer, columns, config.where, fields, bbox=bbox, crs=info["crs"])
    values = {column: _values(frame, field) for column, field in resolved.items()}
    for column in ("title_id", "phase"):
        missing = [fid for fid, v in zip(frame.index, values[column], strict=True) if v is None]
        if missing:
            raise AOIError(
                f"{path}: {len(missing)} title(s) (fid {', '.join(map(str, missing[:5]))}) have "
                f"no value in {resolved[column]!r}; expected a {column} for every title; fill "
                "them in or leave them out with `where`"
            )
    labels = [f"{path}: title {i!r}" for i in values["title_id"]]
    for column in ("valid_from", "valid_to"):
        values[column] = [
            _date_or_none(v, label=label, field=str(resolved[column]))
            for v, label in zip(values[column], labels, strict=True)
        ]
    finished = wgs84_geometries(frame, labels, path=path, layer=layer, driver=info.get("driver"))
    table = pd.DataFrame({c: values[c] for c in TITLE_COLUMNS if c != "geometry"})
    out = gpd.GeoDataFrame(table, geometry=finished, crs=WGS84)
    for column in TITLE_COLUMNS[:-1]:
        out[column] = pd.Series(values[column], index=out.index, dtype=object)
    log.info(
        "%s: layer %r: %d title(s) (%s convention)", path, layer, len(out),
        convention.name if convention else "custom",
    )
    return out.reset_index(drop=True)
