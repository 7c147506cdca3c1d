"""The ``stac`` imagery source: Sentinel-2 L2A or L1C COGs found through any STAC API (DESIGN.md
section 3).

Search: `pystac_client` against the configured API (Earth Search v1 by default, no account),
by the AOI geometry, a datetime range, a collection and an ``eo:cloud_cover`` limit, following
``next`` links page by page. The cloud limit is sent with the Query extension (or CQL2 ``filter``)
when the API conforms to one, and always re-applied to what comes back.

Read: for each band (and SCL) only the window of the COG that covers the grid cell (plus a small
margin) is read, through GDAL HTTP range requests (`tiles.http.gdal_options`), then resampled onto
the cell's grid: bilinear for reflectance (20 m and 60 m bands come to 10 m), nearest for SCL.
Windows are kept in the on-disk cache (`tiles.cache`) as digital numbers, before radiometry, so a
rerun reads nothing twice. With ``read_mode: download`` whole asset files are downloaded instead,
checked against ``file:size`` / ``file:checksum``, and read locally.

Asset keys: Earth Search v1 names assets by common name (``blue``, ``nir``, ``swir16``, ``scl``);
Planetary Computer and older catalogs by band (``B02``, ``SCL``); both are recognised, and
``asset_keys`` in the config overrides them. Planetary Computer's blob storage needs a SAS token:
``sign: planetary_computer`` fetches one per collection, refreshes it before it expires and once
more when the storage answers 403.

Level: an item is L1C when its ``s2:product_type`` is ``S2MSI1C`` or its ``processing:level`` is
``L1C``, else when its collection is named like ``sentinel-2-l1c``; otherwise L2A. L1C items
offer all 13 bands (Earth Search names B10 ``cirrus``) and no SCL.

Radiometry (applied exactly once, here): ``reflectance = (DN + offset) / 10000`` where ``offset``
is ``-1000`` for processing baseline 04.00 and later (``s2:processing_baseline``, else the
``_Nxxxx_`` of the product id): ``BOA_ADD_OFFSET`` for L2A, ``RADIO_ADD_OFFSET`` for L1C (top of
atmosphere reflectance), unless the item says ``earthsearch:boa_offset_applied: true``,
meaning Earth Search already subtracted it in the COG. The ``raster:bands`` scale/offset of Earth
Search items is not used: it is known to disagree with that flag (Element84/earth-search#66, #71).
An item that states no baseline is refused, never guessed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
import requests
from affine import Affine
from pystac.errors import STACError, STACTypeError
from pystac_client import Client
from pystac_client.conformance import ConformanceClasses
from pystac_client.exceptions import APIError
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.warp import reproject, transform_bounds
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from aoi.grid import GridCell
from tiles.bands import SCL, check_requested_bands
from tiles.cache import RawWindow, WindowCache, fetch_file, window_key
from tiles.config import StacSourceConfig
from tiles.errors import (
    AssetMissingError,
    AuthenticationError,
    SceneFormatError,
    TileError,
)
from tiles.http import (
    RETRY_STATUSES,
    RetryPolicy,
    TransientError,
    check_response,
    gdal_options,
    make_session,
    retry_call,
)
from tiles.radiometry import L2A_SCALE, dn_to_reflectance
from tiles.scene import Scene, SceneInfo
from tiles.sources._stac_io import RetryingStacApiIO, SasSigner, raise_for_access
from tiles.sources._stac_items import (
    asset_grid,
    int_or_none,
    item_boa_offset,
    item_to_scene_info,
)

log = logging.getLogger(__name__)

#: Source pixels read around the cell, so bilinear kernels at its edge are whole.
_WINDOW_PAD_PX = 2
_HTTP_CODE = re.compile(r"HTTP (?:response )?code:? ?(\d{3})", re.IGNORECASE)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


# --------------------------------------------------------------------------------------------
# public API


class StacSource:
    """Sentinel-2 L2A or L1C scenes from a STAC API, read window by window over HTTP.

    Args:
        config: the ``source`` section (kind ``stac``).
        cache_dir: where windows and files are cached (``config.cache_dir`` wins when set).
        policy: timeouts and retries (default: from ``config.http``).
        session: the HTTP session for HEAD requests, downloads and SAS tokens.
    """

    def __init__(
        self,
        config: StacSourceConfig,
        *,
        cache_dir: Path,
        policy: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.config = config
        self.policy = policy or config.http.policy()
        self.cache_dir = Path(config.cache_dir or cache_dir)
        self.cache = WindowCache(self.cache_dir)
        self.session = session or make_session()
        self._gdal = gdal_options(self.policy)
        self._sizes: dict[str, int] = {}
        self._signer = (
            SasSigner(
                config.sas_token_url,
                config.collection,
                session=self.session,
                policy=self.policy,
            )
            if config.sign == "planetary_computer"
            else None
        )

    def __repr__(self) -> str:
        return f"StacSource({self.description!r}, cache_dir={str(self.cache_dir)!r})"

    @property
    def description(self) -> str:
        return f"stac:{self.config.url} collection {self.config.collection}"

    # ---------------------------------------------------------------------------------- search

    def search(self, area: BaseGeometry, start: dt.date, end: dt.date) -> list[SceneInfo]:
        """Scenes over ``area`` (EPSG:4326) acquired in ``[start, end]`` under the cloud limit.

        Duplicates (same MGRS tile and acquisition time, e.g. a reprocessed product) are reduced
        to the newest processing baseline.

        Raises:
            SourceUnavailableError: the API kept failing (after retries).
            TileError: the API answered with an error or something that is not a STAC search.
        """
        if area.is_empty:
            raise ValueError("search area is empty")
        if end < start:
            raise ValueError(f"search dates: end {end} is before start {start}")
        found: list[SceneInfo] = []
        skipped: list[str] = []
        n_items = 0
        for item in self.search_items(area, start, end):
            n_items += 1
            cloud = item.get("properties", {}).get("eo:cloud_cover")
            if cloud is not None and float(cloud) > self.config.max_cloud_pct:
                continue
            try:
                found.append(item_to_scene_info(item, asset_keys=self.config.asset_keys))
            except (SceneFormatError, ValueError) as exc:
                skipped.append(f"{item.get('id')}: {exc}")
        for reason in skipped:
            log.warning("skipped STAC item %s", reason)
        scenes = _drop_duplicates(found)
        scenes.sort(key=lambda s: (s.datetime, s.scene_id))
        log.info(
            "%s: %d scene(s) of %d item(s) in %s..%s with eo:cloud_cover <= %g",
            self.description,
            len(scenes),
            n_items,
            start,
            end,
            self.config.max_cloud_pct,
        )
        if not scenes:
            log.warning("%s", self.explain_empty(area, start, end))
        return scenes

    def explain_empty(self, area: BaseGeometry, start: dt.date, end: dt.date) -> str:
        """The message for a search that found nothing (names the query, suggests a fix)."""
        minx, miny, maxx, maxy = area.bounds
        return (
            f"{self.config.url}: no {self.config.collection} item over bbox "
            f"({minx:.4f}, {miny:.4f}, {maxx:.4f}, {maxy:.4f}) acquired {start}..{end} with "
            f"eo:cloud_cover <= {self.config.max_cloud_pct:g}; widen the dates, raise "
            "max_cloud_pct or check the collection name"
        )

    def search_items(self, area: BaseGeometry, start: dt.date, end: dt.date) -> Iterator[dict]:
        """The raw STAC items (dicts) of the search, page by page.

        Raises:
            SourceUnavailableError: the API kept failing (after retries).
            TileError: the API answered with an error.
        """
        io = RetryingStacApiIO(policy=self.policy)
        try:
            client = Client.open(self.config.url, stac_io=io)
            params: dict[str, Any] = {
                "collections": [self.config.collection],
                "intersects": mapping(_search_geometry(area)),
                "datetime": f"{start.isoformat()}T00:00:00Z/{end.isoformat()}T23:59:59.999Z",
                "limit": self.config.page_size,
                "max_items": self.config.max_items,
            }
            if self.config.max_cloud_pct < 100:
                if client.conforms_to(ConformanceClasses.QUERY):
                    params["query"] = {"eo:cloud_cover": {"lte": self.config.max_cloud_pct}}
                elif client.conforms_to(ConformanceClasses.FILTER):
                    params["filter"] = {
                        "op": "<=",
                        "args": [{"property": "eo:cloud_cover"}, self.config.max_cloud_pct],
                    }
                    params["filter_lang"] = "cql2-json"
            search = client.search(**params)
            log.debug("STAC search %s %s", self.config.url, json.dumps(search.get_parameters()))
            for page, items in enumerate(search.pages_as_dicts(), start=1):
                features = items.get("features", [])
                log.debug("STAC search page %d: %d item(s)", page, len(features))
                yield from features
        except APIError as exc:
            raise TileError(
                f"{self.config.url}: STAC search failed: HTTP "
                f"{getattr(exc, 'status_code', None)}: {str(exc)[:300]}"
            ) from exc
        except (ValueError, KeyError, TypeError, STACError, STACTypeError) as exc:
            # json.JSONDecodeError is a ValueError: an HTML page, a file listing, a login wall
            raise TileError(
                f"{self.config.url}: not a STAC API (its answer is not a STAC landing page or "
                f"search result: {type(exc).__name__}: {str(exc)[:200]}); check source.url, "
                "e.g. https://earth-search.aws.element84.com/v1"
            ) from exc

    # ------------------------------------------------------------------------------------ read

    def read(self, info: SceneInfo, cell: GridCell, *, bands: Sequence[str]) -> Scene:
        """The scene's bands (and SCL) on ``cell``'s grid, as reflectance (surface for L2A, top
        of atmosphere for L1C).

        Raises:
            ValueError: ``bands`` is empty, repeats a band or names SCL or an unknown band.
            AssetMissingError: the item lacks a band, or its file answers 404.
            AuthenticationError: the storage refused the signature/token even after a refresh.
            SceneFormatError: a file is truncated or corrupt, or the item states no baseline.
            SourceUnavailableError: the storage kept failing after every retry.
        """
        wanted = check_requested_bands(bands)
        missing = [b for b in wanted if b not in info.assets]
        if missing:
            raise AssetMissingError(
                f"scene {info.scene_id}: item has no asset for band(s) {missing}; it offers "
                f"{sorted(info.assets)} (set asset_keys in the source config if the catalog "
                "names them differently)"
            )
        offset = item_boa_offset(
            info.properties, scene_id=info.scene_id, level=info.processing_level
        )
        data = np.full((len(wanted), cell.height, cell.width), np.nan, dtype=np.float32)
        for i, name in enumerate(wanted):
            raw = self._window(info, name, cell)
            if raw is None:
                continue
            refl = dn_to_reflectance(raw.data, offset=offset, scale=L2A_SCALE, nodata=raw.nodata)
            _warp(refl, raw, data[i], cell, Resampling.bilinear, np.nan)
        scl: np.ndarray | None = None
        if info.has_scl:
            scl = np.zeros((cell.height, cell.width), dtype=np.uint8)
            raw = self._window(info, SCL, cell)
            if raw is not None:
                classes = np.nan_to_num(raw.data, nan=0).astype(np.uint8)
                _warp(classes, raw, scl, cell, Resampling.nearest, 0)
        return Scene.on_cell(info, wanted, data, cell, scl=scl)

    def fetch(self, info: SceneInfo, cell: GridCell, *, bands: Sequence[str]) -> int:
        """Put the windows of ``bands`` (and SCL) over ``cell`` in the cache; return how many
        were read from the source (0 when all were cached).

        Raises:
            Same as `read`.
        """
        wanted = check_requested_bands(bands) + ((SCL,) if info.has_scl else ())
        before = self.cache.misses
        for name in wanted:
            if name not in info.assets:
                raise AssetMissingError(
                    f"scene {info.scene_id}: item has no asset for band {name}; it offers "
                    f"{sorted(info.assets)}"
                )
            self._window(info, name, cell)
        return self.cache.misses - before

    # ------------------------------------------------------------------------------- internals

    def _window(self, info: SceneInfo, band: str, cell: GridCell) -> RawWindow | None:
        asset = info.assets[band]
        href = str(asset["href"])
        grid = asset_grid(asset, info)
        win = _source_window(grid, cell) if grid is not None else None
        if grid is not None and win is None:
            return None  # the cell is outside the asset
        key = None
        if win is not None:
            key = window_key(
                scene_id=info.scene_id,
                band=band,
                href=href,
                window=_window_tuple(win),
                grid=_cell_grid(cell),
            )
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        what = f"scene {info.scene_id} band {band} ({href.split('?', 1)[0]})"
        raw = self._read_remote(asset, cell, what=what)
        if raw is None:
            return None
        if key is None:
            key = window_key(
                scene_id=info.scene_id,
                band=band,
                href=href,
                window=raw[1],
                grid=_cell_grid(cell),
            )
            self.cache.misses += 1  # (no lookup was possible without the asset's grid)
        try:
            self.cache.put(key, raw[0])
        except OSError as exc:
            log.warning("could not cache %s (%s); going on without the cache", what, exc)
        return raw[0]

    def _read_remote(
        self, asset: Mapping[str, Any], cell: GridCell, *, what: str
    ) -> tuple[RawWindow, tuple[int, int, int, int]] | None:
        href = str(asset["href"])
        size = int_or_none(asset.get("file:size"))
        checksum = asset.get("file:checksum")
        refreshed = False
        while True:
            url = self._signer.sign(href) if self._signer else href
            try:
                if self.config.read_mode == "download":
                    local = self._download(url, asset, size=size, checksum=checksum, what=what)
                    try:
                        return _read_window(str(local), cell, what=what, remote_size=None)
                    except RasterioIOError as exc:
                        raise SceneFormatError(
                            f"{what}: {local} is truncated or corrupt ({str(exc)[:200]})"
                        ) from exc

                def attempt(url: str = url) -> tuple[RawWindow, tuple[int, int, int, int]] | None:
                    remote_size = self._remote_size(url, expected=size, what=what)
                    try:
                        return _read_window(url, cell, what=what, remote_size=remote_size)
                    except RasterioIOError as exc:
                        raise self._diagnose(url, exc, what=what) from exc

                with rasterio.Env(**self._gdal):
                    return retry_call(attempt, policy=_outer(self.policy), what=what, url=url)
            except AuthenticationError:
                if self._signer is None or refreshed:
                    raise
                log.info("%s: access refused; refreshing the SAS token once", what)
                self._signer.invalidate()
                refreshed = True

    def _diagnose(self, url: str, exc: RasterioIOError, *, what: str) -> Exception:
        """Turn a GDAL failure into a specific error; probe the file when GDAL's text is vague."""
        text = str(exc)
        match = _HTTP_CODE.search(text)
        status = int(match.group(1)) if match else None
        if status is not None:
            raise_for_access(status, what=what)
            if status in RETRY_STATUSES:
                return TransientError(f"{what}: HTTP {status} ({text[:200]})", status=status)

        def probe() -> requests.Response:
            resp = self.session.get(
                url, headers={"Range": "bytes=0-15"}, timeout=self.policy.timeout
            )
            return check_response(resp, what=f"GET {what}")

        resp = retry_call(probe, policy=self.policy, what=f"GET {what}", url=url)
        raise_for_access(resp.status_code, what=what)
        head = resp.content[:16]
        if resp.status_code >= 400:
            return SceneFormatError(f"{what}: HTTP {resp.status_code} from the server")
        if head[:4] not in _TIFF_MAGIC:
            looks = head.decode("latin-1").strip()
            return SceneFormatError(
                f"{what}: not a GeoTIFF (starts with {looks[:16]!r}; an error page stored as the "
                "file?); report it to the catalog"
            )
        if "not recognized" in text or _looks_like_connection_error(text):
            # GDAL failed to fetch what the server now serves: worth another try.
            return TransientError(f"{what}: {text[:200]}")
        return SceneFormatError(f"{what}: truncated or corrupt, decoding failed ({text[:200]})")

    def _download(
        self, url: str, asset: Mapping[str, Any], *, size: int | None, checksum: Any, what: str
    ) -> Path:
        href = str(asset["href"]).split("?", 1)[0]
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", href.split("://", 1)[-1])
        dest = self.cache_dir / "files" / stem
        return fetch_file(
            url,
            dest,
            session=self.session,
            policy=self.policy,
            size=size,
            checksum=str(checksum) if checksum else None,
            what=what,
        )

    def _remote_size(self, url: str, *, expected: int | None, what: str) -> int | None:
        """The file's size on the server (one HEAD per file), checked against ``file:size``."""
        key = url.split("?", 1)[0]
        if key in self._sizes:
            return self._sizes[key]

        def head() -> requests.Response:
            resp = self.session.head(url, timeout=self.policy.timeout, allow_redirects=True)
            return check_response(resp, what=f"HEAD {what}")

        resp = retry_call(head, policy=self.policy, what=f"HEAD {what}", url=url)
        raise_for_access(resp.status_code, what=what)
        ctype = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if resp.status_code < 400 and ctype in ("text/html", "text/plain", "application/json"):
            raise SceneFormatError(
                f"{what}: the server answers with a {ctype} page, not a GeoTIFF (an error or "
                "login page in place of the file); report it to the catalog or re-run later"
            )
        length = resp.headers.get("Content-Length")
        if resp.status_code >= 400 or length is None:
            log.debug("%s: HEAD gave %s without a size; size not checked", what, resp.status_code)
            return None
        actual = int(length)
        if expected is not None and actual != expected:
            raise SceneFormatError(
                f"{what}: the server holds {actual} bytes but the item's file:size is {expected}; "
                "the file is truncated or was replaced: re-run later or report it to the catalog"
            )
        self._sizes[key] = actual
        return actual


# --------------------------------------------------------------------------------------------
# helpers


def _outer(policy: RetryPolicy) -> RetryPolicy:
    """GDAL retries each HTTP request itself; the outer loop re-opens the file once more."""
    from dataclasses import replace

    return replace(policy, max_tries=min(policy.max_tries, 2))


def _looks_like_connection_error(text: str) -> bool:
    lowered = text.lower()
    return any(
        w in lowered for w in ("timed out", "timeout", "connection", "remote end closed", "reset")
    )


def _cell_grid(cell: GridCell) -> dict[str, Any]:
    return {
        "crs": cell.crs.to_string(),
        "transform": [round(v, 6) for v in list(cell.transform)[:6]],
        "shape": [cell.height, cell.width],
    }


def _window_tuple(win: rasterio.windows.Window) -> tuple[int, int, int, int]:
    return (int(win.col_off), int(win.row_off), int(win.width), int(win.height))


def _source_window(
    grid: tuple[Affine, tuple[int, int]],
    cell: GridCell,
    *,
    crs: CRS | None = None,
) -> rasterio.windows.Window | None:
    transform, (height, width) = grid
    bounds = cell.bounds
    if crs is not None and crs != cell.crs:
        bounds = transform_bounds(cell.crs, crs, *bounds, densify_pts=21)
    win = rasterio.windows.from_bounds(*bounds, transform=transform)
    pad = 0 if _aligned(transform, cell, crs) else _WINDOW_PAD_PX
    col0 = max(math.floor(win.col_off + 1e-6) - pad, 0)
    row0 = max(math.floor(win.row_off + 1e-6) - pad, 0)
    col1 = min(math.ceil(win.col_off + win.width - 1e-6) + pad, width)
    row1 = min(math.ceil(win.row_off + win.height - 1e-6) + pad, height)
    if col1 <= col0 or row1 <= row0:
        return None
    return rasterio.windows.Window(col0, row0, col1 - col0, row1 - row0)


def _aligned(transform: Affine, cell: GridCell, crs: CRS | None) -> bool:
    """Whether the asset's pixels are the cell's pixels (same CRS, size and phase): then the
    window needs no margin for resampling, and does not spill into neighbouring COG blocks."""
    if crs is not None and crs != cell.crs:
        return False
    t = cell.transform
    if not (math.isclose(transform.a, t.a) and math.isclose(transform.e, t.e)):
        return False
    dx = (t.c - transform.c) / transform.a
    dy = (t.f - transform.f) / transform.e
    return abs(dx - round(dx)) < 1e-6 and abs(dy - round(dy)) < 1e-6


def _read_window(
    href: str, cell: GridCell, *, what: str, remote_size: int | None
) -> tuple[RawWindow, tuple[int, int, int, int]] | None:
    """Open ``href`` and read band 1 over ``cell`` (native resolution); classify failures."""
    with rasterio.open(href) as src:
        if src.crs is None:
            raise SceneFormatError(f"{what}: the file has no CRS")
        win = _source_window((src.transform, (src.height, src.width)), cell, crs=src.crs)
        if win is None:
            return None
        if remote_size is not None:
            _check_blocks_within(src, win, remote_size, what=what)
        arr = src.read(1, window=win)
        transform = src.transform @ Affine.translation(win.col_off, win.row_off)
        nodata = src.nodata
        raw = RawWindow(arr, transform, src.crs, None if nodata is None else float(nodata))
        log.debug("%s: read window %s for %s", what, _window_tuple(win), cell.tile_id)
        return raw, _window_tuple(win)


def _check_blocks_within(
    src: rasterio.io.DatasetReader, win: rasterio.windows.Window, size: int, *, what: str
) -> None:
    """Refuse a file whose blocks under ``win`` reach past its end (truncated on the server)."""
    block_rows, block_cols = src.block_shapes[0]
    end = 0
    for row in range(
        int(win.row_off) // block_rows, math.ceil((win.row_off + win.height) / block_rows)
    ):
        for col in range(
            int(win.col_off) // block_cols, math.ceil((win.col_off + win.width) / block_cols)
        ):
            offset = src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1)
            nbytes = src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1)
            if offset and nbytes:
                end = max(end, int(offset) + int(nbytes))
    if end > size:
        raise SceneFormatError(
            f"{what}: truncated or corrupt: the server holds {size} bytes but the blocks needed "
            f"reach byte {end}; the file is incomplete on the server (re-run later)"
        )


def _warp(
    source: np.ndarray,
    raw: RawWindow,
    destination: np.ndarray,
    cell: GridCell,
    resampling: Resampling,
    nodata: float,
) -> None:
    reproject(
        source=source,
        destination=destination,
        src_transform=raw.transform,
        src_crs=raw.crs,
        src_nodata=nodata,
        dst_transform=cell.transform,
        dst_crs=cell.crs,
        dst_nodata=nodata,
        resampling=resampling,
    )


def _search_geometry(area: BaseGeometry) -> BaseGeometry:
    """The AOI as sent to the API: simplified when large (the search is only a pre-filter)."""
    n = len(mapping(area).__repr__())
    if n <= 20_000:
        return area
    simpler = area.simplify(0.001, preserve_topology=True)
    if len(repr(mapping(simpler))) <= 20_000:
        return simpler
    return area.convex_hull


def _drop_duplicates(scenes: list[SceneInfo]) -> list[SceneInfo]:
    """One scene per (CRS, footprint, acquisition time): the newest baseline, then last id."""
    groups: dict[tuple[Any, ...], list[SceneInfo]] = {}
    for s in scenes:
        key = (
            s.datetime.replace(microsecond=0),
            s.crs.to_string(),
            tuple(round(v) for v in s.bounds),
            s.processing_level,
        )
        groups.setdefault(key, []).append(s)
    kept: list[SceneInfo] = []
    for group in groups.values():
        group.sort(
            key=lambda s: (s.processing_baseline, str(s.properties.get("updated", "")), s.scene_id)
        )
        for dropped in group[:-1]:
            log.info(
                "dropped duplicate item %s (baseline %s): same tile and time as %s (baseline %s)",
                dropped.scene_id,
                dropped.processing_baseline,
                group[-1].scene_id,
                group[-1].processing_baseline,
            )
        kept.append(group[-1])
    return kept
