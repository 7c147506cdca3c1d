"""Shared fixtures: paths to the real data in ../shared/data (CI has it beside the checkout)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import shapely.geometry

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MINEWATCH_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# ONNX exports of the networks (models.runtime) go to a folder of this test session, not the
# user's cache; CLI subprocesses inherit it, so each network is exported once per session.
os.environ.setdefault("MINEWATCH_CACHE_DIR", tempfile.mkdtemp(prefix="minewatch-test-cache-"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (boundaries, mining polygons, recorded payloads)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not found (set MINEWATCH_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


def write_aoi(path: Path, geometry: Any, *, aoi_id: str = "box-1", name: str = "Test reserve"
              ) -> Path:
    """Write a one-feature AOI GeoJSON (``id`` and ``name`` properties) of a lon/lat geometry."""
    feature = {"type": "Feature", "properties": {"id": aoi_id, "name": name},
               "geometry": shapely.geometry.mapping(geometry)}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path
