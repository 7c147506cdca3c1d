"""The ``sentinelhub`` source against a loopback server speaking Sentinel Hub's OAuth, Catalog and
Process endpoints, replaying the real recorded Process answer (``img.tar``) and checking the
requests the real `sentinelhub` client sends."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import box

from aoi.grid import GridCell
from tests.tiles.servers import SentinelHubServer
from tiles.config import HttpConfig, SentinelHubSourceConfig
from tiles.errors import AuthenticationError, SourceUnavailableError
from tiles.sources import SentinelHubSource, decode_process_answer, evalscript, split_cell

SECRET = "s3cret-never-logged"
ENV = {"SH_CLIENT_ID": "cid", "SH_CLIENT_SECRET": SECRET}
UTM21S = CRS.from_epsg(32721)
ORIGIN = (436640.0, 9270780.0)


@pytest.fixture(scope="module")
def server() -> Iterator[SentinelHubServer]:
    previous = os.environ.get("OAUTHLIB_INSECURE_TRANSPORT")
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"  # loopback is plain http
    srv = SentinelHubServer(client_secret=SECRET).start()
    srv.features = [
        {
            "type": "Feature",
            "id": f"S2{'AB'[i % 2]}_MSIL2A_2024041{i}T135539_N0510_R067_T21MVN_2024041{i}T182218",
            "properties": {
                "datetime": f"2024-04-1{i}T13:55:39Z",
                "eo:cloud_cover": 10.0 * i,
                "proj:epsg": 32721,
                "proj:bbox": [399960, 9190240, 509760, 9300040],
            },
            "geometry": None,
            "bbox": [-58.0, -7.0, -57.0, -6.0],
        }
        for i in range(5)
    ]
    srv.render = render
    yield srv
    srv.stop()
    if previous is None:
        os.environ.pop("OAUTHLIB_INSECURE_TRANSPORT", None)
    else:
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = previous


def render(body: dict[str, Any]) -> tuple[np.ndarray, float]:
    """Bands whose DN encode the column's easting, so the placement of sub-requests shows."""
    w, h = body["output"]["width"], body["output"]["height"]
    left = body["input"]["bounds"]["bbox"][0]
    n = body["evalscript"].count("s.")
    cols = (left - ORIGIN[0]) / 10 + np.arange(w)
    arr = np.broadcast_to(1000 + cols, (n, h, w)).astype(np.uint16).copy()
    arr[-2] = 4  # SCL vegetation
    arr[-1] = 1  # dataMask
    arr[-1, :, :3] = 0  # a no-data edge
    return arr, 1e-4


def make_source(server: SentinelHubServer, tmp_path: Path, **kw: Any) -> SentinelHubSource:
    server.records.clear()
    config = SentinelHubSourceConfig(
        base_url=server.url,
        token_url=server.token_url,
        max_cloud_pct=kw.pop("max_cloud_pct", 35),
        http=HttpConfig(max_tries=3, backoff_s=0.01, read_timeout_s=5),
        **kw,
    )
    return SentinelHubSource(config, cache_dir=tmp_path / "cache", environ=ENV)


def cell(width: int = 300, height: int = 200) -> GridCell:
    return GridCell(
        "21MVN_0000", UTM21S, Affine(10, 0, *ORIGIN[:1], 0, -10, ORIGIN[1]), width, height
    )


AREA = box(-57.6, -6.7, -57.5, -6.6)


def test_missing_credentials_name_the_variables(tmp_path: Path) -> None:
    config = SentinelHubSourceConfig(endpoint="cdse")
    with pytest.raises(AuthenticationError, match="SH_CLIENT_ID and SH_CLIENT_SECRET"):
        SentinelHubSource(config, cache_dir=tmp_path, environ={})
    config = SentinelHubSourceConfig(client_secret_env="CDSE_SECRET")
    with pytest.raises(AuthenticationError, match=r"CDSE_SECRET .*Sentinel Hub"):
        SentinelHubSource(config, cache_dir=tmp_path, environ={"SH_CLIENT_ID": "x"})
    assert config.urls[0] == "https://services.sentinel-hub.com"
    assert "dataspace.copernicus.eu" in SentinelHubSourceConfig(endpoint="cdse").urls[1]


def test_catalog_search_pages_and_filters(
    server: SentinelHubServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    source = make_source(server, tmp_path)
    found = source.search(AREA, dt.date(2024, 4, 1), dt.date(2024, 4, 30))
    assert len(found) == 4  # eo:cloud_cover 40 is over the limit
    searches = [r for r in server.records if r.path.endswith("/catalog/1.0.0/search")]
    assert len(searches) == 3  # 5 items, 2 per page
    assert searches[0].body["filter"] == "eo:cloud_cover <= 35"
    assert searches[0].body["collections"] == ["sentinel-2-l2a"]
    assert searches[0].body["intersects"]["type"] == "Polygon"
    assert searches[1].body["next"] == 2
    token = next(r for r in server.records if r.path == "/oauth/token")
    assert token.body["grant_type"] == "client_credentials"
    assert all(r.headers["Authorization"].startswith("Bearer ") for r in searches)
    info = found[0]
    assert info.crs == UTM21S and info.processing_baseline == "05.10"
    assert (info.width, info.height) == (10980, 10980)
    assert SECRET not in caplog.text and SECRET not in repr(source)
    assert "***" in repr(source)


def test_process_request_and_answer(server: SentinelHubServer, tmp_path: Path) -> None:
    source = make_source(server, tmp_path)
    info = source.search(AREA, dt.date(2024, 4, 1), dt.date(2024, 4, 30))[0]
    scene = source.read(info, cell(), bands=("B02", "B11"))
    (req,) = [r for r in server.records if r.path == "/api/v1/process"]
    body = req.body
    assert body["input"]["bounds"]["bbox"] == [
        ORIGIN[0],
        ORIGIN[1] - 2000,
        ORIGIN[0] + 3000,
        ORIGIN[1],
    ]
    assert body["input"]["bounds"]["properties"]["crs"].endswith("/32721")
    assert (body["output"]["width"], body["output"]["height"]) == (300, 200)
    ids = [r["identifier"] for r in body["output"]["responses"]]
    assert ids == ["default", "userdata"]
    data = body["input"]["data"][0]
    assert data["processing"]["harmonizeValues"] is True
    assert data["dataFilter"]["timeRange"]["from"] == "2024-04-10T13:50:39Z"
    assert '"B02", "B11", "SCL", "dataMask"' in body["evalscript"]
    assert "normalizationFactor" in body["evalscript"]
    accept = {k.lower(): v for k, v in req.headers.items()}["accept"]
    assert accept == "application/x-tar"
    np.testing.assert_allclose(
        scene.band("B02")[0, 3:6], (1000 + np.arange(3, 6)) * 1e-4, atol=1e-7
    )
    assert not scene.valid[:, :3].any() and scene.valid[:, 3:].all()
    assert np.isnan(scene.band("B11")[:, :3]).all()
    assert scene.scl is not None and set(np.unique(scene.scl)) == {0, 4}


def test_requests_are_split_over_2500_px(server: SentinelHubServer, tmp_path: Path) -> None:
    assert split_cell(cell(6000, 100), max_px=2500) == [
        (0, 0, 100, 2000),
        (0, 2000, 100, 2000),
        (0, 4000, 100, 2000),
    ]
    source = make_source(server, tmp_path)
    info = source.search(AREA, dt.date(2024, 4, 1), dt.date(2024, 4, 30))[1]
    scene = source.read(info, cell(3000, 40), bands=("B04",))
    reqs = [r for r in server.records if r.path == "/api/v1/process"]
    assert [r.body["output"]["width"] for r in reqs] == [1500, 1500]
    dn = np.rint(scene.band("B04")[0] / 1e-4)
    np.testing.assert_array_equal(dn[3:1500], 1000 + np.arange(3, 1500))  # mosaicked in place
    np.testing.assert_array_equal(dn[1503:], 1000 + np.arange(1503, 3000))
    assert np.isnan(scene.band("B04")[:, 1500:1503]).all()  # each sub-answer's no-data edge


def test_replays_the_real_recorded_process_answer(
    server: SentinelHubServer, tmp_path: Path, shared_data: Path
) -> None:
    tar = (shared_data / "sentinelhub_payloads" / "img.tar").read_bytes()
    source = make_source(server, tmp_path)
    info = source.search(AREA, dt.date(2024, 4, 1), dt.date(2024, 4, 30))[0]
    server.replay = tar
    try:
        scene = source.read(info, cell(512, 856), bands=("B04",))
    finally:
        server.replay = None
    import tarfile

    with tarfile.open(tmp_path / "x.tar", "w"):
        pass
    with tarfile.open(fileobj=__import__("io").BytesIO(tar)) as t:
        t.extract("default.tif", tmp_path, filter="data")
    with rasterio.open(tmp_path / "default.tif") as ds:
        recorded = ds.read()
    valid = recorded[2] > 0
    np.testing.assert_allclose(
        scene.band("B04")[valid], recorded[0][valid].astype(np.float32) * np.float32(1e-4)
    )
    assert scene.scl is not None
    np.testing.assert_array_equal(scene.scl[valid], recorded[1][valid].astype(np.uint8))


def test_decode_refuses_a_wrong_answer() -> None:
    from tiles.errors import SceneFormatError

    with pytest.raises(SceneFormatError, match=r"shape \(3, 4, 4\), expected \(4, 4, 4\)"):
        decode_process_answer(
            {"default.tif": np.zeros((4, 4, 3)), "userdata.json": {}}, n_bands=4, shape=(4, 4)
        )
    with pytest.raises(SceneFormatError, match=r"expected default\.tif"):
        decode_process_answer({"x.png": 1}, n_bands=4, shape=(4, 4))
    assert "CLM" in evalscript(("B02",), cloud_mask="clm")


def test_cache_means_no_second_request(server: SentinelHubServer, tmp_path: Path) -> None:
    source = make_source(server, tmp_path)
    info = source.search(AREA, dt.date(2024, 4, 1), dt.date(2024, 4, 30))[2]
    first = source.read(info, cell(), bands=("B08",))
    server.records.clear()
    again = make_source(server, tmp_path)
    second = again.read(info, cell(), bands=("B08",))
    assert [r for r in server.records if r.path == "/api/v1/process"] == []
    np.testing.assert_array_equal(first.data, second.data)


def test_5xx_and_429_are_retried(server: SentinelHubServer, tmp_path: Path) -> None:
    source = make_source(server, tmp_path)
    info = source.search(AREA, dt.date(2024, 4, 1), dt.date(2024, 4, 30))[3]
    server.inject("/api/v1/process", "500", "503", "429:10")
    scene = source.read(info, cell(), bands=("B03",))
    assert scene.valid[:, 3:].all()
    assert len([r for r in server.records if r.path == "/api/v1/process"]) == 4


def test_persistent_failure_fails_the_scene(server: SentinelHubServer, tmp_path: Path) -> None:
    source = make_source(server, tmp_path)
    info = source.search(AREA, dt.date(2024, 4, 1), dt.date(2024, 4, 30))[0]
    server.inject("/api/v1/process", *["502"] * 3)
    with pytest.raises(SourceUnavailableError, match="kept failing"):
        source.read(info, cell(64, 64), bands=("B05",))
    server.inject("/api/v1/process", *["429:10"] * 3)
    with pytest.raises(SourceUnavailableError, match="429"):
        source.read(info, cell(64, 65), bands=("B05",))
    server.httpd.faults.clear()  # type: ignore[attr-defined]


def test_expired_token_is_refreshed(server: SentinelHubServer, tmp_path: Path) -> None:
    source = make_source(server, tmp_path)
    info = source.search(AREA, dt.date(2024, 4, 1), dt.date(2024, 4, 30))[0]
    server.revoke_all()  # the token the client holds is now refused (401)
    scene = source.read(info, cell(50, 50), bands=("B06",))
    assert scene.valid[:, 3:].all()
    procs = [r.headers["Authorization"] for r in server.records if r.path == "/api/v1/process"]
    assert len(procs) == 2 and procs[0] != procs[1]


def test_short_lived_token_is_renewed_ahead_of_expiry(
    server: SentinelHubServer, tmp_path: Path
) -> None:
    server.httpd.expires_in = 60  # type: ignore[attr-defined]  # under the 120 s margin
    try:
        source = make_source(server, tmp_path)
        info = source.search(AREA, dt.date(2024, 4, 1), dt.date(2024, 4, 30))[0]
        source.read(info, cell(40, 40), bands=("B07",))
        source.read(info, cell(41, 40), bands=("B07",))
    finally:
        server.httpd.expires_in = 3600  # type: ignore[attr-defined]
    tokens = [r for r in server.records if r.path == "/oauth/token"]
    assert len(tokens) >= 3


def test_wrong_secret_is_an_authentication_error(server: SentinelHubServer, tmp_path: Path) -> None:
    config = SentinelHubSourceConfig(base_url=server.url, token_url=server.token_url)
    source = SentinelHubSource(
        config, cache_dir=tmp_path, environ={"SH_CLIENT_ID": "cid", "SH_CLIENT_SECRET": "wrong"}
    )
    with pytest.raises(AuthenticationError, match="refused the client credentials") as info:
        source.search(AREA, dt.date(2024, 4, 1), dt.date(2024, 4, 30))
    assert "wrong" not in str(info.value)


def test_l1c_collection_13_bands_no_scl_offset_by_the_service(
    server: SentinelHubServer, tmp_path: Path
) -> None:
    """``collection: sentinel-2-l1c``: the Process request names the L1C collection, asks for no
    SCL (L1C has none; the composite's detector masks it) and harmonised values, so the
    service's RADIO_ADD_OFFSET is applied there once and not again here."""

    def render_l1c(body: dict[str, Any]) -> tuple[np.ndarray, float]:
        w, h = body["output"]["width"], body["output"]["height"]
        n = body["evalscript"].count("s.")
        arr = np.full((n, h, w), 1500, dtype=np.uint16)
        arr[-1] = 1  # dataMask
        return arr, 1e-4

    server.render = render_l1c
    try:
        source = make_source(server, tmp_path, collection="sentinel-2-l1c")
        info = source.search(AREA, dt.date(2024, 4, 1), dt.date(2024, 4, 30))[0]
        assert info.processing_level == "L1C" and not info.has_scl
        assert len(info.bands) == 13 and "B10" in info.bands
        scene = source.read(info, cell(), bands=("B01", "B10", "B8A"))
    finally:
        server.render = render
    (req,) = [r for r in server.records if r.path == "/api/v1/process"]
    data = req.body["input"]["data"][0]
    assert data["type"] == "sentinel-2-l1c"
    assert data["processing"]["harmonizeValues"] is True
    assert '"B01", "B10", "B8A", "dataMask"' in req.body["evalscript"]
    assert "SCL" not in req.body["evalscript"]
    assert scene.scl is None
    np.testing.assert_allclose(scene.band("B10"), 0.15, atol=1e-6)  # DN x norm, no 2nd offset
    # the L2A source offers no B10
    l2a = make_source(server, tmp_path / "l2a").search(
        AREA, dt.date(2024, 4, 1), dt.date(2024, 4, 30)
    )
    assert "B10" not in l2a[0].bands and l2a[0].processing_level == "L2A"


def test_debug_log_never_shows_the_live_token(server: SentinelHubServer, tmp_path: Path) -> None:
    """Issue 18 item 8: ``minewatch -vv`` (debug logs of requests-oauthlib and urllib3 included)
    searched through the real OAuth flow on loopback shows neither the access token it obtained
    nor the client secret."""
    import json
    import subprocess
    import sys

    aoi = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"id": "A"}, "geometry": AREA.__geo_interface__}
        ],
    }
    (tmp_path / "aoi.geojson").write_text(json.dumps(aoi))
    cfg = tmp_path / "scan.yaml"
    cfg.write_text(
        f"""name: sh
aoi: {{path: aoi.geojson, kind: indigenous_land, buffer_m: 0}}
source:
  kind: sentinelhub
  base_url: {server.url}
  token_url: {server.token_url}
  http: {{max_tries: 2, backoff_s: 0.01}}
periods: {{kind: quarter, start: 2024-01-01, end: 2024-06-30}}
"""
    )
    issued = server.httpd.tokens_issued  # type: ignore[attr-defined]
    env = os.environ | ENV | {"OAUTHLIB_INSECURE_TRANSPORT": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "minewatch", "-vv", "tiles", "search", str(cfg), "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    token = f"token-{issued + 1}"
    assert server.httpd.tokens_issued > issued  # type: ignore[attr-defined]  # a token was issued
    assert "DEBUG" in res.stderr and "***" in res.stderr  # debug logs ran, and were masked
    assert token not in res.stderr and token not in res.stdout
    assert SECRET not in res.stderr


def test_plain_http_token_url_is_named_not_credentials_refused(
    server: SentinelHubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18 item 9: an http:// token_url (oauthlib refuses it without sending anything) was
    reported as refused credentials."""
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT")  # as on an operator's machine
    source = make_source(server, tmp_path)
    with pytest.raises(AuthenticationError, match=r"token URL is plain http.*https://") as info:
        source.search(AREA, dt.date(2024, 4, 1), dt.date(2024, 4, 30))
    assert "refused the client credentials" not in str(info.value)
    assert not [r for r in server.records if r.path == "/oauth/token"]  # the secret never left
