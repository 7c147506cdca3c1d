"""Level-1C through the ``stac`` source, end to end: ``rustac serve`` (a real STAC API) with
Earth Search v1-shaped ``sentinel-2-l1c`` items whose COGs a real HTTP server range-serves.

The L1C items hold top-of-atmosphere digital numbers with RADIO_ADD_OFFSET (baseline 05.10), all
13 bands (B01, B09, B10 at 60 m) and no SCL, so a scan must apply the offset once, find every band
by name and mask the clouds with the trained detector (``cloud_mask: auto``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner
from shapely.geometry import shape

from aoi.grid import GridCell
from tiles.bands import BANDS
from tiles.config import StacSourceConfig
from tiles.http import RetryPolicy
from tiles.masks import clear_mask
from tiles.sources import StacSource

from .servers import StacWorld, clear_gdal_cache, stac_stack

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

START, END = "2024-04-01", "2024-09-30"


class L1CStack:
    def __init__(self, url: str, world: StacWorld, root: Path) -> None:
        self.url = url
        self.world = world
        self.root = root

    @property
    def area(self):
        return shape(self.world.items[0]["geometry"]).buffer(-0.001)


@pytest.fixture(scope="module")
def l1c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[L1CStack]:
    root = tmp_path_factory.mktemp("stac_l1c")
    with stac_stack(root, level="L1C") as (_cogs, _api, world, proxy):
        yield L1CStack(proxy.url, world, root)


def _source(stack: L1CStack, tmp_path: Path) -> StacSource:
    clear_gdal_cache()
    config = StacSourceConfig(url=stack.url, collection="sentinel-2-l1c")
    policy = RetryPolicy(max_tries=2, backoff_s=0.01, connect_timeout_s=2.0, read_timeout_s=5.0)
    return StacSource(config, cache_dir=tmp_path / "cache", policy=policy)


def _cell(world: StacWorld, size: int = 384) -> GridCell:
    return GridCell(
        "21MVN_L1C", world.crs, world.transform @ Affine.translation(64, 64), size, size
    )


def _search(stack: L1CStack, tmp_path: Path) -> list:
    import datetime as dt

    return _source(stack, tmp_path).search(
        stack.area, dt.date.fromisoformat(START), dt.date.fromisoformat(END)
    )


def test_l1c_items_are_l1c_with_13_bands_and_no_scl(l1c: L1CStack, tmp_path: Path) -> None:
    found = _search(l1c, tmp_path)
    assert len(found) == 4
    for info in found:
        assert info.processing_level == "L1C"
        assert info.bands == tuple(BANDS) and len(info.bands) == 13 and "B10" in info.bands
        assert not info.has_scl
        assert info.processing_baseline == "05.10"


def test_l1c_read_applies_radio_add_offset_exactly_once(l1c: L1CStack, tmp_path: Path) -> None:
    source = _source(l1c, tmp_path)
    info = _search(l1c, tmp_path)[1]
    cell = _cell(l1c.world)
    scene = source.read(info, cell, bands=("B02", "B12", "B10", "B01"))
    truth = l1c.world.reflectance[info.scene_id]
    # B02 at 10 m on the cell's own grid: exactly the top-of-atmosphere reflectance (DN - 1000)
    # / 10000; without the offset it would be 0.1 brighter, applied twice 0.1 darker.
    got = scene.band("B02")
    want = truth["B02"][64 : 64 + 384, 64 : 64 + 384]
    ok = np.isfinite(want) & np.isfinite(got)
    assert ok.mean() > 0.95
    np.testing.assert_allclose(got[ok], want[ok], atol=1e-4)
    # B10 (60 m, cirrus) over cloud-free ground is 0.002 TOA: read once-offset, not 0.1002 or 0.
    b10 = scene.band("B10")
    assert 0.0015 < float(np.nanmedian(b10)) < 0.0025
    # B12 (20 m) and B01 (60 m) are resampled onto the 10 m cell
    assert scene.band("B12").shape == scene.band("B01").shape == (384, 384)
    assert np.nanmedian(scene.band("B01")) > np.nanmedian(got)  # coastal: more haze than blue


def test_auto_masks_l1c_clouds_with_the_detector(l1c: L1CStack, tmp_path: Path) -> None:
    from tiles.clouds import bands_to_read

    source = _source(l1c, tmp_path)
    found = _search(l1c, tmp_path)
    info = max(found, key=lambda s: float(s.properties.get("eo:cloud_cover") or 0))
    cell = _cell(l1c.world)
    scene = source.read(info, cell, bands=bands_to_read(("B02", "B03"), info, "auto"))
    assert scene.scl is None and "B11" in scene.bands  # the detector's bands were added
    truth = l1c.world.truth_scl[info.scene_id][64 : 64 + 384, 64 : 64 + 384]
    cloud = np.isin(truth, (8, 9)) & scene.valid
    assert cloud.mean() > 0.02, "the world's cloudiest scene should have clouds on this cell"
    clear = clear_mask(scene, cloud_mask="auto")
    # the detector masks the synthetic clouds it never saw in training ...
    assert (~clear[cloud]).mean() >= 0.9
    # ... and leaves most of the clear ground clear (the world's clear classes)
    ground = np.isin(truth, (4, 5, 6)) & scene.valid
    assert clear[ground].mean() >= 0.8
    # under `scl` the same scene (no SCL) is used unmasked: every cloud counts as clear
    assert clear_mask(scene, cloud_mask="scl", log_missing_scl=False)[cloud].all()


def _scan_config(stack: L1CStack, tmp_path: Path, *, cloud_mask: str = "auto") -> Path:
    aoi = tmp_path / "aoi.geojson"
    geom = stack.area.buffer(-0.01)
    aoi.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"id": "T1", "name": "Test land"},
                        "geometry": json.loads(json.dumps(geom.__geo_interface__)),
                    }
                ],
            }
        )
    )
    cfg = tmp_path / "scan.yaml"
    cfg.write_text(
        f"""name: stac-l1c
aoi: {{path: aoi.geojson, kind: indigenous_land, buffer_m: 0}}
source:
  kind: stac
  url: {stack.url}
  collection: sentinel-2-l1c
  http: {{max_tries: 2, backoff_s: 0.01, read_timeout_s: 5}}
periods: {{kind: quarter, start: {START}, end: {END}}}
grid: {{chip_size_px: 256, halo_px: 0}}
composite: {{cloud_mask: {cloud_mask}}}
detector: {{kind: indices}}
output: {{folder: out}}
"""
    )
    return cfg


def test_minewatch_scan_of_l1c_items_end_to_end(l1c: L1CStack, tmp_path: Path) -> None:
    from minewatch.cli import cli

    clear_gdal_cache()
    runner = CliRunner()
    observed: dict[str, float] = {}
    for mask in ("auto", "scl"):
        out = tmp_path / f"out-{mask}"
        cfg = _scan_config(l1c, tmp_path, cloud_mask=mask)
        res = runner.invoke(cli, ["scan", str(cfg), "--out", str(out), "--json"])
        assert res.exit_code == 0, res.output
        summary = json.loads(res.stdout)
        fc = json.loads((out / "alerts.geojson").read_text())
        assert "sentinel-2-l1c" in fc["minewatch"]["source"]
        units = sorted((out / "units").rglob("*.json"))
        assert units, "the scan wrote no unit"
        records = [json.loads(p.read_text()) for p in units]
        assert all(r["status"] != "failed" for r in records), records
        assert {sid for r in records for sid in r["scene_ids"]} <= {
            i["id"] for i in l1c.world.items
        }
        assert all(sid.endswith("_L1C") for r in records for sid in r["scene_ids"])
        observed[mask] = float(np.mean([r["mean_clear_observations"] for r in records]))
        assert summary
    # the detector removed cloudy observations that `scl` (no SCL in L1C) kept as clear
    assert observed["auto"] < observed["scl"] - 0.02, observed


def test_tiles_search_lists_the_level(l1c: L1CStack, tmp_path: Path) -> None:
    from minewatch.cli import cli

    cfg = _scan_config(l1c, tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["tiles", "search", str(cfg), "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["scenes"]
    assert {r["processing_level"] for r in rows} == {"L1C"}
    assert all("B10" in r["bands"] and "SCL" not in r["bands"] for r in rows)
    res = runner.invoke(cli, ["tiles", "search", str(cfg), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0 and "05.10     L1C" in res.stdout
