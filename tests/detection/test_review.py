"""The review page: one self-contained, escaped HTML file (structure; the browser tests are in
``test_review_browser.py``)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import geopandas as gpd
import pytest

from detection.alerts import build_feature_collection, write_review_html
from detection.errors import DetectionError
from tests.detection.conftest import to_wgs84, utm_box


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


@pytest.fixture
def coverage_fc() -> dict:
    frame = gpd.GeoDataFrame(
        {"status": ["observed", "no_imagery"], "observed_fraction": [1.0, 0.0]},
        geometry=to_wgs84([utm_box(-500, -500, 3000, 3000), utm_box(2500, -500, 3000, 3000)]),
        crs="EPSG:4326",
    )
    return json.loads(frame.to_json(drop_id=True))


def test_page_is_self_contained_and_escaped(
    alerts: gpd.GeoDataFrame, metadata: dict, coverage_fc: dict, tmp_path: Path
) -> None:
    alerts["aoi_name"] = ["Munduruku", "Munduruku", "Sai Cinza <b>&</script><!--"]
    fc = build_feature_collection(alerts, metadata=metadata)
    path = tmp_path / "review.html"
    write_review_html(path, fc, title="Munduruku <2024Q3>", coverage_fc=coverage_fc)
    text = path.read_text(encoding="utf-8")

    parser = _Tags()
    parser.feed(text)
    tags = [t for t, _ in parser.tags]
    # Nothing is loaded from anywhere: no src, no stylesheet link, no iframe, no remote URL in
    # any attribute or CSS url().
    assert "link" not in tags and "iframe" not in tags
    assert all("src" not in a for _, a in parser.tags)
    for _, attrs in parser.tags:
        assert not any("//" in (v or "") for v in attrs.values())
    assert not re.search(r"url\((?!data:|#)", text)
    assert tags.count("script") == 3  # data, Leaflet, page script, all inline
    # Escaped: the title and an AOI name with markup never become tags or end a script.
    assert "Munduruku &lt;2024Q3&gt;" in text and "Sai Cinza &lt;b&gt;&amp;&lt;/script" in text
    assert "<b>" not in text and text.count("</script>") == 3
    data = json.loads(parser.scripts[0])
    assert [f["id"] for f in data["features"]] == sorted(alerts["site_id"])
    assert data["features"][2]["properties"]["aoi_name"] == "Sai Cinza <b>&</script><!--"
    assert len(data["coverage"]) == 2
    for site_id in alerts["site_id"]:
        assert f'data-site-id="{site_id}"' in text
    # Summary: periods, model, counts, thresholds.
    assert "2024-07-01 to 2024-09-30" in text and "2024-04-01 to 2024-06-30" in text
    assert "indices 0.1" in text
    assert "probable &gt;= 0.5, likely &gt;= 0.7, very_likely &gt;= 0.9" in text
    assert "dashed outline: probable confidence" in text  # the legend's word is the lowest level
    assert "deforestation: 1, mining: 2" in text and "expanding: 1, new: 1, stable: 1" in text
    # Sortable columns carry their sort values.
    assert 'data-key="area_ha" data-type="number"' in text
    assert 'data-key="status" data-sort="0"' in text  # new sorts first


def test_coverage_of_other_periods_is_left_out(
    alerts: gpd.GeoDataFrame, metadata: dict, coverage_fc: dict, tmp_path: Path
) -> None:
    coverage_fc["features"][0]["properties"]["period_end"] = "2024-09-30"
    coverage_fc["features"][1]["properties"]["period_end"] = "2024-06-30"
    path = tmp_path / "review.html"
    fc = build_feature_collection(alerts, metadata=metadata)
    write_review_html(path, fc, title="t", coverage_fc=coverage_fc)
    parser = _Tags()
    parser.feed(path.read_text(encoding="utf-8"))
    assert len(json.loads(parser.scripts[0])["coverage"]) == 1


def test_empty_run_still_writes_a_page(metadata: dict, tmp_path: Path) -> None:
    empty = gpd.GeoDataFrame({"site_id": []}, geometry=gpd.GeoSeries([]), crs="EPSG:4326")
    path = tmp_path / "review.html"
    write_review_html(path, build_feature_collection(empty, metadata=metadata), title="empty")
    assert "No alerts in this period." in path.read_text(encoding="utf-8")


def test_refuses_what_is_not_a_collection(tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="fc is not a FeatureCollection"):
        write_review_html(tmp_path / "r.html", {"type": "Feature"}, title="x")
    with pytest.raises(DetectionError, match="coverage_fc is not a FeatureCollection"):
        write_review_html(
            tmp_path / "r.html",
            {"type": "FeatureCollection", "features": []},
            title="x",
            coverage_fc={"features": None},
        )
