"""The review page: one self-contained, escaped HTML file listing every alert."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import geopandas as gpd
import pytest

from detection.alerts import build_feature_collection
from detection.errors import DetectionError
from detection.review import write_review_html
from tests.detection.conftest import to_wgs84, utm_box


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.fixture
def coverage_fc() -> dict:
    frame = gpd.GeoDataFrame(
        {"status": ["observed", "no_imagery"], "observed_fraction": [1.0, 0.0]},
        geometry=to_wgs84([utm_box(-500, -500, 3000, 3000), utm_box(2500, -500, 3000, 3000)]),
        crs="EPSG:4326",
    )
    return json.loads(frame.to_json(drop_id=True))


def test_page_is_self_contained_and_lists_every_site(
    alerts: gpd.GeoDataFrame, metadata: dict, coverage_fc: dict, tmp_path: Path
) -> None:
    fc = build_feature_collection(alerts, metadata=metadata)
    path = tmp_path / "review.html"
    write_review_html(path, fc, title="Munduruku <2024Q3>", coverage_fc=coverage_fc)
    text = path.read_text(encoding="utf-8")

    assert "http://" not in text and "https://" not in text
    parser = _Tags()
    parser.feed(text)
    tags = [t for t, _ in parser.tags]
    assert (
        "script" not in tags and "link" not in tags and "img" not in tags and "iframe" not in tags
    )
    assert all(not (a.get("src") or "") for _, a in parser.tags)
    assert tags.count("svg") == 1

    for site_id in alerts["site_id"]:
        assert f'<tr id="{site_id}">' in text and f'href="#{site_id}"' in text
    # Escaped: the title and an AOI name with markup never become tags.
    assert "Munduruku &lt;2024Q3&gt;" in text and "Sai Cinza &lt;b&gt;&amp;" in text
    assert "<b>" not in text
    # Summary: periods, model, counts.
    assert "2024-07-01 to 2024-09-30" in text and "2024-04-01 to 2024-06-30" in text
    assert "indices 0.1" in text
    assert "deforestation: 1, mining: 2" in text and "expanding: 1, new: 1, stable: 1" in text
    # Map: one path per alert plus one per coverage polygon, coordinates inside the viewBox.
    assert text.count("<path ") == 3 + 2
    box = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', text)
    assert box is not None
    width, height = map(float, box.groups())
    for x, y in re.findall(r"([\d.]+),([\d.]+)", " ".join(re.findall(r'd="([^"]+)"', text))):
        assert 0 <= float(x) <= width + 0.1 and 0 <= float(y) <= height + 0.1


def test_empty_run_still_writes_a_page(metadata: dict, tmp_path: Path) -> None:
    empty = gpd.GeoDataFrame({"site_id": []}, geometry=gpd.GeoSeries([]), crs="EPSG:4326")
    path = tmp_path / "review.html"
    write_review_html(path, build_feature_collection(empty, metadata=metadata), title="empty")
    text = path.read_text(encoding="utf-8")
    assert "No alerts in this period." in text and "Nothing to map" in text


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
