"""Truth sites and metadata: the sites of every period as GeoJSON (RFC 7946) and ``world.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import shapely.affinity
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.features import shapes as raster_shapes
from shapely.geometry import mapping, shape
from shapely.geometry.polygon import orient

from aoi.geometry import split_antimeridian
from tiles.files import write_text_atomic
from tiles.periods import Period
from tiles.synthetic._geometry import Layout
from tiles.synthetic._spec import (
    AMW_ATTRIBUTION,
    BOA_ADD_OFFSET,
    GENERATOR_VERSION,
    PIXEL_HA,
    PIXEL_M,
    SCENE_BANDS,
    TruthClass,
    World,
)


def write_sites(
    path: Path, layout: Layout, periods: Sequence[Period], crs: CRS, transform: Affine
) -> dict[str, int]:
    to_wgs84 = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    features: list[dict[str, Any]] = []
    counts: dict[str, int] = {"mining": 0, "deforestation": 0, "lookalike": 0}
    for site in layout.sites:
        previous_area = 0
        present = False
        for pi, period in enumerate(periods):
            mask = site.mask(pi)
            if mask is None:
                previous_area = 0
                continue
            present = True
            area = int(mask.sum())
            if site.cls == "lookalike":
                change = "stable"
            elif previous_area == 0 and pi > 0:
                change = "new"
            elif pi > 0 and area > previous_area * 1.02:
                change = "expanding"
            else:
                change = "stable"
            previous_area = area
            win_transform = transform @ Affine.translation(site.col0, site.row0)
            parts = [
                shape(geom)
                for geom, value in raster_shapes(
                    mask.astype(np.uint8), mask=mask, transform=win_transform
                )
                if value == 1
            ]
            geom_utm = shapely.union_all(parts)
            geom_ll = shapely.transform(
                geom_utm, lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1]))
            )
            # A world at 180 degrees: a site across it is split as RFC 7946 asks (3.1.9).
            geom_ll = _oriented(split_antimeridian(geom_ll))
            features.append(
                {
                    "type": "Feature",
                    "id": f"{site.truth_id}_{period.label}",
                    "geometry": mapping(shapely.set_precision(geom_ll, 1e-7)),
                    "properties": {
                        "truth_id": site.truth_id,
                        "class": site.cls,
                        "kind": site.kind,
                        "period": period.label,
                        "change": change,
                        "area_ha": round(area * PIXEL_HA, 4),
                        "truth_code": site.truth_code,
                    },
                }
            )
        if present:
            counts[site.cls] += 1
    collection = {
        "type": "FeatureCollection",
        "features": features,
        "minewatch_synthetic": {
            "generator_version": GENERATOR_VERSION,
            "periods": [p.label for p in periods],
            "attribution": AMW_ATTRIBUTION,
            "change": "vs the previous period; the first period has none, so its sites are "
            "'stable'; look-alikes are always 'stable'",
        },
    }
    write_text_atomic(path, json.dumps(collection) + "\n")
    return counts


def _oriented(geom: Any) -> Any:
    """Polygons with the RFC 7946 right-hand rule (exterior counter-clockwise)."""
    if geom.geom_type == "Polygon":
        return orient(geom, sign=1.0)
    if geom.geom_type == "MultiPolygon":
        return shapely.MultiPolygon([orient(p, sign=1.0) for p in geom.geoms])
    return geom


def world_metadata(world: World) -> dict[str, Any]:
    root = world.root
    return {
        "generator": "minewatch tiles.synthetic",
        "generator_version": GENERATOR_VERSION,
        "spec": world.spec.model_dump(mode="json"),
        "crs": world.crs.to_string(),
        "transform": list(world.transform)[:6],
        "width": world.width,
        "height": world.height,
        "resolution_m": PIXEL_M,
        "tile_id": world.tile_id,
        "bands": list(SCENE_BANDS),
        "boa_add_offset": BOA_ADD_OFFSET,
        "periods": [{"label": p.label, **p.as_dict()} for p in world.periods],
        "scenes": [
            {
                "scene_id": s.scene_id,
                "datetime": s.datetime.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "period": s.period,
                "spacecraft": s.spacecraft,
                "cloud_fraction": round(s.cloud_fraction, 4),
                "path": s.path.relative_to(root).as_posix(),
            }
            for s in world.scenes
        ],
        "truth": {
            p.label: t.relative_to(root).as_posix()
            for p, t in zip(world.periods, world.truth_paths, strict=False)
        },
        "truth_classes": {str(c.value): c.name.lower() for c in TruthClass},
        "sites": world.sites_path.relative_to(root).as_posix(),
        "n_sites": world.n_sites,
        "attribution": AMW_ATTRIBUTION,
    }
