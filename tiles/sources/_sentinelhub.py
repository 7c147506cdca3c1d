"""The ``sentinelhub`` imagery source: Sentinel-2 L2A or L1C through the Sentinel Hub Catalog and
Process APIs (DESIGN.md section 3), on the commercial service or the Copernicus Data Space
Ecosystem.

``collection: sentinel-2-l1c`` reads Level-1C (top of atmosphere, all 13 bands with B10, no SCL:
with ``cloud_mask: scl`` no mask is asked for and the scan's ``composite.cloud_mask`` detector
masks the scenes; ``clm`` asks for the service's s2cloudless mask, which L1C has too).

Search: the Catalog API (``POST /api/v1/catalog/1.0.0/search``) by AOI geometry, time range and
``eo:cloud_cover``, paged by the client.

Read: one Process API request per scene and grid cell (split into sub-requests of at most
``max_request_px`` = 2500 px a side, the API's limit), asking for the cell's exact UTM bounds and
size, so the answer is already on the cell's grid. The evalscript returns the bands as digital
numbers (UINT16), then SCL (or the s2cloudless CLM mask) and ``dataMask``, and writes the
service's normalisation factor into ``userdata.json``; the answer is the multipart tar the service
sends for two outputs (``default.tif`` + ``userdata.json``). Reflectance = DN x norm_factor. The
service harmonises baselines (``harmonizeValues: true``, the default, requested explicitly): the
-1000 offset of baseline 04.00+ (BOA_ADD_OFFSET of L2A, RADIO_ADD_OFFSET of L1C) is applied by
Sentinel Hub, so it is not applied again here.

Credentials: the OAuth client id and secret come from the environment variables the config names
(``SH_CLIENT_ID``/``SH_CLIENT_SECRET`` by default), never from files; they are never logged and
are masked in ``repr``. The token is refreshed 120 s before it expires (by `sentinelhub`); a 401
refreshes it once more, then the scene fails with `AuthenticationError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import requests
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry.base import BaseGeometry

from aoi.grid import GridCell
from tiles.bands import BANDS, check_requested_bands
from tiles.cache import RawWindow, WindowCache, window_key
from tiles.config import SentinelHubSourceConfig
from tiles.errors import (
    AuthenticationError,
    SceneFormatError,
    SourceUnavailableError,
    TileError,
)
from tiles.http import RetryPolicy
from tiles.radiometry import format_baseline
from tiles.scene import Scene, SceneInfo

log = logging.getLogger(__name__)

#: Half-width of the time range that selects one acquisition in a Process request.
ACQUISITION_TOLERANCE = dt.timedelta(minutes=5)
#: CLM (s2cloudless) to SCL-like classes: 0 clear -> 4, 1 cloud -> 9, 255 no data -> 0.
CLM_TO_SCL = {0: 4, 1: 9, 255: 0}
_BASELINE_IN_ID = re.compile(r"_N(\d{2})(\d{2})_")
_DEFAULT_NORM = 1e-4


def evalscript(bands: Sequence[str], *, cloud_mask: str = "scl") -> str:
    """The Process API evalscript: bands as DN, then SCL (or CLM; nothing for ``none``), then
    dataMask, as UINT16, and the normalisation factor in ``userdata``."""
    masks = {"scl": ("SCL",), "clm": ("CLM",), "none": ()}[cloud_mask]
    inputs = ", ".join(f'"{b}"' for b in (*bands, *masks, "dataMask"))
    values = ", ".join(f"s.{b}" for b in (*bands, *masks, "dataMask"))
    return f"""//VERSION=3
function setup() {{
  return {{
    input: [{{bands: [{inputs}], units: "DN"}}],
    output: {{id: "default", bands: {len(bands) + len(masks) + 1}, sampleType: "UINT16"}},
    mosaicking: "SIMPLE"
  }};
}}
function updateOutputMetadata(scenes, inputMetadata, outputMetadata) {{
  outputMetadata.userData = {{"norm_factor": inputMetadata.normalizationFactor}};
}}
function evaluatePixel(s) {{
  return [{values}];
}}
"""


def read_credentials(
    config: SentinelHubSourceConfig, environ: Mapping[str, str]
) -> tuple[str, str]:
    """The OAuth client id and secret from the environment.

    Raises:
        AuthenticationError: a variable is missing or empty (the message names both).
    """
    cid = environ.get(config.client_id_env, "").strip()
    secret = environ.get(config.client_secret_env, "").strip()
    if not cid or not secret:
        missing = [
            name
            for name, value in ((config.client_id_env, cid), (config.client_secret_env, secret))
            if not value
        ]
        raise AuthenticationError(
            f"Sentinel Hub credentials missing: set the environment variable(s) "
            f"{' and '.join(missing)} to the OAuth client id and secret of your "
            f"{'Copernicus Data Space' if config.endpoint == 'cdse' else 'Sentinel Hub'} account "
            "(they are never read from config files)"
        )
    return cid, secret


class SentinelHubSource:
    """Sentinel-2 L2A scenes through Sentinel Hub's Catalog and Process APIs.

    Args:
        config: the ``source`` section (kind ``sentinelhub``).
        cache_dir: where answers are cached (``config.cache_dir`` wins when set).
        policy: timeouts and retries (default: from ``config.http``).
        environ: where the credentials are read (default: ``os.environ``).

    Raises:
        AuthenticationError: the credentials are not in the environment.
    """

    def __init__(
        self,
        config: SentinelHubSourceConfig,
        *,
        cache_dir: Path,
        policy: RetryPolicy | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        from sentinelhub import DataCollection, SHConfig

        self.config = config
        self.policy = policy or config.http.policy()
        self.cache_dir = Path(config.cache_dir or cache_dir)
        self.cache = WindowCache(self.cache_dir)
        cid, secret = read_credentials(config, os.environ if environ is None else environ)
        self.base_url, self.token_url = config.urls
        sh = SHConfig(use_defaults=True)
        sh.sh_client_id = cid
        sh.sh_client_secret = secret
        sh.sh_base_url = self.base_url
        sh.sh_token_url = self.token_url
        sh.max_download_attempts = self.policy.max_tries
        sh.download_sleep_time = self.policy.backoff_s
        sh.download_timeout_seconds = self.policy.connect_timeout_s + self.policy.read_timeout_s
        sh.max_retries = self.policy.max_tries
        self._sh = sh
        _redact_in(("requests_oauthlib", "oauthlib", "sentinelhub"), secret)
        self.level = "L1C" if "l1c" in config.collection.lower() else "L2A"
        #: the mask band asked for: SCL (L2A only), CLM, or none (L1C with cloud_mask scl)
        self.mask = (
            "none" if self.level == "L1C" and config.cloud_mask == "scl" else config.cloud_mask
        )
        base = DataCollection.SENTINEL2_L1C if self.level == "L1C" else DataCollection.SENTINEL2_L2A
        name = f"MINEWATCH_S2{self.level}_" + hashlib.sha1(self.base_url.encode()).hexdigest()[:8]
        self._collection = base.define_from(name, service_url=self.base_url)
        self._session: Any = None

    def __repr__(self) -> str:
        return (
            f"SentinelHubSource({self.base_url!r}, client_id=***, client_secret=***, "
            f"cache_dir={str(self.cache_dir)!r})"
        )

    @property
    def description(self) -> str:
        return f"sentinelhub:{self.base_url} collection {self.config.collection}"

    # ---------------------------------------------------------------------------------- search

    def search(self, area: BaseGeometry, start: dt.date, end: dt.date) -> list[SceneInfo]:
        """Scenes over ``area`` (EPSG:4326) in ``[start, end]`` under the cloud limit.

        Raises:
            AuthenticationError: the credentials were refused.
            SourceUnavailableError: the service kept failing.
            TileError: the service answered with another error.
        """
        from sentinelhub import CRS as SHCRS
        from sentinelhub import Geometry, SentinelHubCatalog

        if area.is_empty:
            raise ValueError("search area is empty")
        catalog = SentinelHubCatalog(config=self._sh)
        catalog.client = self._client()
        results = catalog.search(
            self._collection,
            geometry=Geometry(area, SHCRS.WGS84),
            time=(start.isoformat(), end.isoformat()),
            filter=f"eo:cloud_cover <= {self.config.max_cloud_pct:g}",
        )
        scenes: list[SceneInfo] = []
        with self._errors("Catalog search"):
            for feature in results:
                cloud = feature.get("properties", {}).get("eo:cloud_cover")
                if cloud is not None and float(cloud) > self.config.max_cloud_pct:
                    continue
                try:
                    scenes.append(self._scene_info(feature))
                except (SceneFormatError, ValueError, KeyError) as exc:
                    log.warning("skipped catalog item %s: %s", feature.get("id"), exc)
        scenes.sort(key=lambda s: (s.datetime, s.scene_id))
        log.info(
            "%s: %d scene(s) in %s..%s with eo:cloud_cover <= %g",
            self.description,
            len(scenes),
            start,
            end,
            self.config.max_cloud_pct,
        )
        return scenes

    def _scene_info(self, feature: Mapping[str, Any]) -> SceneInfo:
        props = dict(feature["properties"])
        scene_id = str(feature["id"])
        text = str(props["datetime"])
        when = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        crs = CRS.from_epsg(int(props["proj:epsg"]))
        left, bottom, right, top = (float(v) for v in props["proj:bbox"])
        width, height = round((right - left) / 10), round((top - bottom) / 10)
        match = _BASELINE_IN_ID.search(scene_id)
        baseline = (
            format_baseline(str(props["s2:processing_baseline"]))
            if props.get("s2:processing_baseline")
            else f"{match.group(1)}.{match.group(2)}"
            if match
            else "unknown"
        )
        return SceneInfo(
            scene_id=scene_id,
            datetime=when.astimezone(dt.timezone.utc),
            crs=crs,
            transform=Affine(10.0, 0.0, left, 0.0, -10.0, top),
            width=width,
            height=height,
            bands=tuple(b for b in BANDS if self.level == "L1C" or b != "B10"),
            has_scl=self.mask != "none",
            processing_baseline=baseline,
            processing_level=self.level,
            href=f"{self.base_url}/api/v1/process",
            properties={
                "eo:cloud_cover": props.get("eo:cloud_cover"),
                "platform": props.get("platform"),
                "collection": self.config.collection,
                "harmonized": True,
            },
        )

    # ------------------------------------------------------------------------------------ read

    def read(self, info: SceneInfo, cell: GridCell, *, bands: Sequence[str]) -> Scene:
        """The scene's bands (and the cloud mask as SCL) on ``cell``'s grid, as reflectance.

        Raises:
            ValueError: ``bands`` is empty, repeats a band or names SCL or an unknown band.
            AuthenticationError: the credentials were refused (after one token refresh).
            SourceUnavailableError: the service kept failing after every retry.
            SceneFormatError: the answer is not what was asked for.
        """
        wanted = check_requested_bands(bands)
        raw = self._fetch(info, cell, wanted)
        dn = raw.data.astype(np.float32)
        norm = float(raw.nodata) if raw.nodata else _DEFAULT_NORM
        n = len(wanted)
        valid = dn[-1] > 0
        data = dn[:n] * np.float32(norm)
        data[:, ~valid] = np.nan
        scl: np.ndarray | None = None
        if self.mask != "none":
            mask = raw.data[n].astype(np.uint16)
            if self.mask == "clm":
                scl = np.zeros(mask.shape, dtype=np.uint8)
                for clm, cls in CLM_TO_SCL.items():
                    scl[mask == clm] = cls
            else:
                scl = mask.astype(np.uint8)
            scl[~valid] = 0
        return Scene(
            info=info,
            bands=wanted,
            data=data,
            valid=valid,
            crs=cell.crs,
            transform=cell.transform,
            scl=scl,
        )

    def fetch(self, info: SceneInfo, cell: GridCell, *, bands: Sequence[str]) -> int:
        """Put the answer for ``bands`` over ``cell`` in the cache; return 1 if it was
        requested, 0 when it was cached."""
        before = self.cache.misses
        self._fetch(info, cell, check_requested_bands(bands))
        return self.cache.misses - before

    def _fetch(self, info: SceneInfo, cell: GridCell, wanted: tuple[str, ...]) -> RawWindow:
        key = window_key(
            scene_id=info.scene_id,
            band="+".join((*wanted, self.mask, "dataMask")),
            href=self.base_url,
            window=(0, 0, cell.width, cell.height),
            grid={
                "crs": cell.crs.to_string(),
                "transform": [round(v, 6) for v in list(cell.transform)[:6]],
                "shape": [cell.height, cell.width],
            },
        )
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        out = np.zeros((self._n_out(wanted), cell.height, cell.width), dtype=np.uint16)
        norms: set[float] = set()
        for row0, col0, h, w in split_cell(cell, max_px=self.config.max_request_px):
            block, norm = self._process(info, cell, wanted, row0, col0, h, w)
            out[:, row0 : row0 + h, col0 : col0 + w] = block
            norms.add(norm)
        if len(norms) > 1:
            raise SceneFormatError(
                f"scene {info.scene_id}: sub-requests gave different norm factors {sorted(norms)}"
            )
        raw = RawWindow(out, cell.transform, cell.crs, norms.pop() if norms else _DEFAULT_NORM)
        try:
            self.cache.put(key, raw)
        except OSError as exc:
            log.warning("could not cache scene %s (%s)", info.scene_id, exc)
        return raw

    def _process(
        self,
        info: SceneInfo,
        cell: GridCell,
        wanted: tuple[str, ...],
        row0: int,
        col0: int,
        h: int,
        w: int,
    ) -> tuple[np.ndarray, float]:
        from sentinelhub import CRS as SHCRS
        from sentinelhub import BBox, MimeType, SentinelHubRequest

        t = cell.transform
        left, top = t.c + col0 * t.a, t.f + row0 * t.e
        bbox = BBox((left, top + h * t.e, left + w * t.a, top), crs=SHCRS(cell.crs.to_epsg()))
        request = SentinelHubRequest(
            evalscript=evalscript(wanted, cloud_mask=self.mask),
            input_data=[
                SentinelHubRequest.input_data(
                    data_collection=self._collection,
                    time_interval=(
                        info.datetime - ACQUISITION_TOLERANCE,
                        info.datetime + ACQUISITION_TOLERANCE,
                    ),
                    other_args={"processing": {"harmonizeValues": True}},
                )
            ],
            responses=[
                SentinelHubRequest.output_response("default", MimeType.TIFF),
                SentinelHubRequest.output_response("userdata", MimeType.JSON),
            ],
            bbox=bbox,
            size=(w, h),
            config=self._sh,
        )
        what = f"scene {info.scene_id} on {cell.tile_id} [{row0}:{row0 + h}, {col0}:{col0 + w}]"
        log.debug("Process API request for %s", what)
        with self._errors(what):
            answer = self._download(request.download_list[0], what=what)
        return decode_process_answer(answer, n_bands=self._n_out(wanted), shape=(h, w), what=what)

    def _n_out(self, wanted: tuple[str, ...]) -> int:
        """Bands of a Process answer: the reflectance bands, the mask (if any), dataMask."""
        return len(wanted) + (0 if self.mask == "none" else 1) + 1

    # ------------------------------------------------------------------------------- internals

    def _client(self) -> Any:
        from sentinelhub import SentinelHubDownloadClient, SentinelHubSession

        if self._session is None:
            with self._errors("OAuth token"):
                self._session = SentinelHubSession(config=self._sh)
        return SentinelHubDownloadClient(
            config=self._sh, session=self._session, default_retry_time=self.policy.backoff_s
        )

    def _download(self, request: Any, *, what: str) -> Any:
        from sentinelhub.exceptions import DownloadFailedException

        for attempt in (1, 2):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return self._client().download(request, decode_data=True)
            except DownloadFailedException as exc:
                status = _status_of(exc)
                if status in (401, 403) and attempt == 1:
                    log.info("%s: HTTP %d; refreshing the OAuth token once", what, status)
                    self._session = None
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn `sentinelhub`, OAuth and HTTP failures into `TileError` subclasses."""
        try:
            yield
        except TileError:
            raise
        except Exception as exc:
            raise _translate(exc, what=what, base_url=self.base_url) from exc


class _Redact(logging.Filter):
    """Replace a secret in log records of third-party loggers (requests-oauthlib logs the token
    request body, client secret included, at DEBUG)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is left as it is
            return True
        if self.secret in text:
            record.msg = text.replace(self.secret, "***")
            record.args = ()
        return True


def _redact_in(logger_names: Sequence[str], secret: str) -> None:
    """Attach one `_Redact` per logger and secret (idempotent)."""
    for name in logger_names:
        for sub in (name, f"{name}.oauth2_session"):
            target = logging.getLogger(sub)
            if not any(isinstance(f, _Redact) and f.secret == secret for f in target.filters):
                target.addFilter(_Redact(secret))


def decode_process_answer(
    answer: Any, *, n_bands: int, shape: tuple[int, int], what: str = "Process API answer"
) -> tuple[np.ndarray, float]:
    """``((band, row, col) uint16, norm_factor)`` from a decoded multipart answer.

    Args:
        answer: what `sentinelhub` decodes a tar answer into: ``{"default.tif": array,
            "userdata.json": dict}`` (the array is ``(row, col[, band])``).
        n_bands: bands expected.
        shape: ``(rows, cols)`` expected.

    Raises:
        SceneFormatError: an output is missing or has another shape.
    """
    if not isinstance(answer, Mapping) or "default.tif" not in answer:
        got = sorted(answer) if isinstance(answer, Mapping) else type(answer).__name__
        raise SceneFormatError(f"{what}: expected default.tif and userdata.json, got {got}")
    arr = np.asarray(answer["default.tif"])
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    arr = np.moveaxis(arr, -1, 0)
    if arr.shape != (n_bands, *shape):
        raise SceneFormatError(
            f"{what}: default.tif has shape {arr.shape}, expected {(n_bands, *shape)}"
        )
    userdata = answer.get("userdata.json") or {}
    norm = float(userdata.get("norm_factor") or _DEFAULT_NORM)
    if not math.isfinite(norm) or norm <= 0:
        raise SceneFormatError(f"{what}: userdata norm_factor {norm!r} is not a positive number")
    return arr.astype(np.uint16, copy=False), norm


def split_cell(cell: GridCell, *, max_px: int = 2500) -> list[tuple[int, int, int, int]]:
    """``(row0, col0, rows, cols)`` blocks of at most ``max_px`` a side covering the cell."""
    rows = math.ceil(cell.height / max_px)
    cols = math.ceil(cell.width / max_px)
    step_r, step_c = math.ceil(cell.height / rows), math.ceil(cell.width / cols)
    return [
        (r, c, min(step_r, cell.height - r), min(step_c, cell.width - c))
        for r in range(0, cell.height, step_r)
        for c in range(0, cell.width, step_c)
    ]


def _status_of(exc: BaseException) -> int | None:
    inner = getattr(exc, "request_exception", None) or exc.__cause__
    response = getattr(inner, "response", None)
    return getattr(response, "status_code", None)


def _translate(exc: BaseException, *, what: str, base_url: str) -> Exception:
    from oauthlib.oauth2.rfc6749.errors import InsecureTransportError, OAuth2Error
    from sentinelhub.exceptions import DownloadFailedException, OutOfRequestsException

    if isinstance(exc, InsecureTransportError):
        return AuthenticationError(
            f"{what}: the OAuth token URL is plain http; OAuth sends the client secret only "
            "over https: set source.token_url to an https:// URL (the credentials were not sent)"
        )
    if isinstance(exc, OAuth2Error):
        return AuthenticationError(
            f"{what}: the OAuth token endpoint refused the client credentials "
            f"({type(exc).__name__}); check the client id/secret variables"
        )
    status = _status_of(exc)
    if isinstance(exc, OutOfRequestsException) or status == 429:
        return SourceUnavailableError(f"{what}: {base_url} kept answering 429 (rate limit)")
    if status in (401, 403):
        return AuthenticationError(
            f"{what}: {base_url} answered HTTP {status} even after a token refresh "
            "(expired or revoked credentials, or no access to this collection)"
        )
    if isinstance(exc, requests.HTTPError) and status is not None and status < 500:
        return TileError(f"{what}: {base_url} answered HTTP {status}: {str(exc)[:300]}")
    if isinstance(exc, (DownloadFailedException, requests.RequestException)):
        return SourceUnavailableError(f"{what}: {base_url} kept failing: {str(exc)[:300]}")
    return TileError(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")

