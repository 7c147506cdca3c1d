"""The ``stac`` source against real servers on loopback: ``rustac serve`` (a STAC API) loaded with
Earth Search v1-shaped items, whose COGs (the synthetic world, per band as Earth Search serves
them) are served with Range support by the RangeHTTPServer handler. Faults are injected by the
servers, not by mocks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from shapely.geometry import shape

from aoi.grid import GridCell
from tests.tiles.servers import (
    FaultProxy,
    RangeServer,
    RustacServer,
    StacWorld,
    clear_gdal_cache,
    stac_stack,
)
from tiles.config import HttpConfig, StacSourceConfig
from tiles.errors import (
    AssetMissingError,
    AuthenticationError,
    SceneFormatError,
    SourceUnavailableError,
)
from tiles.http import RetryPolicy
from tiles.sources import SasSigner, StacSource, item_baseline, item_boa_offset, item_to_scene_info

START, END = dt.date(2024, 4, 1), dt.date(2024, 9, 30)
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@dataclasses.dataclass
class Stack:
    cogs: RangeServer
    api: RustacServer
    world: StacWorld
    proxy: FaultProxy
    root: Path

    @property
    def area(self) -> Any:
        return shape(self.world.items[0]["geometry"]).buffer(-0.001)

    def cell(self, row: int = 128, col: int = 128, size: int = 256) -> GridCell:
        transform = self.world.transform @ Affine.translation(col, row)
        return GridCell("21MVN_0101", self.world.crs, transform, size, size)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stac")
    with stac_stack(root) as (cogs, api, world, proxy):
        yield Stack(cogs, api, world, proxy, root)


def recorded_sleeps() -> tuple[RetryPolicy, list[float]]:
    sleeps: list[float] = []
    policy = RetryPolicy(
        max_tries=3,
        backoff_s=0.01,
        jitter=0.0,
        connect_timeout_s=1.0,
        read_timeout_s=1.0,
        sleep=sleeps.append,
    )
    return policy, sleeps


def make_source(stack: Stack, tmp_path: Path, **kw: Any) -> StacSource:
    clear_gdal_cache()
    stack.cogs.reset()
    policy = kw.pop("policy", None) or RetryPolicy(
        max_tries=3, backoff_s=0.01, connect_timeout_s=1.0, read_timeout_s=1.0
    )
    config = StacSourceConfig(url=stack.proxy.url, **kw)
    return StacSource(config, cache_dir=tmp_path / "cache", policy=policy)


def scenes(source: StacSource, stack: Stack) -> list[Any]:
    return source.search(stack.area, START, END)


# ------------------------------------------------------------------------------------- search


def test_search_pages_through_every_item(stack: Stack, tmp_path: Path) -> None:
    source = make_source(stack, tmp_path, page_size=1)
    stack.proxy.seen.clear()
    found = scenes(source, stack)
    assert sorted(s.scene_id for s in found) == sorted(i["id"] for i in stack.world.items)
    posts = [p for m, p in stack.proxy.seen if m == "POST" and p.startswith("/search")]
    assert len(posts) >= 4  # one page per item: the `next` links were followed
    first = found[0]
    assert first.crs == stack.world.crs
    assert first.transform == stack.world.transform
    assert (first.width, first.height) == (512, 512)
    assert first.processing_baseline == "05.10"
    assert set(first.assets) >= {"B02", "B11", "SCL"}


def test_search_dates_and_cloud_limit(stack: Stack, tmp_path: Path) -> None:
    clouds = sorted(float(i["properties"]["eo:cloud_cover"]) for i in stack.world.items)
    limit = (clouds[1] + clouds[2]) / 2
    source = make_source(stack, tmp_path, max_cloud_pct=limit)
    assert len(scenes(source, stack)) == 2  # rustac ignores `query`: filtered client-side too
    q2 = make_source(stack, tmp_path).search(stack.area, START, dt.date(2024, 6, 30))
    assert all(s.datetime.date() <= dt.date(2024, 6, 30) for s in q2) and len(q2) == 2


def test_empty_search_says_what_was_asked(stack: Stack, tmp_path: Path) -> None:
    source = make_source(stack, tmp_path)
    assert source.search(stack.area, dt.date(2020, 1, 1), dt.date(2020, 3, 31)) == []
    message = source.explain_empty(stack.area, dt.date(2020, 1, 1), dt.date(2020, 3, 31))
    assert "2020-01-01..2020-03-31" in message and "max_cloud_pct" in message


def test_search_retries_5xx_and_429_with_retry_after(stack: Stack, tmp_path: Path) -> None:
    policy, sleeps = recorded_sleeps()
    source = make_source(stack, tmp_path, policy=policy)
    stack.proxy.inject("503", "429:2")
    assert len(scenes(source, stack)) == 4
    assert sleeps == [0.01, 2.0]  # backoff, then the server's Retry-After


def test_search_gives_up_with_reason(stack: Stack, tmp_path: Path) -> None:
    policy, sleeps = recorded_sleeps()
    source = make_source(stack, tmp_path, policy=policy)
    stack.proxy.inject("502", "502", "502")
    with pytest.raises(SourceUnavailableError, match=r"failed after 3 tries.*HTTP 502"):
        scenes(source, stack)
    assert sleeps == [0.01, 0.02]


def test_search_stalled_server_times_out_then_recovers(stack: Stack, tmp_path: Path) -> None:
    policy, _ = recorded_sleeps()
    source = make_source(stack, tmp_path, policy=policy)
    stack.proxy.inject("stall:2")
    assert len(scenes(source, stack)) == 4


# --------------------------------------------------------------------------------------- read


def test_read_applies_the_offset_exactly_once(stack: Stack, tmp_path: Path) -> None:
    source = make_source(stack, tmp_path)
    cell = stack.cell()
    found = scenes(source, stack)
    flags = {s.properties.get("earthsearch:boa_offset_applied") for s in found}
    assert flags == {True, False, None}  # harmonised COG, raw DN, Planetary Computer keys
    for info in found:
        scene = source.read(info, cell, bands=("B02", "B04", "B11"))
        truth = stack.world.reflectance[info.scene_id]
        np.testing.assert_allclose(scene.band("B02"), truth["B02"][128:384, 128:384], atol=1e-6)
        # 20 m band resampled onto the 10 m grid: pixel centres that fall on 20 m centres
        # hold the 20 m value (bilinear), within rounding.
        b11 = scene.band("B11")
        assert np.nanmax(np.abs(np.nanmean(b11) - np.nanmean(truth["B11"][64:192, 64:192]))) < 5e-3
        assert scene.scl is not None and scene.scl.shape == (256, 256)
        assert scene.valid.all()


def test_read_reads_only_the_needed_byte_ranges(stack: Stack, tmp_path: Path) -> None:
    source = make_source(stack, tmp_path)
    info = scenes(source, stack)[1]
    stack.cogs.reset()
    # a cell whose window (with its 2 px margin) lies in the first 128 px block of each band
    source.read(info, stack.cell(row=2, col=2, size=124), bands=("B02", "B11"))
    gets = [r for r in stack.cogs.requests if r.method == "GET"]
    assert gets and all(r.range for r in gets), "every GET must be a range request"
    path = stack.root / "cogs" / info.scene_id / "B02.tif"
    with rasterio.open(path) as ds:
        first = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        last = int(ds.get_tag_item("BLOCK_OFFSET_3_3", "TIFF", bidx=1))
    spans = [
        tuple(int(v) for v in r.range.split("=")[1].split("-"))
        for r in gets
        if r.path.endswith(f"{info.scene_id}/B02.tif") and r.range
    ]
    assert any(a <= first <= b for a, b in spans), "the needed block was not read"
    assert not any(a <= last <= b for a, b in spans), "a block outside the window was read"
    full = sum(
        (stack.root / "cogs" / info.scene_id / f"{b}.tif").stat().st_size
        for b in ("B02", "B11", "SCL")
    )
    sent = stack.cogs.bytes_sent(f"/cogs/{info.scene_id}/")
    assert 0 < sent < full / 2, (sent, full)
    assert not [r for r in stack.cogs.requests if "/B03.tif" in r.path]


def test_rerun_reads_nothing_twice(stack: Stack, tmp_path: Path) -> None:
    source = make_source(stack, tmp_path)
    info = scenes(source, stack)[2]
    cell = stack.cell()
    first = source.read(info, cell, bands=("B03", "B12"))
    again = make_source(stack, tmp_path)  # a new process would see only the disk cache
    stack.cogs.reset()
    second = again.read(info, cell, bands=("B03", "B12"))
    assert stack.cogs.requests == []
    np.testing.assert_array_equal(first.data, second.data)
    assert again.cache.hits == 3 and again.cache.misses == 0


def test_corrupt_cache_entry_is_read_again(stack: Stack, tmp_path: Path) -> None:
    source = make_source(stack, tmp_path)
    info = scenes(source, stack)[0]
    cell = stack.cell()
    first = source.read(info, cell, bands=("B04",))
    entries = sorted((tmp_path / "cache" / "windows").rglob("*.win"))
    assert len(entries) == 2  # B04 and SCL
    blob = bytearray(entries[0].read_bytes())
    blob[-10] ^= 0xFF  # a flipped bit
    entries[0].write_bytes(bytes(blob))
    entries[1].write_bytes(entries[1].read_bytes()[:-100])  # a half-written entry
    again = make_source(stack, tmp_path)
    second = again.read(info, cell, bands=("B04",))
    assert again.cache.misses == 2 and stack.cogs.bytes_sent() > 0
    np.testing.assert_array_equal(first.data, second.data)


def test_cog_5xx_and_429_are_retried(stack: Stack, tmp_path: Path) -> None:
    source = make_source(stack, tmp_path)
    info = scenes(source, stack)[1]
    path = f"/cogs/{info.scene_id}/B02.tif"
    stack.cogs.inject(f"GET {path}", "503", "500", "429:1")
    scene = source.read(info, stack.cell(), bands=("B02",))
    statuses = [r.status for r in stack.cogs.requests if r.path == path and r.method == "GET"]
    assert statuses[:3] == [503, 500, 429] and 206 in statuses
    assert scene.valid.all()


def test_cog_that_keeps_failing_fails_that_scene_only(stack: Stack, tmp_path: Path) -> None:
    policy, _ = recorded_sleeps()
    source = make_source(stack, tmp_path, policy=policy)
    found = scenes(source, stack)
    bad = found[1]
    stack.cogs.inject(f"/cogs/{bad.scene_id}/B02.tif", *["503"] * 40)
    with pytest.raises(SourceUnavailableError, match=r"S2.*B02.*HTTP 503"):
        source.read(bad, stack.cell(), bands=("B02",))
    assert source.read(found[2], stack.cell(), bands=("B02",)).valid.all()


def test_stalled_cog_server_times_out(stack: Stack, tmp_path: Path) -> None:
    source = make_source(stack, tmp_path)
    info = scenes(source, stack)[3]
    stack.cogs.inject(f"GET /cogs/{info.scene_id}/B03.tif", "stall:3")
    assert source.read(info, stack.cell(), bands=("B03",)).valid.all()


def _with_asset(info: Any, band: str, **changes: Any) -> Any:
    assets = {k: dict(v) for k, v in info.assets.items()}
    assets[band].update(changes)
    return dataclasses.replace(info, assets=assets)


def test_missing_asset_is_reported(stack: Stack, tmp_path: Path) -> None:
    source = make_source(stack, tmp_path)
    info = scenes(source, stack)[0]
    gone = _with_asset(info, "B02", href=f"{stack.cogs.url}/cogs/nope/B02.tif")
    with pytest.raises(AssetMissingError, match="404"):
        source.read(gone, stack.cell(), bands=("B02",))
    no_band = dataclasses.replace(info, assets={k: v for k, v in info.assets.items() if k != "B08"})
    with pytest.raises(AssetMissingError, match=r"no asset for band\(s\) \['B08'\]"):
        source.read(no_band, stack.cell(), bands=("B02", "B08"))


def test_truncated_cog_is_detected_before_decoding(stack: Stack, tmp_path: Path) -> None:
    source = make_source(stack, tmp_path)
    info = scenes(source, stack)[0]
    src = stack.root / "cogs" / info.scene_id / "B02.tif"
    with rasterio.open(src) as ds:
        cut = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1)) + 100
    bad = stack.root / "bad" / "truncated.tif"
    bad.parent.mkdir(exist_ok=True)
    bad.write_bytes(src.read_bytes()[:cut])
    url = f"{stack.cogs.url}/bad/truncated.tif"
    with pytest.raises(SceneFormatError, match=r"file:size is \d+; the file is truncated"):
        source.read(_with_asset(info, "B02", href=url), stack.cell(), bands=("B02",))
    unsized = _with_asset(info, "B02", href=url)
    unsized.assets["B02"].pop("file:size")
    with pytest.raises(SceneFormatError, match=r"truncated or corrupt: the server holds \d+ bytes"):
        source.read(unsized, stack.cell(), bands=("B02",))


def test_error_page_saved_as_tif(stack: Stack, tmp_path: Path) -> None:
    source = make_source(stack, tmp_path)
    info = scenes(source, stack)[0]
    page = stack.root / "bad" / "page.tif"
    page.parent.mkdir(exist_ok=True)
    page.write_text("<html>503 Service Unavailable</html>")
    odd = _with_asset(info, "B02", href=f"{stack.cogs.url}/bad/page.tif")
    odd.assets["B02"].pop("file:size")
    with pytest.raises(SceneFormatError, match=r"not a GeoTIFF.*<html>"):
        source.read(odd, stack.cell(), bands=("B02",))


def test_download_mode_checks_file_checksum(stack: Stack, tmp_path: Path) -> None:
    source = make_source(stack, tmp_path, read_mode="download")
    info = scenes(source, stack)[1]
    scene = source.read(info, stack.cell(), bands=("B02",))
    truth = stack.world.reflectance[info.scene_id]["B02"][128:384, 128:384]
    np.testing.assert_allclose(scene.band("B02"), truth, atol=1e-6)
    files = sorted((tmp_path / "cache" / "files").iterdir())
    assert len(files) == 2  # B02 and SCL, whole
    corrupt = _with_asset(info, "B02", **{"file:checksum": "1220" + "00" * 32})
    shutil.rmtree(tmp_path / "cache" / "windows")
    from tiles.errors import ChecksumMismatchError

    with pytest.raises(ChecksumMismatchError, match="downloaded twice"):
        source.read(corrupt, stack.cell(), bands=("B02",))


def test_planetary_computer_signing_refreshes_a_refused_token(stack: Stack, tmp_path: Path) -> None:
    token_dir = stack.root / "api" / "sas" / "v1" / "token"
    token_dir.mkdir(parents=True, exist_ok=True)
    expiry = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()
    (token_dir / "sentinel-2-l2a").write_text(
        json.dumps({"token": "token=fresh", "msft:expiry": expiry})
    )
    source = make_source(
        stack,
        tmp_path,
        sign="planetary_computer",
        sas_token_url=f"{stack.cogs.url}/api/sas/v1/token",
    )
    info = scenes(source, stack)[2]
    assert source._signer is not None
    source._signer._token = "token=expired"  # as if fetched 50 minutes ago and revoked since
    source._signer._expires_at = dt.datetime.now().timestamp() + 3600
    stack.cogs.httpd.require_token = ("/cogs/", "fresh")
    scene = source.read(info, stack.cell(), bands=("B02",))
    assert scene.valid.all()
    assert 403 in [r.status for r in stack.cogs.requests]
    stack.cogs.httpd.require_token = ("/cogs/", "never")
    shutil.rmtree(tmp_path / "cache")
    source._sizes.clear()
    clear_gdal_cache()
    with pytest.raises(AuthenticationError, match="403"):
        source.read(info, stack.cell(), bands=("B02",))
    stack.cogs.reset()


def test_sas_signer_refreshes_before_expiry(stack: Stack, tmp_path: Path) -> None:
    token_dir = stack.root / "api" / "sas" / "v1" / "token"
    token_dir.mkdir(parents=True, exist_ok=True)
    (token_dir / "sentinel-2-l2a").write_text(
        json.dumps({"token": "st=a&sig=b", "msft:expiry": "2030-01-01T00:00:00Z"})
    )
    now = [dt.datetime(2029, 12, 31, 23, 0, tzinfo=dt.timezone.utc).timestamp()]
    from tiles.http import make_session

    signer = SasSigner(
        f"{stack.cogs.url}/api/sas/v1/token",
        "sentinel-2-l2a",
        session=make_session(),
        policy=RetryPolicy(),
        clock=lambda: now[0],
    )
    assert signer.sign("https://x/B02.tif") == "https://x/B02.tif?st=a&sig=b"
    stack.cogs.reset()
    signer.sign("https://x/B03.tif")
    assert stack.cogs.requests == []  # reused
    now[0] += 3600 - 60  # within 120 s of expiry
    signer.sign("https://x/B04.tif")
    assert len(stack.cogs.requests) == 1
    assert "***" in repr(signer) and "sig=b" not in repr(signer)


def test_sas_token_expired_on_arrival_is_fetched_once_with_a_warning(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 18 item 9: a token service answering with an already expired token made the signer
    fetch it again for every file (168 times in a scan), silently."""
    token_dir = stack.root / "api" / "sas" / "v1" / "token"
    token_dir.mkdir(parents=True, exist_ok=True)
    (token_dir / "sentinel-2-l2a").write_text(
        json.dumps({"token": "st=a&sig=old", "msft:expiry": "2020-01-01T00:00:00Z"})
    )
    from tiles.http import make_session

    signer = SasSigner(
        f"{stack.cogs.url}/api/sas/v1/token",
        "sentinel-2-l2a",
        session=make_session(),
        policy=RetryPolicy(),
    )
    stack.cogs.reset()
    with caplog.at_level("WARNING", logger="tiles.sources"):
        signed = [signer.sign(f"https://x/B{i:02d}.tif") for i in range(40)]
    assert len(stack.cogs.requests) == 1  # fetched once, not once per file
    assert all(s.endswith("?st=a&sig=old") for s in signed)
    warnings = [r.getMessage() for r in caplog.records if "clock" in r.getMessage()]
    assert len(warnings) == 1 and "2020-01-01" in warnings[0]
    signer.invalidate()  # the storage refused it (403): fetched once more
    signer.sign("https://x/B02.tif")
    assert len(stack.cogs.requests) == 2


# ------------------------------------------------------------------------------ item parsing


def test_real_earth_search_v1_item(shared_data: Path) -> None:
    body = json.loads(
        (
            shared_data
            / "stac_payloads/extracted/test_cli_TestCLISearch.test_filter[inprocess]__02.json"
        ).read_text()
    )["response"]
    item = next(f for f in body["features"] if f["collection"] == "sentinel-2-l2a")
    info = item_to_scene_info(item)
    assert info.scene_id == "S2B_24MVV_20250731_0_L2A"
    assert info.crs.to_epsg() == 32724
    assert info.transform == Affine(10, 0, 399960, 0, -10, 9500020)
    assert (info.width, info.height) == (10980, 10980)
    assert info.processing_baseline == "05.11"
    assert info.assets["B11"]["key"] == "swir16" and info.assets["SCL"]["key"] == "scl"
    assert info.assets["B8A"]["key"] == "nir08" and "B10" not in info.assets
    assert item_boa_offset(info.properties, scene_id=info.scene_id) == 0.0  # applied: true


def test_real_planetary_computer_item(shared_data: Path) -> None:
    item = json.loads(
        (
            shared_data
            / "stac_payloads/items/S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json"
        ).read_text()
    )
    info = item_to_scene_info(item)
    assert info.assets["B02"]["key"] == "B02" and info.has_scl
    assert info.processing_baseline == "02.12"
    assert item_boa_offset(info.properties, scene_id=info.scene_id) == 0.0  # before 04.00
    later = dict(info.properties, processing_baseline="04.00")
    assert item_boa_offset(later, scene_id="x") == -1000.0


def test_baseline_from_product_id_or_refused() -> None:
    assert item_baseline({"sentinel:product_id": "S2A_MSIL2A_X_N0214_R123"}, item_id="x") == "02.14"
    with pytest.raises(SceneFormatError, match="no processing baseline"):
        item_baseline({}, item_id="S2A_28QCH_20200714_0_L2A")


# ---------------------------------------------------------------------------------------- CLI


def _config(stack: Stack, tmp_path: Path) -> Path:
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
        f"""name: stac-test
aoi: {{path: aoi.geojson, kind: indigenous_land, buffer_m: 0}}
source:
  kind: stac
  url: {stack.proxy.url}
  collection: sentinel-2-l2a
  http: {{max_tries: 2, backoff_s: 0.01, read_timeout_s: 2}}
periods: {{kind: quarter, start: 2024-04-01, end: 2024-09-30}}
grid: {{chip_size_px: 256}}
output: {{folder: out}}
"""
    )
    return cfg


def test_cli_search_fetch_composite(stack: Stack, tmp_path: Path) -> None:
    from minewatch.cli import cli

    clear_gdal_cache()
    cfg = _config(stack, tmp_path)
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(cli, ["tiles", "search", str(cfg), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout)
    assert len(listed["scenes"]) == 4
    assert {"cloud_cover_pct", "processing_baseline"} <= set(listed["scenes"][0])
    res = runner.invoke(cli, ["tiles", "fetch", str(cfg), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    fetched = json.loads(res.stdout)
    assert fetched["read"] > 0 and fetched["failed"] == []
    stack.cogs.reset()
    res = runner.invoke(cli, ["tiles", "composite", str(cfg), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert [r for r in stack.cogs.requests if r.method == "GET"] == []  # all from the cache
    composited = json.loads(res.stdout)
    units = composited["units"]
    assert {u["period"] for u in units} == {"2024Q2", "2024Q3"}
    # fetch pairs chips and scenes with the scan's planner: exactly what the composite reads
    assert fetched["chip_scenes"] == sum(u["scenes"] for u in units)
    # the statuses of a scan's coverage layer
    assert {u["status"] for u in units} <= {"observed", "partly_observed", "not_observed"}
    assert composited["unobserved_periods"] == []
    assert (out / "composites" / "coverage.csv").is_file()
    assert list((out / "composites").glob("*_composite.tif"))
    res = runner.invoke(cli, ["tiles", "composite", str(cfg), "--out", str(out)])
    assert res.exit_code != 0 and "--overwrite" in res.output


def test_http_config_reaches_the_policy() -> None:
    policy = HttpConfig(max_tries=7, read_timeout_s=5).policy()
    assert policy.max_tries == 7 and policy.timeout == (10.0, 5.0)
