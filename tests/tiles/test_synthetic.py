"""The synthetic world: real COGs in the local source format, truth that matches, determinism."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pydantic import ValidationError

from tiles.cog import is_cog
from tiles.synthetic import (
    BOA_ADD_OFFSET,
    SCENE_BANDS,
    TruthClass,
    World,
    WorldSpec,
    generate_world,
    load_mining_shapes,
    mgrs_tile,
    reflectance_to_dn,
)

#: A small world that still holds every kind of site (fast: about a second).
SMALL = {
    "size_px": 256,
    "n_mining_sites": 3,
    "n_clearings": 2,
    "mining_site_area_ha": (2.0, 6.0),
    "clearing_area_ha": (1.0, 4.0),
    "n_pastures": 1,
    "n_sandbars": 2,
    "n_oxbow_lakes": 1,
    "cloud_cover": 0.25,
}

SCENE_ID = re.compile(r"^S2[AB]_MSIL2A_\d{8}T\d{6}_N0510_R\d{3}_T\d{2}[C-X][A-Z]{2}_\d{8}T\d{6}$")


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    calls: list[tuple[int, int]] = []
    world = generate_world(
        tmp_path_factory.mktemp("synthetic"),
        WorldSpec(**SMALL),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls and calls[-1][0] == calls[-1][1]
    return world


def _read(path: Path) -> tuple[np.ndarray, dict[str, str], tuple[str | None, ...]]:
    with rasterio.open(path) as src:
        return src.read(), dict(src.tags()), src.descriptions


def test_layout_and_valid_cogs(small_world: World) -> None:
    root = small_world.root
    assert len(small_world.scenes) == 6
    assert sorted(p.name for p in (root / "scenes").glob("*.tif")) == sorted(
        f"{s}.tif" for s in small_world.scene_ids
    )
    for path in [s.path for s in small_world.scenes] + list(small_world.truth_paths):
        assert is_cog(path), path
    meta = json.loads((root / "world.json").read_text())
    assert meta["crs"] == "EPSG:32721"
    assert [p["label"] for p in meta["periods"]] == ["2024Q2", "2024Q3"]
    assert [s["scene_id"] for s in meta["scenes"]] == list(small_world.scene_ids)
    assert meta["spec"]["size_px"] == 256
    assert meta["generator_version"]


def test_grid_is_utm_snapped_to_10m(small_world: World) -> None:
    t = small_world.transform
    assert small_world.crs.to_epsg() == 32721
    assert (t.a, t.e) == (10.0, -10.0)
    assert t.c % 10 == 0 and t.f % 10 == 0
    with rasterio.open(small_world.scenes[0].path) as src:
        assert src.crs.to_epsg() == 32721
        assert src.transform == t
        assert (src.width, src.height) == (256, 256)


def test_band_descriptions_and_tags(small_world: World) -> None:
    for scene in small_world.scenes:
        with rasterio.open(scene.path) as src:
            assert src.descriptions == SCENE_BANDS
            assert src.count == 11
            assert all(d == "uint16" for d in src.dtypes)
            assert src.nodata == 0
            tags = src.tags()
        assert SCENE_ID.match(scene.scene_id), scene.scene_id
        assert tags["PROCESSING_BASELINE"] == "05.10"
        assert tags["BOA_ADD_OFFSET"] == "-1000"
        assert tags["SPACECRAFT"] in ("Sentinel-2A", "Sentinel-2B")
        assert scene.scene_id.startswith("S2" + tags["SPACECRAFT"][-1])
        when = dt.datetime.strptime(tags["ACQUISITION_DATETIME"], "%Y-%m-%dT%H:%M:%SZ")
        assert when.replace(tzinfo=dt.timezone.utc) == scene.datetime
        assert scene.scene_id.split("_")[2] == f"{when:%Y%m%dT%H%M%S}"
        period = {p.label: p for p in small_world.periods}[scene.period]
        assert period.contains(scene.datetime)


def test_dn_reflectance_round_trip(small_world: World) -> None:
    r = np.array([-0.05, 0.0, 0.01234, 0.3, 0.99], dtype=np.float32)
    dn = reflectance_to_dn(r)
    assert dn.dtype == np.uint16
    assert dn.tolist() == [500, 1000, 1123, 4000, 10900]
    np.testing.assert_allclose((dn.astype(np.float64) + BOA_ADD_OFFSET) / 10_000, r, atol=0.5e-4)

    # A real file: clear forest looks like forest once the offset is applied exactly once.
    data, _, _ = _read(small_world.scenes[0].path)
    truth, _, _ = _read(small_world.truth_paths[0])
    scl = data[-1]
    forest = (truth[0] == TruthClass.BACKGROUND) & (scl == 4)
    refl = (data[:-1].astype(np.float64) + BOA_ADD_OFFSET) / 10_000
    red, nir = refl[SCENE_BANDS.index("B04")][forest], refl[SCENE_BANDS.index("B08")][forest]
    assert 0.005 < np.median(red) < 0.05
    assert 0.2 < np.median(nir) < 0.45
    assert np.median((nir - red) / (nir + red)) > 0.75


def test_scl_marks_clouds_and_shadows(small_world: World) -> None:
    seen_cloud = seen_shadow = False
    for scene in small_world.scenes:
        data, _, _ = _read(scene.path)
        scl = data[-1]
        assert set(np.unique(scl)) <= {3, 4, 5, 6, 8, 9, 10}
        blue = (data[SCENE_BANDS.index("B02")].astype(np.float64) + BOA_ADD_OFFSET) / 10_000
        nir = (data[SCENE_BANDS.index("B08")].astype(np.float64) + BOA_ADD_OFFSET) / 10_000
        if (scl == 9).sum() > 50:
            seen_cloud = True
            assert np.median(blue[scl == 9]) > 0.3  # thick cloud is bright
            assert np.median(blue[scl == 4]) < 0.06  # clear vegetation is dark in the blue
        if (scl == 3).sum() > 50:
            seen_shadow = True
            assert np.median(nir[scl == 3]) < 0.7 * np.median(nir[scl == 4])
        assert scene.cloud_fraction == pytest.approx(np.isin(scl, [8, 9, 10]).mean())
    assert seen_cloud and seen_shadow


def test_truth_sites_change_between_periods(small_world: World) -> None:
    collection = json.loads(small_world.sites_path.read_text())
    assert "crs" not in collection
    features = collection["features"]
    props = [f["properties"] for f in features]
    assert {p["class"] for p in props} == {"mining", "deforestation", "lookalike"}
    assert {"pond_complex", "clearing", "sandbar", "oxbow_lake", "pasture"} <= {
        p["kind"] for p in props
    }
    by_site: dict[str, dict[str, dict]] = {}
    for p in props:
        by_site.setdefault(p["truth_id"], {})[p["period"]] = p
    last = [p for p in props if p["period"] == "2024Q3" and p["class"] == "mining"]
    assert {p["change"] for p in last} == {"new", "expanding", "stable"}
    for p in last:
        previous = by_site[p["truth_id"]].get("2024Q2")
        if p["change"] == "new":
            assert previous is None
        elif p["change"] == "expanding":
            assert p["area_ha"] > previous["area_ha"]  # type: ignore[index]
        else:
            assert p["area_ha"] == previous["area_ha"]  # type: ignore[index]
    assert all(p["change"] == "stable" for p in props if p["class"] == "lookalike")
    # RFC 7946: lon/lat around the world's centre.
    lon, lat = np.asarray(features[0]["geometry"]["coordinates"][0]).T
    assert np.all(np.abs(lon + 57.55) < 0.05) and np.all(np.abs(lat + 6.62) < 0.05)
    # The truth masks agree: more mining in the later period.
    t0, _, _ = _read(small_world.truth_paths[0])
    t1, tags, desc = _read(small_world.truth_paths[1])
    assert desc == ("truth_class",) and tags["CLASS_1"] == "mining"
    mining_ha = [(t == TruthClass.MINING).sum() * 0.01 for t in (t0, t1)]
    assert mining_ha[1] > mining_ha[0]
    total_sites_ha = sum(p["area_ha"] for p in last)
    assert mining_ha[1] == pytest.approx(total_sites_ha)


def test_same_seed_same_world_other_seed_differs(tmp_path: Path) -> None:
    spec = WorldSpec(**{**SMALL, "size_px": 160, "n_mining_sites": 1, "n_clearings": 1})
    a = generate_world(tmp_path / "a", spec)
    b = generate_world(tmp_path / "b", spec)
    c = generate_world(tmp_path / "c", spec.model_copy(update={"seed": 1}))
    assert a.scene_ids == b.scene_ids
    for sa, sb in zip(a.scenes, b.scenes, strict=True):
        np.testing.assert_array_equal(_read(sa.path)[0], _read(sb.path)[0])
    np.testing.assert_array_equal(_read(a.truth_paths[1])[0], _read(b.truth_paths[1])[0])
    assert a.sites_path.read_text() == b.sites_path.read_text()
    assert not np.array_equal(_read(a.scenes[0].path)[0], _read(c.scenes[0].path)[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size_px": 64}, r"size_px[\s\S]*greater than or equal to 128[\s\S]*input_value=64"),
        ({"periods": ["2024Q2"]}, r"periods \['2024Q2'\]: need at least 2"),
        ({"periods": ["2024-Q2", "2024Q3"]}, r"'2024-Q2': expected a quarter label"),
        ({"periods": ["2024Q3", "2024Q2"]}, r"'2024Q2' does not follow '2024Q3'"),
        ({"acquisitions_per_period": 0}, r"acquisitions_per_period[\s\S]*input_value=0"),
        ({"processing_baseline": "03.01"}, r"processing_baseline '03.01'"),
        ({"mining_site_area_ha": (5.0, 1.0)}, r"area range \(5.0, 1.0\)"),
        ({"colud_cover": 0.2}, r"colud_cover[\s\S]*Extra inputs are not permitted"),
        ({"cloud_cover": 1.5}, r"cloud_cover[\s\S]*input_value=1.5"),
    ],
)
def test_spec_validation_names_the_bad_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WorldSpec(**kwargs)


def test_mgrs_tile_names() -> None:
    assert mgrs_tile(-57.55, -6.62) == "21MVN"
    assert mgrs_tile(2.35, 48.85) == "31UDQ"  # Paris


def test_mining_shapes_are_real_and_normalised() -> None:
    shapes = load_mining_shapes()
    assert len(shapes) >= 40
    assert all(abs(s.area - 1.0) < 1e-6 and s.is_valid for s in shapes)
    attribution = (Path(__file__).parents[2] / "tiles" / "data" / "ATTRIBUTION.md").read_text()
    assert "CC-BY-4.0" in attribution and "bbbcb2d7" in attribution
