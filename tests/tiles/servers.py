"""Loopback servers for the remote-source tests: real servers, real protocols, no mocks.

- `RangeServer`: the COGs of the synthetic world over HTTP with Range support (the
  ``RangeHTTPServer`` package's handler), logging every request and the bytes it sent, and
  injecting faults on demand (429 with/without Retry-After, 5xx, stalls, 404, 403).
- `RustacServer`: ``rustac serve``, an in-memory STAC API, loaded with Earth Search v1-shaped items
  whose assets point at the `RangeServer`.
- `SentinelHubServer`: the OAuth token, Catalog and Process endpoints of Sentinel Hub, answering
  Process requests in the real multipart-tar shape (``default.tif`` + ``userdata.json``) and
  recording what the client sent.
- `build_stac_world`: a small synthetic world converted to per-band COGs as Earth Search serves
  them (10 m bands at 10 m, 20 m bands and SCL at 20 m) plus the STAC items.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from RangeHTTPServer import RangeRequestHandler
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from shapely.geometry import Polygon, mapping

from aoi.geometry import split_antimeridian
from tiles.cog import write_cog
from tiles.synthetic import WorldSpec, generate_world

REPO = Path(__file__).resolve().parents[2]
RUSTAC = REPO / ".venv" / "bin" / "rustac"
SIZE_PX = 512
BLOCK_PX = 128
COLLECTION = "sentinel-2-l2a"
ES_KEYS = {
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B05": "rededge1",
    "B06": "rededge2",
    "B07": "rededge3",
    "B08": "nir",
    "B8A": "nir08",
    "B11": "swir16",
    "B12": "swir22",
    "SCL": "scl",
}
BANDS_20M = {"B05", "B06", "B07", "B8A", "B11", "B12", "SCL"}
BANDS_60M = {"B01", "B09", "B10"}
#: Earth Search v1 keys of the bands only L1C items add.
ES_KEYS_L1C = {"B01": "coastal", "B09": "nir09", "B10": "cirrus"}
#: Top-of-atmosphere minus surface reflectance over dark tropical forest (path radiance), per
#: band: what the L1C variant adds to the synthetic world's surface reflectance.
TOA_HAZE = {
    "B01": 0.10,
    "B02": 0.074,
    "B03": 0.044,
    "B04": 0.030,
    "B05": 0.025,
    "B06": 0.02,
    "B07": 0.02,
    "B08": 0.015,
    "B8A": 0.015,
    "B09": 0.01,
    "B10": 0.0,
    "B11": 0.005,
    "B12": 0.003,
}


def clear_gdal_cache() -> None:
    """Empty GDAL's in-process /vsicurl/ cache (rasterio's bundled libgdal), so a test sees every
    byte a read needs."""
    import ctypes

    libs = sorted((Path(rasterio.__file__).parent.parent / "rasterio.libs").glob("libgdal*"))
    if libs:
        ctypes.CDLL(str(libs[0])).VSICurlClearCache()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------
# COGs over HTTP


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    status: int
    sent: int = 0


class _Handler(RangeRequestHandler):
    server: _RangeHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _fault(self) -> bool:
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            for key, actions in self.server.faults.items():
                method, _, prefix = key.rpartition(" ")
                if method and method != self.command:
                    continue
                if path.startswith(prefix) and actions:
                    action = actions.pop(0)
                    break
            else:
                action = None
        if action is None:
            need = self.server.require_token
            if need and path.startswith(need[0]) and f"token={need[1]}" not in self.path:
                self._record(403)
                self.send_error(403, "AuthenticationFailed")
                return True
            return False
        kind, _, arg = action.partition(":")
        if kind == "stall":
            time.sleep(float(arg or 5))
            return True
        if kind == "html":  # a CDN or proxy error page served with 200 in place of the file
            body = b"<!DOCTYPE html><html><body><h1>Service Unavailable</h1></body></html>\n"
            self._record(200)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return True
        status = int(kind)
        self._record(status)
        self.send_response(status)
        if arg:
            self.send_header("Retry-After", arg)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def _record(self, status: int) -> Request:
        req = Request(self.command, self.path.split("?", 1)[0], self.headers.get("Range"), status)
        with self.server.lock:
            self.server.requests.append(req)
        return req

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self._fault():
            return
        self._current = self._record(200)
        super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802 - http.server API
        if self._fault():
            return
        self._current = self._record(200)
        super().do_HEAD()

    def send_response(self, code: int, message: str | None = None) -> None:
        cur = getattr(self, "_current", None)
        if cur is not None:
            cur.status = code
        super().send_response(code, message)

    def copyfile(self, source: Any, outputfile: Any) -> None:
        counter = _Counting(outputfile)
        super().copyfile(source, counter)
        self._current.sent += counter.n


class _Counting:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return int(self.inner.write(data))


class _RangeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    lock: threading.Lock
    requests: list[Request]
    faults: dict[str, list[str]]
    require_token: tuple[str, str] | None


class RangeServer:
    """Serve ``root`` on loopback with Range support; inspect requests, inject faults."""

    def __init__(self, root: Path) -> None:
        self.root = root

        def handler(*args: Any, **kwargs: Any) -> _Handler:
            return _Handler(*args, directory=str(root), **kwargs)

        self.httpd = _RangeHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.lock = threading.Lock()
        self.httpd.requests = []
        self.httpd.faults = {}
        self.httpd.require_token = None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> RangeServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def requests(self) -> list[Request]:
        return self.httpd.requests

    def reset(self) -> None:
        with self.httpd.lock:
            self.httpd.requests.clear()
            self.httpd.faults.clear()
            self.httpd.require_token = None

    def inject(self, prefix: str, *actions: str) -> None:
        """Answer the next requests under ``prefix`` (``"GET /cogs/x"`` for one method) with
        ``actions``: ``"429:2"`` (status, then Retry-After seconds), ``"503"``, ``"stall:3"``
        (sleep 3 s, then drop), ``"html"`` (200 with an HTML error page instead of the file)."""
        with self.httpd.lock:
            self.httpd.faults.setdefault(prefix, []).extend(actions)

    def bytes_sent(self, prefix: str = "/") -> int:
        return sum(r.sent for r in self.requests if r.path.startswith(prefix))


# --------------------------------------------------------------------------------------------
# the synthetic world as Earth Search items


@dataclass
class StacWorld:
    root: Path
    items_path: Path
    items: list[dict[str, Any]]
    crs: CRS
    transform: Affine
    size_px: int
    reflectance: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    cog_bytes: int = 0
    #: L1C worlds: the SCL the synthetic world drew (not served), per item, at 10 m
    truth_scl: dict[str, np.ndarray] = field(default_factory=dict)

    def item(self, item_id: str) -> dict[str, Any]:
        return next(i for i in self.items if i["id"] == item_id)


def build_stac_world(
    root: Path, base_url: str, *, level: str = "L2A", center: tuple[float, float] | None = None
) -> StacWorld:
    """A 512 px synthetic world (2 quarters x 2 acquisitions) as Earth Search v1 items + COGs.

    Radiometry variants, so the offset is tested to be applied exactly once: item 0 says
    ``earthsearch:boa_offset_applied: true`` (its COG values had the -1000 removed); the others
    hold the product's digital numbers (baseline 05.10, flag false); item 3 uses Planetary
    Computer asset keys (``B02``, ``SCL``) and no Earth Search flag.

    ``level="L1C"``: collection ``sentinel-2-l1c`` as Earth Search serves it: top-of-atmosphere
    reflectance (the surface plus `TOA_HAZE`), all 13 bands (B01, B09 and the cirrus band B10 at
    60 m), ``s2:product_type: S2MSI1C``, no SCL asset (the world's SCL is kept in
    ``truth_scl``); every item holds digital numbers with RADIO_ADD_OFFSET (baseline 05.10).

    ``center``: (lon, lat) of the world (default the generator's, in the Amazon); at 180 degrees
    the items' footprint is a MultiPolygon split at the antimeridian and their bbox runs from
    west > east, as RFC 7946 (3.1.9, 5.2) and Earth Search give them.
    """
    l1c = level == "L1C"
    collection_id = "sentinel-2-l1c" if l1c else COLLECTION
    world_dir = root / "world"
    where: dict[str, Any] = {"center_lon": center[0], "center_lat": center[1]} if center else {}
    spec = WorldSpec(
        size_px=SIZE_PX,
        acquisitions_per_period=2,
        n_mining_sites=2,
        n_clearings=1,
        n_sandbars=1,
        n_oxbow_lakes=1,
        n_pastures=1,
        n_fish_pond_groups=0,
        n_quarries=0,
        seed=3,
        **where,
    )
    world = generate_world(world_dir, spec)
    cogs = root / "cogs"
    world_truth: dict[str, np.ndarray] = {}
    items: list[dict[str, Any]] = []
    refl: dict[str, dict[str, np.ndarray]] = {}
    to_wgs = Transformer.from_crs(world.crs, "EPSG:4326", always_xy=True)
    left, top = world.transform.c, world.transform.f
    right, bottom = left + SIZE_PX * 10, top - SIZE_PX * 10
    xs, ys = to_wgs.transform([left, right, right, left, left], [top, top, bottom, bottom, top])
    outline = split_antimeridian(Polygon(zip(xs, ys, strict=True)))
    footprint = mapping(outline)
    minx, miny, maxx, maxy = outline.bounds
    if outline.geom_type == "MultiPolygon":  # across 180: west is the eastern hemisphere's edge
        parts = list(outline.geoms)
        minx = min(p.bounds[0] for p in parts if p.centroid.x > 0)
        maxx = max(p.bounds[2] for p in parts if p.centroid.x < 0)
    bbox = [minx, miny, maxx, maxy]
    total = 0
    for n, scene in enumerate(world.scenes):
        with rasterio.open(scene.path) as src:
            names = src.descriptions
            dn = {name: src.read(i + 1) for i, name in enumerate(names)}
            tags = src.tags()
        item_id = f"S2{'AB'[n % 2]}_{world.tile_id}_{scene.datetime:%Y%m%d}_0_{level}"
        applied = n == 0 and not l1c
        pc_keys = n == 3 and not l1c
        refl[item_id] = {}
        assets: dict[str, Any] = {}
        keys = dict(ES_KEYS)
        if l1c:
            keys.pop("SCL")
            keys.update(ES_KEYS_L1C)
            world_scl = dn["SCL"]
            dn = _toa_digital_numbers(dn)
        for band, key in keys.items():
            values = dn[band]
            res = 20 if band in BANDS_20M else 60 if band in BANDS_60M else 10
            if band == "SCL":
                out = values[::2, ::2].astype(np.uint8)
            else:
                r = np.where(values == 0, np.nan, (values.astype(np.float32) - 1000) / 10000)
                if res > 10:
                    k = res // 10
                    n_px = SIZE_PX // k  # (60 m: the last 2 columns and rows are left out)
                    r = r[: n_px * k, : n_px * k]
                    r = np.nanmean(r.reshape(n_px, k, n_px, k), axis=(1, 3))
                refl[item_id][band] = r
                dn_offset = 0 if applied else 1000
                out = np.where(np.isnan(r), 0, np.clip(np.rint(r * 10000) + dn_offset, 1, 65535))
                out = out.astype(np.uint16)
            transform = world.transform @ Affine.scale(res / 10)
            path = cogs / item_id / f"{band}.tif"
            write_cog(
                path,
                out,
                crs=world.crs,
                transform=transform,
                nodata=0,
                blocksize=BLOCK_PX,
                resampling="nearest" if band == "SCL" else "average",
            )
            data = path.read_bytes()
            total += len(data)
            asset_key = band if pc_keys else key
            assets[asset_key] = {
                "href": f"{base_url}/cogs/{item_id}/{band}.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "proj:shape": [out.shape[0], out.shape[1]],
                "proj:transform": list(transform)[:6],
                "file:size": len(data),
                "file:checksum": "1220" + hashlib.sha256(data).hexdigest(),
                "raster:bands": [
                    {
                        "nodata": 0,
                        "data_type": out.dtype.name,
                        "spatial_resolution": res,
                        "scale": 0.0001,
                        "offset": -0.1,
                    }
                ],
                "eo:bands": [{"name": band}],
                "roles": ["data", "reflectance"],
            }
        assets["thumbnail"] = {"href": f"{base_url}/thumb.jpg", "type": "image/jpeg"}
        props: dict[str, Any] = {
            "datetime": scene.datetime.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "platform": scene.spacecraft.lower(),
            "constellation": "sentinel-2",
            "eo:cloud_cover": round(scene.cloud_fraction * 100, 4),
            "proj:epsg": world.crs.to_epsg(),
            "mgrs:utm_zone": int(world.tile_id[:2]),
            "mgrs:latitude_band": world.tile_id[2],
            "mgrs:grid_square": world.tile_id[3:],
            "grid:code": f"MGRS-{world.tile_id}",
            "s2:processing_baseline": tags["PROCESSING_BASELINE"],
            "s2:product_uri": f"{scene.scene_id}.SAFE",
        }
        if l1c:
            props["s2:product_type"] = "S2MSI1C"
            props["s2:product_uri"] = scene.scene_id.replace("MSIL2A", "MSIL1C") + ".SAFE"
            props["s2:processing_baseline"] = "05.10"
            world_truth[item_id] = world_scl.astype(np.uint8)
        if not pc_keys:
            props["earthsearch:boa_offset_applied"] = applied
        items.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": item_id,
                "collection": collection_id,
                "geometry": footprint,
                "bbox": bbox,
                "properties": props,
                "assets": assets,
                "links": [],
            }
        )
    collection = {
        "type": "Collection",
        "id": collection_id,
        "stac_version": "1.0.0",
        "description": f"Sentinel-2 {level} (synthetic world, Earth Search v1 shape)",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [bbox]},
            "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]},
        },
        "links": [],
    }
    (root / "collection.json").write_text(json.dumps(collection))
    items_path = root / "items.json"
    items_path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    (root / "thumb.jpg").write_bytes(b"\xff\xd8\xff")
    shutil.rmtree(world_dir / "scenes")
    return StacWorld(
        root, items_path, items, world.crs, world.transform, SIZE_PX, refl, total, world_truth
    )


def _toa_digital_numbers(dn: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """L1C digital numbers (RADIO_ADD_OFFSET -1000) of a synthetic L2A scene's DN: surface
    reflectance plus `TOA_HAZE`, and the bands only L1C has: B01 (coastal, like blue), B09
    (water vapour, darker than NIR) and B10 (cirrus: near 0 over ground, high over cloud)."""
    nodata = dn["B02"] == 0
    surface = {b: (v.astype(np.float32) - 1000) / 10000 for b, v in dn.items() if b != "SCL"}
    surface["B01"] = surface["B02"] * 1.05
    surface["B09"] = surface["B8A"] * 0.35
    cloud = np.isin(dn["SCL"], (8, 9, 10))
    surface["B10"] = np.where(cloud, 0.04 + 0.2 * surface["B02"], 0.002).astype(np.float32)
    out: dict[str, np.ndarray] = {}
    for band, r in surface.items():
        toa = np.clip(np.rint((r + TOA_HAZE[band]) * 10000) + 1000, 1, 65535).astype(np.uint16)
        toa[nodata] = 0
        out[band] = toa
    return out


class RustacServer:
    """``rustac serve`` on a free loopback port, loaded with a collection and items; ``addr`` is
    the URL its links name (a `FaultProxy` in front of it), default its own."""

    def __init__(self, *hrefs: Path, addr: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        bind = ["--bind", f"127.0.0.1:{self.port}"] if addr else []
        self.proc = subprocess.Popen(
            [
                str(RUSTAC),
                "serve",
                "--addr",
                addr or f"127.0.0.1:{self.port}",
                *bind,
                *map(str, hrefs),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rustac serve exited: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
            with contextlib.suppress(OSError):
                urllib.request.urlopen(self.url, timeout=1).read()
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("rustac serve did not start within 30 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class _ProxyHandler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _relay(self) -> None:
        with self.server.lock:
            self.server.seen.append((self.command, self.path))
            action = self.server.faults.pop(0) if self.server.faults else None
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if action:
            kind, _, arg = action.partition(":")
            if kind == "stall":
                time.sleep(float(arg or 5))
                return
            self.send_response(int(kind))
            if arg:
                self.send_header("Retry-After", arg)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        req = urllib.request.Request(
            self.server.target + self.path,
            data=body or None,
            method=self.command,
            headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, payload, ctype = resp.status, resp.read(), resp.headers.get("Content-Type")
        except urllib.error.HTTPError as exc:
            status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type")
        self.send_response(status)
        self.send_header("Content-Type", ctype or "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _relay  # noqa: N815 - http.server API
    do_POST = _relay  # noqa: N815 - http.server API


class FaultProxy:
    """A loopback proxy in front of a server that answers the next requests with injected faults
    (``"503"``, ``"429:1"`` = status and Retry-After, ``"stall:2"``) and relays the others."""

    def __init__(self) -> None:
        self.httpd: Any = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self.httpd.daemon_threads = True
        self.httpd.lock = threading.Lock()
        self.httpd.faults = []
        self.httpd.seen = []
        self.httpd.target = ""
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def target(self, url: str) -> None:
        self.httpd.target = url

    def inject(self, *actions: str) -> None:
        with self.httpd.lock:
            self.httpd.faults.extend(actions)

    @property
    def seen(self) -> list[tuple[str, str]]:
        return self.httpd.seen  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def stac_stack(
    root: Path, *, level: str = "L2A", center: tuple[float, float] | None = None
) -> Iterator[tuple[RangeServer, RustacServer, StacWorld, FaultProxy]]:
    """COG server + synthetic items + rustac STAC API behind a fault proxy (its ``url`` is the
    API's address), for one test module; ``level="L1C"`` serves the L1C variant."""
    cog_server = RangeServer(root).start()
    proxy = FaultProxy()
    try:
        world = build_stac_world(root, cog_server.url, level=level, center=center)
        api = RustacServer(root / "collection.json", world.items_path, addr=proxy.url)
        proxy.target(api.url)
        try:
            yield cog_server, api, world, proxy
        finally:
            api.stop()
    finally:
        proxy.stop()
        cog_server.stop()


# --------------------------------------------------------------------------------------------
# Sentinel Hub


@dataclass
class ShRecord:
    path: str
    headers: dict[str, str]
    body: Any


class _ShHandler(BaseHTTPRequestHandler):
    server: _ShHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(
        self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        ctype = self.headers.get("Content-Type", "")
        body: Any
        if "json" in ctype:
            body = json.loads(raw or b"{}")
        else:
            body = dict(urllib.parse.parse_qsl(raw.decode()))
        path = self.path.split("?", 1)[0]
        srv = self.server
        with srv.lock:
            srv.records.append(ShRecord(path, dict(self.headers), body))
            fault = srv.faults.get(path, [])
            action = fault.pop(0) if fault else None
        if action:
            status, _, retry_after = action.partition(":")
            self._send(
                int(status),
                b'{"error": {"status": %s, "reason": "injected"}}' % status.encode(),
                "application/json",
                {"Retry-After": retry_after} if retry_after else None,
            )
            return
        if path == srv.token_path:
            if (
                body.get("client_id") != srv.client_id
                or body.get("client_secret") != srv.client_secret
            ):
                self._send(401, b'{"error": "invalid_client"}', "application/json")
                return
            with srv.lock:
                srv.tokens_issued += 1
                token = f"token-{srv.tokens_issued}"
            self._send(
                200,
                json.dumps(
                    {"access_token": token, "token_type": "Bearer", "expires_in": srv.expires_in}
                ).encode(),
                "application/json",
            )
            return
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer token-") or auth.split("-")[-1] not in srv.valid_tokens():
            self._send(
                401,
                b'{"error": {"status": 401, "reason": "Unauthorized", "message": "expired"}}',
                "application/json",
            )
            return
        if path.endswith("/catalog/1.0.0/search"):
            self._send(200, json.dumps(srv.catalog(body)).encode(), "application/geo+json")
            return
        if path.endswith("/process"):
            status, payload = srv.process(body)
            self._send(
                status, payload, "application/x-tar" if status == 200 else "application/json"
            )
            return
        self._send(404, b"{}", "application/json")


class _ShHTTPServer(ThreadingHTTPServer):
    daemon_threads = True


class SentinelHubServer:
    """Sentinel Hub's OAuth, Catalog and Process endpoints on loopback.

    Catalog answers come from `features` (Sentinel Hub Catalog item shape, paged with
    ``context.next``); Process answers are built by `render(body) -> (bands, norm_factor)` and
    sent as the real service does for a multi-output request: a tar holding ``default.tif`` and
    ``userdata.json`` (see ``sentinelhub_payloads/img.tar``), or `replay` bytes when set.
    """

    def __init__(self, *, client_id: str = "cid", client_secret: str = "s3cret") -> None:
        self.httpd = _ShHTTPServer(("127.0.0.1", 0), _ShHandler)
        srv: Any = self.httpd
        srv.lock = threading.Lock()
        srv.records = []
        srv.faults = {}
        srv.client_id = client_id
        srv.client_secret = client_secret
        srv.tokens_issued = 0
        srv.revoked = set()
        srv.expires_in = 3600
        srv.token_path = "/oauth/token"
        srv.valid_tokens = lambda: {str(i) for i in range(1, srv.tokens_issued + 1)} - srv.revoked
        srv.catalog = self._catalog
        srv.process = self._process
        self.features: list[dict[str, Any]] = []
        self.page_size = 2
        self.render: Any = None
        self.replay: bytes | None = None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.token_url = self.url + "/oauth/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def records(self) -> list[ShRecord]:
        return self.httpd.records  # type: ignore[attr-defined, no-any-return]

    def start(self) -> SentinelHubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def inject(self, path: str, *actions: str) -> None:
        with self.httpd.lock:  # type: ignore[attr-defined]
            self.httpd.faults.setdefault(path, []).extend(actions)  # type: ignore[attr-defined]

    def revoke_all(self) -> None:
        srv: Any = self.httpd
        srv.revoked |= {str(i) for i in range(1, srv.tokens_issued + 1)}

    def _catalog(self, body: dict[str, Any]) -> dict[str, Any]:
        start = int(body.get("next") or 0)
        page = self.features[start : start + self.page_size]
        context: dict[str, Any] = {"limit": self.page_size, "returned": len(page)}
        if start + self.page_size < len(self.features):
            context["next"] = start + self.page_size
        return {"type": "FeatureCollection", "features": page, "links": [], "context": context}

    def _process(self, body: dict[str, Any]) -> tuple[int, bytes]:
        if self.replay is not None:
            return 200, self.replay
        bands, norm = self.render(body)
        return 200, process_tar(bands, norm)


def process_tar(bands: np.ndarray, norm_factor: float) -> bytes:
    """A Process API multi-output answer: ``default.tif`` (uint16, no georeferencing, as the
    service writes for ``image/tiff``) and ``userdata.json``."""
    count, height, width = bands.shape
    with MemoryFile() as mem:
        with mem.open(
            driver="GTiff",
            width=width,
            height=height,
            count=count,
            dtype="uint16",
            compress="deflate",
        ) as dst:
            dst.write(bands.astype(np.uint16))
        tif = mem.read()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, payload in (
            ("default.tif", tif),
            ("userdata.json", json.dumps({"norm_factor": norm_factor}).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            info.mtime = int(dt.datetime(2024, 1, 1).timestamp())
            tar.addfile(info, io.BytesIO(payload))
    return out.getvalue()
