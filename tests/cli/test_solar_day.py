"""One acquisition seen in two MGRS tiles counts once (issue 18, item 10).

Neighbouring Sentinel-2 tiles overlap by about 10 km; a chip there is read from both tiles of the
same pass. Counted as two observations, that pass weighed double in the median and the clear
count. Tried through ``minewatch tiles composite`` and ``minewatch scan`` on a real local folder
of GeoTIFF scenes named as Sentinel-2 products are.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer

from tests.cli.conftest import minewatch
from tiles.cog import write_cog
from tiles.scene import SceneInfo, same_pass

LON, LAT = -57.55, -6.62
CRS = "EPSG:32721"
BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
FOREST = np.array([0.03, 0.06, 0.04, 0.30, 0.15, 0.07], dtype=np.float32)
#: (product id, acquisition time, scale of the forest spectrum): three passes on orbit R067, the
#: first seen in two tiles (T21MXN and the overlapping T21MYN) 4 s apart, as Earth Search dates
#: the tiles of one datatake.
PASS_1 = dt.datetime(2024, 7, 5, 14, 0, 51, tzinfo=dt.timezone.utc)
SCENES = [
    ("S2A_MSIL2A_20240705T140051_N0510_R067_T21MXN_20240705T180000", PASS_1, 1.0),
    ("S2A_MSIL2A_20240705T140051_N0510_R067_T21MYN_20240705T180000",
     PASS_1 + dt.timedelta(seconds=4), 1.0),
    ("S2B_MSIL2A_20240710T140049_N0510_R067_T21MXN_20240710T175500",
     dt.datetime(2024, 7, 10, 14, 0, 49, tzinfo=dt.timezone.utc), 2.0),
    ("S2A_MSIL2A_20240715T140051_N0510_R067_T21MXN_20240715T181000",
     dt.datetime(2024, 7, 15, 14, 0, 51, tzinfo=dt.timezone.utc), 3.0),
]


def write_scene(folder: Path, scene_id: str, when: dt.datetime, scale: float) -> None:
    """A 6 x 6 km float reflectance scene with an all-clear SCL around the AOI."""
    x, y = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(LON, LAT)
    n = 300  # 20 m pixels: 6 km
    left, top = round(x / 20) * 20 - 3000, round(y / 20) * 20 + 3000
    data = np.concatenate([
        np.broadcast_to((FOREST * scale)[:, None, None], (len(BANDS), n, n)),
        np.full((1, n, n), 4.0, dtype=np.float32),
    ]).astype(np.float32)
    write_cog(folder / f"{scene_id}.tif", data, crs=CRS,
              transform=Affine(20.0, 0.0, left, 0.0, -20.0, top), nodata=float("nan"),
              band_descriptions=[*BANDS, "SCL"],
              tags={"ACQUISITION_DATETIME": when.isoformat(), "PROCESSING_BASELINE": "05.10"})


def write_config(folder: Path, scenes: Path) -> Path:
    d = 0.008
    ring = [[LON - d, LAT - d], [LON + d, LAT - d], [LON + d, LAT + d], [LON - d, LAT + d],
            [LON - d, LAT - d]]
    (folder / "aoi.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"id": "T1", "name": "Overlap"},
        "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    cfg = folder / "scan.yaml"
    cfg.write_text(f"""name: overlap
aoi: {{path: aoi.geojson, id_field: id, name_field: name, kind: indigenous_land, buffer_m: 0}}
source: {{kind: local, path: {scenes}}}
periods: {{kind: quarter, start: 2024-04-01, end: 2024-09-30}}
grid: {{chip_size_px: 128}}
detector: {{kind: indices}}
""")
    return cfg


def composites(folder: Path, scene_ids: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """``minewatch tiles composite`` over the given scenes: per chip, its Q3 composite and count."""
    scenes = folder / "scenes"
    scenes.mkdir(parents=True)
    for scene_id, when, scale in SCENES:
        if scene_id in scene_ids:
            write_scene(scenes, scene_id, when, scale)
    cfg = write_config(folder, scenes)
    res = minewatch("tiles", "composite", str(cfg), "--out", "out", "--json", cwd=folder)
    assert res.returncode == 0, res.stderr[-3000:]
    out: dict[str, dict[str, np.ndarray]] = {}
    for path in sorted((folder / "out" / "composites").glob("*_2024Q3_composite.tif")):
        chip = path.name.split("_2024Q3")[0]
        with rasterio.open(path) as src:
            data = src.read()
        with rasterio.open(path.with_name(f"{chip}_2024Q3_clear_count.tif")) as src:
            count = src.read(1)
        out[chip] = {"data": data, "count": count}
    assert out, "no chip was composited"
    return out


@pytest.fixture(scope="module")
def with_overlap(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, np.ndarray]]:
    return composites(tmp_path_factory.mktemp("overlap"), [s[0] for s in SCENES])


def test_one_pass_in_two_tiles_is_one_clear_observation(
    with_overlap: dict[str, dict[str, np.ndarray]],
) -> None:
    for chip, layers in with_overlap.items():
        assert np.all(layers["count"] == 3), (chip, np.unique(layers["count"]))  # not 4


def test_the_median_is_the_one_away_from_the_overlap(
    with_overlap: dict[str, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    """Without the second tile (as on ground only one tile covers) the composite is the same;
    counted twice, pass 1 pulled the median from 2x forest to 1.5x."""
    single = composites(tmp_path, [SCENES[0][0], SCENES[2][0], SCENES[3][0]])
    assert single.keys() == with_overlap.keys()
    for chip, layers in with_overlap.items():
        np.testing.assert_array_equal(layers["data"], single[chip]["data"])
        np.testing.assert_array_equal(layers["count"], single[chip]["count"])
        np.testing.assert_allclose(layers["data"][:, 0, 0], 2.0 * FOREST, rtol=1e-6)


def test_a_scan_over_the_overlap_counts_passes(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for scene_id, when, scale in SCENES:
        write_scene(scenes, scene_id, when, scale)
    res = minewatch("-v", "scan", str(write_config(tmp_path, scenes)), "--out", "out",
                    cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 scene(s) of 1 pass(es) mosaicked" in res.stderr
    assert "2024-07-05 14:00" in res.stderr


def _info(scene_id: str, when: dt.datetime, **properties: object) -> SceneInfo:
    return SceneInfo(scene_id, when, CRS, Affine.identity(), 1, 1, ("B02",), False, "05.10",
                     "memory://x", properties=properties)


def test_same_pass_needs_platform_orbit_and_minutes() -> None:
    a = _info(SCENES[0][0], PASS_1)
    assert same_pass(a, _info(SCENES[1][0], SCENES[1][1]))
    # Earth Search ids say the platform; the orbit is a property
    es = _info("S2A_21MYN_20240705_0_L2A", PASS_1, **{"sat:relative_orbit": 67})
    assert same_pass(a, es)
    assert not same_pass(a, _info("S2A_21MYN_20240705_0_L2A", PASS_1,
                                  **{"sat:relative_orbit": 68}))
    assert not same_pass(a, _info("S2B_21MYN_20240705_0_L2A", PASS_1))  # another satellite
    assert not same_pass(a, _info(SCENES[1][0], PASS_1 + dt.timedelta(minutes=100)))  # an orbit
