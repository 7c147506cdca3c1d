"""Reading AOI layers: protected areas and indigenous lands from GeoJSON, GeoPackage, Shapefile.

:func:`load_aoi` turns any such layer into one table with exactly the columns ``aoi_id``,
``aoi_name``, ``aoi_kind`` and ``geometry`` (EPSG:4326, valid Polygon/MultiPolygon, split at the
antimeridian, RFC 7946 winding), one row per AOI, whatever the source's field names and CRS.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from aoi.config import (
    CONVENTIONS,
    OTHER,
    PLAIN_ID_FIELDS,
    PLAIN_NAME_FIELDS,
    AOIConfig,
    Convention,
    ConventionName,
    convention_named,
)
from aoi.errors import AOIError, AOIFieldError, AOIGeometryError, AOINotFoundError
from aoi.geometry import (
    WGS84,
    orient_rfc7946,
    repair_geometry,
    split_antimeridian,
    unwrap_antimeridian,
)

log = logging.getLogger(__name__)

AOI_COLUMNS = ("aoi_id", "aoi_name", "aoi_kind", "geometry")
"""The columns of every AOI table, in order."""

_GEOJSON_DRIVERS = frozenset({"GeoJSON", "GeoJSONSeq", "TopoJSON"})


def list_layers(path: Path | str) -> list[str]:
    """The names of the geometry layers of a vector file.

    Args:
        path: a vector file (GeoPackage, GeoJSON, Shapefile, ...).

    Returns:
        Layer names, in file order (non-spatial tables left out).

    Raises:
        AOINotFoundError: the file does not exist.
        AOIError: GDAL cannot read it as a vector source.
    """
    path = Path(path)
    if not _is_virtual(path) and not path.exists():
        raise AOINotFoundError(
            f"AOI file {path} does not exist; expected a GeoJSON, GeoPackage or Shapefile; "
            f"check the path (relative paths start at {Path.cwd()})"
        )
    try:
        layers = pyogrio.list_layers(path)
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise AOIError(
            f"{path}: cannot be read as a vector layer ({exc}); expected a GeoJSON, GeoPackage "
            "or Shapefile"
        ) from exc
    return [str(name) for name, geom_type in layers if geom_type is not None]


def _is_virtual(path: Path) -> bool:
    text = str(path)
    return text.startswith("/vsi") or "://" in text


def _open_layer(
    resolve: Callable[[], Path], layer: str | None
) -> tuple[Path, str, dict[str, Any], list[str]]:
    """The file (``resolve()``; its ValueError means not found), the chosen layer, its
    ``pyogrio`` info and its field names."""
    try:
        path = resolve()
    except ValueError as exc:
        raise AOINotFoundError(str(exc)) from exc
    layer = _choose_layer(path, layer)
    try:
        info = pyogrio.read_info(path, layer=layer)
    except Exception as exc:
        raise AOIError(f"{path}: layer {layer!r}: {exc}") from exc
    return path, layer, info, [str(f) for f in info["fields"]]


def _choose_layer(path: Path, layer: str | None) -> str:
    names = list_layers(path)
    if layer is not None:
        if layer not in names:
            raise AOINotFoundError(
                f"{path}: no layer {layer!r}; available layers: {', '.join(names) or 'none'}; "
                "set `layer` to one of them"
            )
        return layer
    if len(names) == 1:
        return names[0]
    if not names:
        raise AOIError(f"{path}: no geometry layer; expected at least one layer of polygons")
    raise AOIError(
        f"{path}: {len(names)} layers and no `layer` given; available layers: "
        f"{', '.join(names)}; set `layer` to the one holding the AOIs"
    )


def _find_field(name: str, fields: list[str]) -> str | None:
    if name in fields:
        return name
    folded = [f for f in fields if f.casefold() == name.casefold()]
    if len(folded) == 1:
        log.debug("field %r matched as %r (case-insensitive)", name, folded[0])
        return folded[0]
    return None


def _first_field(names: tuple[str, ...], fields: list[str]) -> str | None:
    """The first of ``names`` present in ``fields`` (case-insensitively), if any."""
    for name in names:
        found = _find_field(name, fields)
        if found is not None:
            log.info(
                "field %r taken as the %s field (no convention matched)",
                found,
                "id" if names == PLAIN_ID_FIELDS else "name",
            )
            return found
    return None


def _usable_plain_ids(ids: list[str | None], names: list[str | None]) -> bool:
    """A plain ``id`` field found without a setting is used when every feature has a value and
    features sharing one also share their name (the parts of one area)."""
    seen: dict[str, str | None] = {}
    for aoi_id, name in zip(ids, names, strict=True):
        if aoi_id is None or seen.setdefault(aoi_id, name) != name:
            return False
    return True


def _detect_convention(fields: list[str]) -> Convention | None:
    for convention in CONVENTIONS:
        if all(_find_field(f, fields) for f in convention.detect):
            return convention
    return None


def _require_field(
    name: str, fields: list[str], *, path: Path, layer: str, setting: str, why: str = ""
) -> str:
    found = _find_field(name, fields)
    if found is None:
        raise AOIFieldError(
            f"{path}: layer {layer!r} has no field {name!r}{why}; available fields: "
            f"{', '.join(fields) or 'none'}; set `{setting}` to one of them"
        )
    return found


class _Fields:
    """The resolved fields of one layer."""

    def __init__(self, config: AOIConfig, fields: list[str], *, path: Path, layer: str) -> None:
        requested: ConventionName = config.convention
        convention = (
            _detect_convention(fields) if requested == "auto" else convention_named(requested)
        )
        self.convention = convention
        why = f" (expected by the {convention.name!r} convention)" if convention else ""

        def pick(explicit: str | None, default: str | None, setting: str) -> str | None:
            if explicit is not None:
                return _require_field(explicit, fields, path=path, layer=layer, setting=setting)
            if default is None:
                return None
            return _require_field(default, fields, path=path, layer=layer, setting=setting,
                                  why=why)

        self.id_field = pick(config.id_field, convention.id_field if convention else None,
                             "id_field")
        self.name_field = pick(config.name_field, convention.name_field if convention else None,
                               "name_field")
        #: the id field is a plain ``id`` found without a setting (checked for unique values)
        self.plain_id = False
        if convention is None:
            if self.id_field is None:
                self.id_field = _first_field(PLAIN_ID_FIELDS, fields)
                self.plain_id = self.id_field is not None
            if self.name_field is None:
                self.name_field = _first_field(PLAIN_NAME_FIELDS, fields)
        self.kind_field: str | None = None
        if config.kind_field is not None:
            self.kind_field = pick(config.kind_field, None, "kind_field")
        elif config.kind_map and convention and convention.kind_field:
            self.kind_field = pick(None, convention.kind_field, "kind_field")
        elif config.kind_map:
            raise AOIError(
                f"{path}: kind_map is set but no kind_field says which field to map; "
                f"set `kind_field` to one of: {', '.join(fields)}"
            )
        self.default_kind = config.kind or (convention.kind if convention else None)
        log.debug(
            "%s: layer %r: convention %s, id %s, name %s, kind field %s, default kind %s",
            path, layer, convention.name if convention else "custom", self.id_field,
            self.name_field, self.kind_field, self.default_kind,
        )

    def columns(self) -> list[str]:
        return sorted({f for f in (self.id_field, self.name_field, self.kind_field) if f})


def _as_text(value: Any) -> str | None:
    """A field value as a clean string; None for missing values. 12.0 -> '12'."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):  # lists and dicts
        pass
    text = str(value).strip()
    return text or None


def _check_lonlat(geom: BaseGeometry, *, label: str) -> None:
    """Reject coordinates that cannot be lon/lat degrees, naming the value and the likely fix."""
    minx, miny, maxx, maxy = geom.bounds
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise AOIGeometryError(
            f"{label}: non-finite coordinates (bounds {geom.bounds}); expected lon/lat degrees; "
            "check the source CRS"
        )
    biggest = max(abs(minx), abs(maxx), abs(miny), abs(maxy))
    projected_hint = (
        "; they look like projected coordinates (metres) read as lon/lat: declare the file's "
        "CRS, or reproject it to EPSG:4326 (GeoJSON must be lon/lat WGS 84, RFC 7946)"
    )
    if miny < -90.0 or maxy > 90.0:
        bad = miny if miny < -90.0 else maxy
        if biggest > 540.0:
            raise AOIGeometryError(
                f"{label}: latitude {bad:g} is outside -90..90; expected lon/lat degrees"
                + projected_hint
            )
        if max(abs(minx), abs(maxx)) <= 90.0 and max(abs(miny), abs(maxy)) <= 180.0:
            raise AOIGeometryError(
                f"{label}: latitude {bad:g} is outside -90..90 while every longitude is within "
                "-90..90: looks like (lat, lon) order; swap axes so that x is the longitude and "
                "y the latitude (GeoJSON is lon, lat per RFC 7946)"
            )
        raise AOIGeometryError(
            f"{label}: latitude {bad:g} is outside -90..90; expected lon/lat degrees "
            "(EPSG:4326); fix the coordinates or declare the file's CRS"
        )
    if minx < -180.0 or maxx > 180.0:
        bad = minx if minx < -180.0 else maxx
        if biggest > 540.0:
            raise AOIGeometryError(
                f"{label}: longitude {bad:g} is outside -180..180; expected lon/lat degrees"
                + projected_hint
            )
        straddles = (minx < 180.0 < maxx or minx < -180.0 < maxx) and maxx - minx < 360.0
        if not straddles:
            raise AOIGeometryError(
                f"{label}: longitude {bad:g} is outside -180..180; expected lon/lat degrees "
                "(EPSG:4326); if the data uses 0..360 longitudes, subtract 360 from those "
                "above 180"
            )


def _read(path: Path, layer: str, columns: list[str], where: str | None,
          fields: list[str]) -> gpd.GeoDataFrame:
    try:
        frame = pyogrio.read_dataframe(
            path, layer=layer, columns=columns, where=where, fid_as_index=True
        )
    except Exception as exc:  # GDAL errors surface as pyogrio DataSourceError/FieldError
        hint = (
            f"; check the `where` filter {where!r} (OGR SQL, fields: {', '.join(fields)})"
            if where else ""
        )
        raise AOIError(f"{path}: layer {layer!r}: {exc}{hint}") from exc
    if not isinstance(frame, gpd.GeoDataFrame):
        raise AOIError(f"{path}: layer {layer!r} has no geometry column; expected polygons")
    return frame


def _values(frame: pd.DataFrame, field: str | None) -> list[str | None]:
    if field is None:
        return [None] * len(frame)
    return [_as_text(v) for v in frame[field].tolist()]


def _kinds(
    frame: pd.DataFrame, resolved: _Fields, kind_map: Mapping[str, str], *, path: Path,
    ids: list[str],
) -> list[str]:
    raw = _values(frame, resolved.kind_field)
    kinds: list[str] = []
    unmapped: set[str] = set()
    for aoi_id, value in zip(ids, raw, strict=True):
        if value is not None and value in kind_map:
            kinds.append(kind_map[value])
        elif resolved.default_kind is not None:
            if value is not None and kind_map:
                unmapped.add(value)
            kinds.append(resolved.default_kind)
        elif value is not None:
            kinds.append(value)
        elif resolved.kind_field is not None:
            raise AOIError(
                f"{path}: AOI {aoi_id!r} has no value in kind field {resolved.kind_field!r}; "
                "expected a kind for every AOI; fill it in, or set `kind` for the whole layer"
            )
        else:
            kinds.append(OTHER)
    if unmapped:
        log.info(
            "%s: %d value(s) of %r not in kind_map kept kind %r: %s", path, len(unmapped),
            resolved.kind_field, resolved.default_kind, ", ".join(sorted(unmapped)[:10]),
        )
    if resolved.kind_field is None and resolved.default_kind is None:
        log.warning(
            "%s: no kind, kind_field or known convention; every AOI gets kind %r; set `kind` "
            "(protected_area, indigenous_land, ...) to say what the layer holds", path, OTHER,
        )
    return kinds


def _clean_geometry(geom: BaseGeometry | None, *, src_geographic: bool, label: str
                    ) -> BaseGeometry:
    if geom is None or geom.is_empty:
        raise AOIGeometryError(
            f"{label}: empty geometry; expected a Polygon or MultiPolygon; remove the feature "
            "or leave it out with `where`"
        )
    geom = shapely.force_2d(geom)
    if src_geographic:
        _check_lonlat(geom, label=label)
    return geom


def _finish_geometry(geom: BaseGeometry, *, label: str) -> BaseGeometry:
    _check_lonlat(geom, label=label)
    try:
        geom = unwrap_antimeridian(geom)
        geom, reason = repair_geometry(geom)
        if reason is not None:
            log.warning(
                "%s: invalid geometry (%s); repaired with shapely.make_valid, keeping its "
                "polygonal parts", label, reason,
            )
        geom = split_antimeridian(geom)
    except AOIGeometryError as exc:
        raise AOIGeometryError(f"{label}: {exc}") from exc
    return orient_rfc7946(geom)


def _dissolve_duplicates(table: pd.DataFrame, *, path: Path) -> pd.DataFrame:
    if table["aoi_id"].is_unique:
        return table
    rows = []
    for aoi_id, group in table.groupby("aoi_id", sort=False):
        if len(group) > 1:
            names, kinds = set(group["aoi_name"]), set(group["aoi_kind"])
            if len(names) > 1 or len(kinds) > 1:
                raise AOIError(
                    f"{path}: aoi_id {aoi_id!r} is shared by {len(group)} features with "
                    f"different names/kinds ({', '.join(sorted(names | kinds))}); expected one "
                    "id per AOI; set `id_field` to a unique field"
                )
            log.info("%s: AOI %r is %d features; merged into one", path, aoi_id, len(group))
            merged = shapely.union_all(list(group["geometry"]))
            merged, _ = repair_geometry(merged)
            rows.append({**group.iloc[0].to_dict(), "geometry": orient_rfc7946(merged)})
        else:
            rows.append(group.iloc[0].to_dict())
    return pd.DataFrame(rows, columns=list(AOI_COLUMNS))


def _aoi_ids(
    frame: pd.DataFrame,
    resolved: _Fields,
    ids: list[str | None],
    names: list[str | None],
    *,
    path: Path,
    fields: list[str],
) -> list[str]:
    """The AOI ids: the id field's values, or feature numbers when there is no (usable) id field.

    Raises:
        AOIError: a feature has no value in the id field.
    """
    if resolved.plain_id and not _usable_plain_ids(ids, names):
        log.warning(
            "%s: field %r is not a complete id (empty values, or one value for differently "
            "named areas); AOIs are named by feature number instead; set `id_field` to use it "
            "anyway",
            path, resolved.id_field,
        )
        resolved.id_field = None
    if resolved.id_field is None:
        ids = [f"{Path(str(path)).stem}-{fid}" for fid in frame.index]
        log.warning(
            "%s: no id_field and no known convention (fields: %s); AOIs are named by feature "
            "number (%s, ...); set `id_field` for ids that survive edits to the file",
            path, ", ".join(fields), ids[0],
        )
    missing = [fid for fid, v in zip(frame.index, ids, strict=True) if v is None]
    if missing:
        raise AOIError(
            f"{path}: {len(missing)} feature(s) (fid {', '.join(map(str, missing[:5]))}) have no "
            f"value in id field {resolved.id_field!r}; expected an id for every AOI; fill them "
            "in or set `id_field` to a complete field"
        )
    return [str(v) for v in ids]


def _layer_crs(frame: gpd.GeoDataFrame, info: Mapping[str, Any], *, path: Path, layer: str
               ) -> pyproj.CRS:
    """The layer's CRS; a GeoJSON without one is WGS 84 lon/lat (RFC 7946).

    Raises:
        AOIGeometryError: a layer that is not GeoJSON has no CRS.
    """
    crs = frame.crs
    if crs is None:
        if info.get("driver") in _GEOJSON_DRIVERS:
            log.debug("%s: GeoJSON without CRS read as EPSG:4326 (RFC 7946)", path)
            crs = pyproj.CRS.from_user_input(WGS84)
        else:
            raise AOIGeometryError(
                f"{path}: layer {layer!r} ({info.get('driver')}) has no CRS; expected one "
                "(a .prj beside a Shapefile); assign it, e.g. "
                "`ogr2ogr -a_srs EPSG:31981 fixed.gpkg input.shp`"
            )
    return pyproj.CRS.from_user_input(crs)


def _geometries(frame: gpd.GeoDataFrame, crs: pyproj.CRS, labels: list[str], *, path: Path
                ) -> list[BaseGeometry]:
    """Every feature's geometry checked, reprojected to EPSG:4326, repaired, split at the
    antimeridian and wound per RFC 7946."""
    geoms = [
        _clean_geometry(g, src_geographic=crs.is_geographic, label=label)
        for g, label in zip(frame.geometry, labels, strict=True)
    ]
    series = gpd.GeoSeries(geoms, crs=crs)
    if not crs.equals(pyproj.CRS.from_user_input(WGS84)):
        log.info("%s: reprojecting %d AOI(s) from %s to EPSG:4326", path, len(series),
                 crs.to_string())
        series = series.to_crs(WGS84)
    return [_finish_geometry(g, label=label) for g, label in zip(series, labels, strict=True)]


def load_aoi(config: AOIConfig) -> gpd.GeoDataFrame:
    """Read an AOI layer into the minewatch AOI table.

    Reads the layer (choosing the GeoPackage layer, applying ``where``), resolves the id, name and
    kind fields (explicit settings over the convention, ``auto`` detecting WDPA, FUNAI, AMW or
    RAISG fields), reprojects to EPSG:4326, and validates every geometry: empty -> error,
    invalid -> repaired with ``shapely.make_valid`` (a WARNING names the AOI and the reason),
    coordinates outside ±180/±90 -> error, crossing the antimeridian -> split at ±180.
    Features sharing an id (and name and kind) are merged into one AOI. A GeoJSON without CRS is
    WGS 84 lon/lat (RFC 7946); any other source without CRS is an error.

    Args:
        config: the AOI configuration.

    Returns:
        A GeoDataFrame with exactly the columns ``aoi_id``, ``aoi_name``, ``aoi_kind`` (strings)
        and ``geometry`` (Polygon/MultiPolygon, EPSG:4326), one row per AOI, in file order.

    Raises:
        AOINotFoundError: the file or the layer does not exist.
        AOIFieldError: a configured (or convention) field is missing from the layer.
        AOIGeometryError: an empty, non-polygonal or unrepairable geometry, coordinates that
            cannot be lon/lat (swapped axes, projected metres, out of range), or a layer
            without CRS that is not GeoJSON.
        AOIError: the file cannot be read, the layer is ambiguous, the filter matches nothing,
            an id is missing, or an id names two different AOIs.
    """
    path, layer, info, fields = _open_layer(config.resolved_path, config.layer)
    if info.get("features") == 0:  # before the fields: an empty GeoJSON layer has none
        raise AOIError(
            f"{path}: layer {layer!r} has no features; expected at least one AOI polygon"
        )
    resolved = _Fields(config, fields, path=path, layer=layer)
    frame = _read(path, layer, resolved.columns(), config.where, fields)
    where = f" matching where {config.where!r}" if config.where else ""
    if frame.empty:
        raise AOIError(
            f"{path}: layer {layer!r} has no features{where}; expected at least one AOI polygon"
        )

    ids = _values(frame, resolved.id_field)
    names = _values(frame, resolved.name_field)
    aoi_ids = _aoi_ids(frame, resolved, ids, names, path=path, fields=fields)
    unnamed = sum(n is None for n in names)
    if unnamed:
        log.warning(
            "%s: %d AOI(s) have no name%s; their aoi_id is used as name",
            path, unnamed,
            f" in field {resolved.name_field!r}" if resolved.name_field else " field",
        )
    aoi_names = [n if n is not None else i for n, i in zip(names, aoi_ids, strict=True)]
    aoi_kinds = _kinds(frame, resolved, config.kind_map, path=path, ids=aoi_ids)
    labels = [f"{path}: AOI {i!r} ({n})" for i, n in zip(aoi_ids, aoi_names, strict=True)]

    crs = _layer_crs(frame, info, path=path, layer=layer)
    finished = _geometries(frame, crs, labels, path=path)
    table = pd.DataFrame(
        {"aoi_id": aoi_ids, "aoi_name": aoi_names, "aoi_kind": aoi_kinds, "geometry": finished}
    )
    table = _dissolve_duplicates(table, path=path)
    out = gpd.GeoDataFrame(table, geometry="geometry", crs=WGS84).reset_index(drop=True)
    for column in ("aoi_id", "aoi_name", "aoi_kind"):
        out[column] = out[column].astype(object)
    log.info(
        "%s: layer %r: %d AOI(s) (%s convention)", path, layer, len(out),
        resolved.convention.name if resolved.convention else "custom",
    )
    return out


def load_aoi_file(
    path: Path | str,
    *,
    layer: str | None = None,
    id_field: str | None = None,
    name_field: str | None = None,
    kind_field: str | None = None,
    kind: str | None = None,
    kind_map: Mapping[str, str] | None = None,
    where: str | None = None,
    convention: ConventionName = "auto",
) -> gpd.GeoDataFrame:
    """Read an AOI layer without writing a config: :func:`load_aoi` with these settings.

    Args:
        path: the vector file.
        layer: GeoPackage layer.
        id_field: field with the AOI id.
        name_field: field with the AOI name.
        kind_field: field with the raw designation.
        kind: one kind for the whole layer.
        kind_map: raw designation -> kind.
        where: OGR SQL attribute filter.
        convention: field convention (``auto`` detects it).

    Returns:
        The AOI table (see :func:`load_aoi`).

    Raises:
        AOIError: as :func:`load_aoi`; a bad combination of settings raises AOIError too.
    """
    try:
        config = AOIConfig(
            path=Path(path), layer=layer, id_field=id_field, name_field=name_field,
            kind_field=kind_field, kind=kind, kind_map=dict(kind_map or {}), where=where,
            convention=convention,
        )
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise AOIError(f"AOI settings for {path}: {exc}") from exc
    return load_aoi(config)
