"""Fixtures of the aoi tests: tiny vector layers written in ``tmp_path``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import box, mapping

GeoJSONWriter = Callable[..., Path]


def square(lon: float, lat: float, size_deg: float = 0.1) -> dict[str, Any]:
    """A GeoJSON Polygon: a square of ``size_deg`` with its lower-left corner at (lon, lat)."""
    return dict(mapping(box(lon, lat, lon + size_deg, lat + size_deg)))


def feature(geometry: dict[str, Any] | None, **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


@pytest.fixture
def write_geojson(tmp_path: Path) -> GeoJSONWriter:
    """Write a FeatureCollection of the given features; returns its path."""

    def write(features: list[dict[str, Any]], name: str = "aois.geojson",
              **members: Any) -> Path:
        path = tmp_path / name
        collection = {"type": "FeatureCollection", **members, "features": features}
        path.write_text(json.dumps(collection), encoding="utf-8")
        return path

    return write


@pytest.fixture
def amw_geojson(write_geojson: GeoJSONWriter) -> Path:
    """Two territories in the Amazon Mining Watch field convention."""
    return write_geojson([
        feature(square(-57.6, -6.7), id_field="29801", name_field="Munduruku",
                type_field="Terra Indígena", country="Brazil", id="BR29801_0"),
        feature(square(-63.0, 2.0), id_field="1001", name_field="Yanomami",
                type_field="Parque", country="Brazil", id="BR1001_0"),
    ])
