"""Sites: merging chip polygons and tracking ids and status across periods."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from detection.errors import DetectionError
from detection.sites import HISTORY_COLUMNS, append_history, merge_parts, track_sites
from tests.detection.conftest import UTM, sites_frame, to_wgs84, utm_box
from tiles.periods import Period


def _chip(rows: list[tuple[str, shapely.Geometry, float]], tile_id: str, crs: str = UTM):
    gdf = gpd.GeoDataFrame(
        {
            "alert_class": [r[0] for r in rows],
            "area_ha": [r[1].area / 10_000 for r in rows],
            "confidence": [r[2] for r in rows],
            "tile_id": [tile_id] * len(rows),
            "scene_ids": [[f"S2_{tile_id}"] for _ in rows],
        },
        geometry=[r[1] for r in rows],
        crs=UTM,
    )
    return gdf.to_crs(crs)


# ------------------------------------------------------------------------------------ merging


@pytest.mark.parametrize("crs", [UTM, "EPSG:4326"])
def test_site_split_by_a_chip_edge_becomes_one_site(crs: str) -> None:
    # The chip edge is x = 1000 m; each chip holds one half of a 200 m x 100 m site.
    left = _chip([("mining", utm_box(900, 0, 100, 100), 0.9)], "A", crs)
    right = _chip([("mining", utm_box(1000, 0, 100, 100), 0.5)], "B", crs)
    merged = merge_parts([right, left])
    assert len(merged) == 1
    site = merged.iloc[0]
    assert site.geometry.geom_type == "Polygon"  # no sliver left along the chip edge
    assert site.area_ha == pytest.approx(2.0, rel=2e-3)
    assert site.confidence == pytest.approx(0.7)  # equal areas
    assert site.tile_id == "A,B"
    assert site.scene_ids == ["S2_A", "S2_B"]
    assert merged.crs == gpd.GeoSeries([], crs=crs).crs


def test_merge_weights_confidence_by_area_and_keeps_classes_apart() -> None:
    big = _chip([("mining", utm_box(0, 0, 300, 100), 0.9)], "A")
    small = _chip(
        [
            ("mining", utm_box(300, 0, 100, 100), 0.5),
            ("deforestation", utm_box(300, 100, 50, 50), 0.6),
        ],
        "B",
    )
    far = _chip([("mining", utm_box(5000, 0, 100, 100), 0.7)], "B")
    merged = merge_parts([big, small, far])
    assert list(merged["alert_class"]) == ["deforestation", "mining", "mining"]
    joined = merged[merged["area_ha"] > 3.5].iloc[0]
    assert joined.confidence == pytest.approx((0.9 * 3 + 0.5 * 1) / 4, rel=1e-3)
    assert merged.iloc[2].tile_id == "B"


def test_merge_is_independent_of_part_order() -> None:
    parts = [
        _chip([("mining", utm_box(0, 0, 100, 100), 0.9)], "A"),
        _chip([("mining", utm_box(100, 50, 100, 100), 0.5)], "B"),
        _chip([("mining", utm_box(900, 0, 100, 100), 0.5)], "C"),
    ]
    one = merge_parts(parts)
    two = merge_parts(parts[::-1])
    assert list(one["tile_id"]) == list(two["tile_id"]) == ["A,B", "C"]
    assert one.geometry.iloc[0].equals(two.geometry.iloc[0])


def test_merge_of_nothing_is_empty() -> None:
    merged = merge_parts([])
    assert merged.empty and merged.crs.to_epsg() == 4326


def test_merge_rejects_mixed_crs() -> None:
    a = _chip([("mining", utm_box(0, 0, 100, 100), 0.9)], "A")
    b = _chip([("mining", utm_box(100, 0, 100, 100), 0.9)], "B", "EPSG:4326")
    with pytest.raises(DetectionError, match="reproject every part to EPSG:4326"):
        merge_parts([a, b])


def test_merge_rejects_missing_columns_and_classes() -> None:
    a = _chip([("mining", utm_box(0, 0, 100, 100), 0.9)], "A")
    with pytest.raises(DetectionError, match=r"part 0: missing columns \['tile_id'\]"):
        merge_parts([a.drop(columns="tile_id")])
    a.loc[0, "alert_class"] = "quarry"
    with pytest.raises(DetectionError, match=r"unknown alert_class \['quarry'\]"):
        merge_parts([a])


# ----------------------------------------------------------------------------------- tracking


def _track(rows, history, period: Period, previous: Period | None) -> gpd.GeoDataFrame:
    return track_sites(sites_frame(rows), history, period=period, previous_period=previous)


def test_first_period_sites_are_new_with_deterministic_ids(q2: Period) -> None:
    rows = [("mining", utm_box(0, 0, 100, 100)), ("deforestation", utm_box(500, 0, 200, 100))]
    first = _track(rows, None, q2, None)
    again = _track(rows, None, q2, None)
    assert list(first["site_id"]) == list(again["site_id"])
    assert first["site_id"].iloc[0].startswith("mw-m-") and len(first["site_id"].iloc[0]) == 13
    assert first["site_id"].iloc[1].startswith("mw-d-")
    assert list(first["status"]) == ["new", "new"]
    assert list(first["area_change_ha"]) == pytest.approx(list(first["area_ha"]))
    assert set(first["first_detected"]) == set(first["last_detected"]) == {"2024-06-30"}
    assert list(first["merged_from"]) == [[], []] and list(first["split_from"]) == [None, None]


def test_same_site_keeps_its_id_and_is_stable(q2: Period, q3: Period) -> None:
    before = _track([("mining", utm_box(0, 0, 100, 100))], None, q2, None)
    history = append_history(None, before, q2)
    now = _track([("mining", utm_box(5, 0, 100, 110))], history, q3, q2)
    assert now["site_id"].iloc[0] == before["site_id"].iloc[0]
    assert now["status"].iloc[0] == "stable"
    assert now["area_change_ha"].iloc[0] == pytest.approx(0.1)
    assert now["first_detected"].iloc[0] == "2024-06-30"
    assert now["last_detected"].iloc[0] == "2024-09-30"


@pytest.mark.parametrize(
    ("width", "status", "change"),
    [(400, "expanding", 2.0), (240, "stable", 0.4), (50, "receding", -1.5)],
)
def test_growth_beyond_tolerance_is_expanding_or_receding(
    q2: Period, q3: Period, width: float, status: str, change: float
) -> None:
    before = _track([("mining", utm_box(0, 0, 200, 100))], None, q2, None)  # 2 ha
    history = append_history(None, before, q2)
    now = _track([("mining", utm_box(0, 0, width, 100))], history, q3, q2)
    assert now["site_id"].iloc[0] == before["site_id"].iloc[0]
    assert now["status"].iloc[0] == status
    assert now["area_change_ha"].iloc[0] == pytest.approx(change)


def test_other_class_does_not_inherit_the_id(q2: Period, q3: Period) -> None:
    before = _track([("mining", utm_box(0, 0, 100, 100))], None, q2, None)
    history = append_history(None, before, q2)
    now = _track([("deforestation", utm_box(0, 0, 100, 100))], history, q3, q2)
    assert now["status"].iloc[0] == "new"
    assert now["site_id"].iloc[0] != before["site_id"].iloc[0]


def test_merge_keeps_the_largest_id_and_records_the_others(q2: Period, q3: Period) -> None:
    rows = [("mining", utm_box(0, 0, 200, 200)), ("mining", utm_box(300, 0, 100, 100))]
    before = _track(rows, None, q2, None)
    big, small = before["site_id"]
    history = append_history(None, before, q2)
    now = _track([("mining", utm_box(0, 0, 400, 200))], history, q3, q2)  # 8 ha covers both
    assert now["site_id"].iloc[0] == big
    assert now["merged_from"].iloc[0] == [small]
    assert now["area_change_ha"].iloc[0] == pytest.approx(8 - 4 - 1)  # vs both previous sites
    assert now["status"].iloc[0] == "expanding"


def test_split_keeps_the_id_on_the_largest_part(q2: Period, q3: Period) -> None:
    before = _track([("mining", utm_box(0, 0, 500, 100))], None, q2, None)
    parent = before["site_id"].iloc[0]
    history = append_history(None, before, q2)
    rows = [("mining", utm_box(0, 0, 100, 100)), ("mining", utm_box(200, 0, 300, 100))]
    now = _track(rows, history, q3, q2)
    small, large = now.iloc[0], now.iloc[1]
    assert large.site_id == parent and large.split_from is None
    assert large.status == "receding" and large.area_change_ha == pytest.approx(-2.0)
    assert small.site_id != parent and small.split_from == parent
    assert small.status == "stable"  # the split part held 1 ha of the parent before
    assert small.first_detected == "2024-06-30"


def test_site_absent_in_the_previous_period_is_reactivated(
    q1: Period, q2: Period, q3: Period
) -> None:
    first = _track([("mining", utm_box(0, 0, 100, 100))], None, q1, None)
    history = append_history(None, first, q1)
    quiet = _track([("mining", utm_box(5000, 0, 100, 100))], history, q2, q1)
    history = append_history(history, quiet, q2)
    now = _track([("mining", utm_box(0, 0, 150, 100))], history, q3, q2)
    assert now["site_id"].iloc[0] == first["site_id"].iloc[0]
    assert now["status"].iloc[0] == "reactivated"
    assert now["area_change_ha"].iloc[0] == pytest.approx(1.5)
    assert now["first_detected"].iloc[0] == "2024-03-31"


def test_rerunning_a_period_gives_the_same_ids(q2: Period, q3: Period) -> None:
    before = _track([("mining", utm_box(0, 0, 200, 200))], None, q2, None)
    history = append_history(None, before, q2)
    rows = [("mining", utm_box(0, 0, 300, 200)), ("deforestation", utm_box(900, 0, 100, 100))]
    run1 = _track(rows, history, q3, q2)
    history = append_history(history, run1, q3)
    # Same period again, history now holding it, and the new site moved 30 m: same ids anyway.
    rows2 = [("mining", utm_box(0, 0, 300, 200)), ("deforestation", utm_box(930, 0, 100, 100))]
    run2 = _track(rows2, history, q3, q2)
    assert list(run2["site_id"]) == list(run1["site_id"])
    assert list(run2["status"]) == ["expanding", "new"]
    again = append_history(history, run2, q3)
    assert len(again) == len(history) == 3  # the period's rows were replaced, not duplicated


def test_append_history_columns_and_order(q2: Period, q3: Period) -> None:
    a = _track([("mining", utm_box(0, 0, 100, 100))], None, q3, None)
    b = _track([("mining", utm_box(900, 0, 100, 100))], None, q2, None)
    history = append_history(append_history(None, a, q3), b, q2)
    assert tuple(history.columns) == HISTORY_COLUMNS
    assert list(history["period_label"]) == ["2024Q2", "2024Q3"]
    assert history.crs.to_epsg() == 4326


def test_track_rejects_projected_sites(q3: Period) -> None:
    sites = sites_frame([("mining", utm_box(0, 0, 100, 100))]).to_crs(UTM)
    with pytest.raises(DetectionError, match="CRS is EPSG:32721; expected EPSG:4326"):
        track_sites(sites, None, period=q3, previous_period=None)


def test_track_rejects_a_previous_period_that_is_not_earlier(q2: Period, q3: Period) -> None:
    with pytest.raises(DetectionError, match=r"previous period 2024Q3 .* not before period 2024Q2"):
        _track([], None, q2, q3)


def test_track_rejects_a_history_with_a_site_twice_in_a_period(q2: Period, q3: Period) -> None:
    before = _track([("mining", utm_box(0, 0, 100, 100))], None, q2, None)
    history = append_history(None, before, q2)
    doubled = gpd.GeoDataFrame(pd.concat([history, history]), crs=history.crs)
    with pytest.raises(DetectionError, match=r"holds site mw-m-\w+ twice in period 2024Q2"):
        _track([("mining", utm_box(0, 0, 100, 100))], doubled, q3, q2)


def test_track_of_no_sites_is_empty_with_columns(q3: Period) -> None:
    out = track_sites(sites_frame([]), None, period=q3, previous_period=None)
    assert out.empty and {"site_id", "status", "area_change_ha"} <= set(out.columns)


def test_to_wgs84_helper_is_exact() -> None:
    (geom,) = to_wgs84([utm_box(0, 0, 100, 100)])
    assert -57.01 < geom.centroid.x < -56.99


def test_history_carries_area_confidence_and_observed_fraction(q2: Period, q3: Period) -> None:
    before = _track([("mining", utm_box(0, 0, 200, 200))], None, q2, None)
    before["observed_fraction"] = [0.25]
    history = append_history(None, before, q2)
    now = _track([("mining", utm_box(0, 0, 300, 200))], history, q3, q2)
    now["observed_fraction"] = [1.0]
    history = append_history(history, now, q3)
    rows = history.set_index("period_label")
    assert list(history["site_id"].unique()) == list(now["site_id"])  # one id, two periods
    assert rows.loc["2024Q2", "observed_fraction"] == 0.25
    assert rows.loc["2024Q3", "observed_fraction"] == 1.0
    assert rows.loc["2024Q3", "confidence"] == 0.8
    assert rows.loc["2024Q3", "area_ha"] == pytest.approx(6.0, rel=1e-3)
    # Without the column (a caller that has no coverage): NaN, never a made-up value.
    bare = append_history(None, _track([("mining", utm_box(0, 0, 100, 100))], None, q2, None), q2)
    assert bare["observed_fraction"].isna().all()
