"""alerts.geojson against a JSON Schema of RFC 7946 plus the alert contract, and GDAL's reader."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import geopandas as gpd
import jsonschema
import pyogrio
import shapely
from shapely.geometry import shape

from detection.alerts import (
    ALERT_PROPERTIES,
    AOI_RELATIONS,
    CONFIDENCE_LEVELS,
    REVIEW_STATUSES,
    STATUSES,
    build_feature_collection,
    write_evidence,
    write_geojson,
)
from tests.detection.rasters import write_units
from tiles.periods import Period

_POSITION = {
    "type": "array",
    "minItems": 2,
    "maxItems": 3,
    "prefixItems": [
        {"type": "number", "minimum": -180, "maximum": 180},
        {"type": "number", "minimum": -90, "maximum": 90},
    ],
    "items": {"type": "number"},
}
_RING = {"type": "array", "minItems": 4, "items": _POSITION}
_POLYGON = {"type": "array", "minItems": 1, "items": _RING}
_DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
_SPAN = {
    "type": "object",
    "required": ["start", "end"],
    "properties": {"start": _DATE, "end": _DATE},
}
_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}

_AREA = {"type": "number", "minimum": 0}
_OPTIONAL_DATE = {"oneOf": [_DATE, {"type": "null"}]}
_OPTIONAL_TEXT = {"oneOf": [{"type": "string", "minLength": 1}, {"type": "null"}]}

#: The properties format 2.0 added (docs/alerts.md, *Format versions*).
PROPERTIES_2_0: dict[str, Any] = {
    "first_image_date": _OPTIONAL_DATE,
    "last_image_date": _OPTIONAL_DATE,
    "lon": {"type": "number", "minimum": -180, "maximum": 180},
    "lat": {"type": "number", "minimum": -90, "maximum": 90},
    "aoi_area_ha": {"oneOf": [_AREA, {"type": "null"}]},
    "aoi_areas": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["aoi_id", "aoi_name", "area_ha"],
            "additionalProperties": False,
            "properties": {"aoi_id": {"type": "string"}, "aoi_name": {}, "area_ha": _AREA},
        },
    },
    "municipality": _OPTIONAL_TEXT,
    "state": _OPTIONAL_TEXT,
    "municipalities": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["municipality", "state", "area_ha"],
            "additionalProperties": False,
            "properties": {"municipality": {}, "state": {}, "area_ha": _AREA},
        },
    },
    "satellite": {"const": "Sentinel-2"},
    "platforms": {"type": "array", "items": {"enum": ["S2A", "S2B", "S2C", "S2D"]}},
    "sensor": {"const": "MSI"},
    "processing_level": {"oneOf": [{"enum": ["L1C", "L2A"]}, {"type": "null"}]},
}

#: RFC 7946 FeatureCollection of (Multi)Polygons (sections 3.1.6, 3.1.7, 3.2, 3.3, 4: no
#: ``crs``), with the properties of DESIGN.md section 6 and the ``minewatch`` member.
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["type", "features", "minewatch"],
    "not": {"required": ["crs"]},
    "properties": {
        "type": {"const": "FeatureCollection"},
        "minewatch": {
            "type": "object",
            "required": [
                "version",
                "run_id",
                "generated_at",
                "period",
                "previous_period",
                "model",
                "source",
                "confidence_levels",
            ],
            "properties": {
                "generated_at": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T[\d:]{8}Z$"},
                "period": _SPAN,
                "previous_period": {"oneOf": [_SPAN, {"type": "null"}]},
                "model": {"type": "object", "required": ["name", "version", "sha256"]},
                "confidence_levels": {
                    "type": "object",
                    "required": list(CONFIDENCE_LEVELS),
                    "additionalProperties": _FRACTION,
                },
            },
        },
        "features": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "id", "geometry", "properties"],
                "not": {"required": ["crs"]},
                "properties": {
                    "type": {"const": "Feature"},
                    "id": {"type": "string"},
                    "geometry": {
                        "oneOf": [
                            {
                                "type": "object",
                                "required": ["type", "coordinates"],
                                "properties": {
                                    "type": {"const": "Polygon"},
                                    "coordinates": _POLYGON,
                                },
                            },
                            {
                                "type": "object",
                                "required": ["type", "coordinates"],
                                "properties": {
                                    "type": {"const": "MultiPolygon"},
                                    "coordinates": {"type": "array", "items": _POLYGON},
                                },
                            },
                        ]
                    },
                    "properties": {
                        "type": "object",
                        "required": list(ALERT_PROPERTIES),
                        "additionalProperties": False,
                        "properties": {
                            "site_id": {"type": "string", "minLength": 1},
                            "alert_class": {"enum": ["mining", "deforestation"]},
                            "status": {"enum": list(STATUSES)},
                            "area_ha": {"type": "number", "minimum": 0},
                            "area_change_ha": {"type": "number"},
                            "confidence": _FRACTION,
                            "confidence_level": {"enum": list(CONFIDENCE_LEVELS)},
                            "first_detected": _DATE,
                            "last_detected": _DATE,
                            "period_start": _DATE,
                            "period_end": _DATE,
                            "observed_fraction": _FRACTION,
                            "aoi_id": {"type": "string"},
                            "aoi_name": {"type": "string"},
                            "aoi_kind": {"type": "string"},
                            "aoi_relation": {"enum": list(AOI_RELATIONS)},
                            "distance_to_boundary_m": {"type": "number", "minimum": 0},
                            "legal_status": {
                                "enum": [
                                    "prohibited_area",
                                    "unknown",
                                    "no_title",
                                    "titled",
                                    "title_phase_not_extraction",
                                ]
                            },
                            "legal": {"type": "object"},
                            "tile_id": {"type": "string"},
                            "scene_ids": {"type": "array", "items": {"type": "string"}},
                            "evidence": {"type": "object"},
                            "review_status": {"enum": list(REVIEW_STATUSES)},
                            **PROPERTIES_2_0,
                        },
                    },
                },
            },
        },
    },
}


def _signed_area(ring: list[list[float]]) -> float:
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in itertools.pairwise(ring)) / 2


def test_alerts_geojson_is_rfc7946_and_the_contract(
    alerts: gpd.GeoDataFrame, metadata: dict, q2: Period, q3: Period, tmp_path: Path
) -> None:
    units = tmp_path / "units"
    write_units(units, q2)
    write_units(units, q3)
    alerts = write_evidence(
        alerts, units_dir=units, period=q3, previous_period=q2, out_dir=tmp_path
    )
    path = tmp_path / "alerts.geojson"
    write_geojson(path, build_feature_collection(alerts, metadata=metadata))
    doc = json.loads(path.read_text(encoding="utf-8"))

    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(doc, SCHEMA)
    # The schema has teeth: a crs member or a status outside the contract fails.
    for broken in ({**doc, "crs": {"type": "name"}},):
        assert not jsonschema.Draft202012Validator(SCHEMA).is_valid(broken)
    bad = json.loads(json.dumps(doc))
    bad["features"][0]["properties"]["status"] = "growing"
    assert not jsonschema.Draft202012Validator(SCHEMA).is_valid(bad)
    for feature in doc["features"]:
        geom = feature["geometry"]
        polygons = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
        for rings in polygons:
            for ring in rings:
                assert ring[0] == ring[-1]  # closed (3.1.6)
            # Right-hand rule (3.1.6): exterior counter-clockwise, holes clockwise.
            assert _signed_area(rings[0]) > 0
            assert all(_signed_area(h) < 0 for h in rings[1:])
        assert shape(geom).is_valid
        ev = feature["properties"]["evidence"]
        assert ev["after_true_colour"].endswith(".png") and (tmp_path / ev["after_swir"]).is_file()
        assert not math.isnan(feature["properties"]["area_ha"])

    # GDAL's GeoJSON reader: every feature, its properties, EPSG:4326, same shapes.
    info = pyogrio.read_info(path)
    assert info["features"] == 3 and info["driver"] == "GeoJSON"
    back = pyogrio.read_dataframe(path)
    assert back.crs.to_epsg() == 4326
    assert sorted(back["site_id"]) == sorted(alerts["site_id"])
    assert set(ALERT_PROPERTIES) - {"scene_ids", "evidence"} <= set(back.columns)
    ref = alerts.set_index("site_id").geometry
    for sid, geom in back.set_index("site_id").geometry.items():
        assert shapely.symmetric_difference(geom, ref[sid]).area < 1e-3 * ref[sid].area
