"""Imagery sources behind one interface: find the scenes over an area and period, read them.

`open_source` builds the source a scan config's ``source`` section names: ``local`` (a folder of
GeoTIFF scenes, DESIGN.md section 3), ``synthetic`` (the synthetic world, generated once and read
back as ``local``), ``stac`` (COGs found through any STAC API) and ``sentinelhub`` (the Catalog and
Process APIs). A new source is a room here (``_x.py``) with a class of the `Source` protocol,
opened by `open_source`; the modules inside are private.
"""

from tiles.sources._local import list_scenes, read_scene, scene_footprint_intersects
from tiles.sources._local_format import (
    SCENE_JSON,
    TAG_BOA_ADD_OFFSET,
    TAG_DATETIME,
    TAG_PROCESSING_BASELINE,
    TAG_PROCESSING_LEVEL,
    TAG_RADIO_ADD_OFFSET,
    TIFF_SUFFIXES,
    UNKNOWN_BASELINE,
)
from tiles.sources._sentinelhub import (
    ACQUISITION_TOLERANCE,
    CLM_TO_SCL,
    SentinelHubSource,
    decode_process_answer,
    evalscript,
    read_credentials,
    split_cell,
)
from tiles.sources._source import (
    LocalSource,
    ProgressFn,
    Source,
    SyntheticSource,
    ensure_world,
    footprint_wgs84,
    open_source,
)
from tiles.sources._stac import StacSource
from tiles.sources._stac_io import RetryingStacApiIO, SasSigner
from tiles.sources._stac_items import (
    EARTH_SEARCH_ASSETS,
    KEPT_PROPERTIES,
    item_baseline,
    item_boa_offset,
    item_level,
    item_to_scene_info,
)

__all__ = [
    "ACQUISITION_TOLERANCE",
    "CLM_TO_SCL",
    "EARTH_SEARCH_ASSETS",
    "KEPT_PROPERTIES",
    "SCENE_JSON",
    "TAG_BOA_ADD_OFFSET",
    "TAG_DATETIME",
    "TAG_PROCESSING_BASELINE",
    "TAG_PROCESSING_LEVEL",
    "TAG_RADIO_ADD_OFFSET",
    "TIFF_SUFFIXES",
    "UNKNOWN_BASELINE",
    "LocalSource",
    "ProgressFn",
    "RetryingStacApiIO",
    "SasSigner",
    "SentinelHubSource",
    "Source",
    "StacSource",
    "SyntheticSource",
    "decode_process_answer",
    "ensure_world",
    "evalscript",
    "footprint_wgs84",
    "item_baseline",
    "item_boa_offset",
    "item_level",
    "item_to_scene_info",
    "list_scenes",
    "open_source",
    "read_credentials",
    "read_scene",
    "scene_footprint_intersects",
    "split_cell",
]
