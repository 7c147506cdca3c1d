"""Probabilities -> masks -> polygons -> tracked sites, and their attribution (AOIs, legal)."""

from __future__ import annotations

from detection.sites._context import (
    ADMIN_COLUMNS,
    AOI_COLUMNS,
    area_inside_ha,
    attribute_admin,
    attribute_aois,
)
from detection.sites._legal import (
    DEFAULT_CLOSED_AOI_KINDS,
    DEFAULT_EXTRACTION_PHASES,
    LEGAL_STATUSES,
    LegalConfig,
    assign_legal_status,
    legal_columns,
    normalise_phase,
    statuses_of,
)
from detection.sites._masks import (
    SITE_TABLE_COLUMNS,
    MaskOptions,
    SiteStream,
    class_mask,
    finish_sites,
    merge_tile_sites,
    resolve_thresholds,
    sites_from_probabilities,
)
from detection.sites._polygonize import (
    POLYGON_COLUMNS,
    TracedRegions,
    polygonize_mask,
    regions_frame,
    simplify_metres,
    trace_regions,
)
from detection.sites._sites import (
    EQUAL_AREA_CRS,
    HISTORY_COLUMNS,
    SITE_COLUMNS,
    STATUSES,
    TRACK_COLUMNS,
    append_history,
    merge_parts,
    new_site_id,
    track_sites,
)

__all__ = [
    "ADMIN_COLUMNS",
    "AOI_COLUMNS",
    "DEFAULT_CLOSED_AOI_KINDS",
    "DEFAULT_EXTRACTION_PHASES",
    "EQUAL_AREA_CRS",
    "HISTORY_COLUMNS",
    "LEGAL_STATUSES",
    "POLYGON_COLUMNS",
    "SITE_COLUMNS",
    "SITE_TABLE_COLUMNS",
    "STATUSES",
    "TRACK_COLUMNS",
    "LegalConfig",
    "MaskOptions",
    "SiteStream",
    "TracedRegions",
    "append_history",
    "area_inside_ha",
    "assign_legal_status",
    "attribute_admin",
    "attribute_aois",
    "class_mask",
    "finish_sites",
    "legal_columns",
    "merge_parts",
    "merge_tile_sites",
    "new_site_id",
    "normalise_phase",
    "polygonize_mask",
    "regions_frame",
    "resolve_thresholds",
    "simplify_metres",
    "sites_from_probabilities",
    "statuses_of",
    "trace_regions",
    "track_sites",
]
