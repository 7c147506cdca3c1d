"""aoi: areas of interest (protected areas, indigenous lands) and the processing grid over them.

Read a boundary layer into the AOI table (``aoi_id``, ``aoi_name``, ``aoi_kind``, ``geometry`` in
EPSG:4326), buffer it in metres, and lay UTM chips aligned to the MGRS 100 km squares over it::

    from aoi import AOIConfig, load_aoi, buffer_aoi, make_grid

    aois = load_aoi(AOIConfig(path="package:aoi/data/munduruku.geojson"))
    watched = buffer_aoi(aois, 5000)
    cells = make_grid(watched, chip_size_px=512, resolution_m=10)
"""

from __future__ import annotations

from aoi.config import (
    CONVENTIONS,
    INDIGENOUS_LAND,
    OTHER,
    PROTECTED_AREA,
    AOIConfig,
    Convention,
    resolve_path,
)
from aoi.data import DEMO_AOI, bundled_aoi_path, demo_aoi_config
from aoi.errors import AOIError, AOIFieldError, AOIGeometryError, AOINotFoundError
from aoi.geometry import (
    EQUAL_AREA_CRS,
    WGS84,
    area_ha,
    buffer_aoi,
    buffer_geometry,
    repair_geometry,
    split_antimeridian,
    to_equal_area,
    to_wgs84,
    utm_crs_for,
    utm_zone_for,
)
from aoi.grid import (
    GridCell,
    cell_footprint,
    cells_intersecting,
    grid_to_geodataframe,
    make_grid,
    mgrs_tile_id,
)
from aoi.layers import AOI_COLUMNS, list_layers, load_aoi, load_aoi_file

__all__ = [
    "AOI_COLUMNS",
    "CONVENTIONS",
    "DEMO_AOI",
    "EQUAL_AREA_CRS",
    "INDIGENOUS_LAND",
    "OTHER",
    "PROTECTED_AREA",
    "WGS84",
    "AOIConfig",
    "AOIError",
    "AOIFieldError",
    "AOIGeometryError",
    "AOINotFoundError",
    "Convention",
    "GridCell",
    "area_ha",
    "buffer_aoi",
    "buffer_geometry",
    "bundled_aoi_path",
    "cell_footprint",
    "cells_intersecting",
    "demo_aoi_config",
    "grid_to_geodataframe",
    "list_layers",
    "load_aoi",
    "load_aoi_file",
    "make_grid",
    "mgrs_tile_id",
    "repair_geometry",
    "resolve_path",
    "split_antimeridian",
    "to_equal_area",
    "to_wgs84",
    "utm_crs_for",
    "utm_zone_for",
]
