"""Reading a municipal boundary layer (the ``admin`` section of a scan config).

Brazilian agencies file alerts by municipality and state (DETER's ``municipali`` / ``uf``,
MapBiomas Alerta's ``crossedCities`` / ``crossedStates``). minewatch ships no such layer; IBGE's
municipal mesh (*Malha Municipal*, e.g. ``BR_Municipios_2022``: fields ``CD_MUN``, ``NM_MUN``,
``SIGLA_UF``, SIRGAS 2000) is the usual one, and its field names are the defaults here. Any
polygon layer GDAL reads works with its own field names.
"""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
from pydantic import field_validator

from aoi.config import resolve_path
from aoi.configfile import StrictConfig
from aoi.geometry import WGS84
from aoi.layers import _as_text, _open_layer, _require_field
from aoi.titles import read_layer, wgs84_geometries

log = logging.getLogger(__name__)

#: Columns of the table :func:`load_admin` returns.
ADMIN_COLUMNS: tuple[str, ...] = ("municipality", "state", "geometry")


class AdminConfig(StrictConfig):
    """Where the municipal boundary layer is and which fields name the municipality and state.

    Attributes:
        layer: the vector file (GeoPackage, Shapefile, GeoJSON...), e.g. IBGE's
            ``BR_Municipios_2022.shp``.
        layer_name: the layer of a multi-layer source; required when there are several.
        municipality_field: the field with the municipality's name (IBGE: ``NM_MUN``).
        state_field: the field with the state (IBGE: ``SIGLA_UF``, the two-letter UF).
    """

    layer: Path
    layer_name: str | None = None
    municipality_field: str = "NM_MUN"
    state_field: str = "SIGLA_UF"

    @field_validator("layer_name", "municipality_field", "state_field")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"{value!r}: must not be blank")
        return value


def load_admin(
    config: AdminConfig, *, bbox: tuple[float, float, float, float] | None = None
) -> gpd.GeoDataFrame:
    """Read the municipalities over ``bbox`` (lon/lat; None: all) into a table with
    :data:`ADMIN_COLUMNS` (strings, geometry in EPSG:4326, checked and repaired as an AOI
    layer's).

    Raises:
        AOINotFoundError: the file or the layer does not exist.
        AOIFieldError: a configured field is missing (the message lists the layer's fields).
        AOIGeometryError: an empty or impossible geometry, or no CRS outside GeoJSON.
        AOIError: the file cannot be read.
    """
    path, layer, info, fields = _open_layer(lambda: resolve_path(config.layer), config.layer_name)
    names = {
        column: _require_field(
            name, fields, path=path, layer=layer, setting=f"admin.{column}_field"
        )
        for column, name in (
            ("municipality", config.municipality_field),
            ("state", config.state_field),
        )
    }
    frame = read_layer(
        path, layer, sorted(set(names.values())), None, fields, bbox=bbox, crs=info["crs"]
    )
    values = {c: [_as_text(v) for v in frame[f]] for c, f in names.items()}
    labels = [f"{path}: municipality {m!r}" for m in values["municipality"]]
    geoms = wgs84_geometries(frame, labels, path=path, layer=layer, driver=info.get("driver"))
    log.info("%s: layer %r: %d municipality polygon(s) over the scan", path, layer, len(frame))
    return gpd.GeoDataFrame(values, geometry=geoms, crs=WGS84)
