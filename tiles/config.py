"""Configuration of imagery sources, periods and composites (the ``source``, ``periods`` and
``composite`` sections of a scan config)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tiles.bands import BANDS, DEFAULT_MASKED_SCL, SCL
from tiles.http import RetryPolicy
from tiles.periods import Period, periods_between
from tiles.synthetic import WorldSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalSourceConfig(_Strict):
    """A folder of scenes in the ``local`` format (DESIGN.md section 3)."""

    kind: Literal["local"] = "local"
    path: Path


class SyntheticSourceConfig(_Strict):
    """The synthetic world, generated on first use into ``path`` (default: ``<output>/world``)."""

    kind: Literal["synthetic"] = "synthetic"
    world: WorldSpec = Field(default_factory=WorldSpec)
    path: Path | None = None


class HttpConfig(_Strict):
    """Timeouts and retries of a remote source (see `tiles.http`)."""

    max_tries: int = Field(default=5, ge=1, le=20)
    backoff_s: float = Field(default=1.0, ge=0, le=600)
    max_backoff_s: float = Field(default=60.0, ge=0, le=3600)
    max_retry_after_s: float = Field(default=300.0, ge=0, le=3600)
    connect_timeout_s: float = Field(default=10.0, gt=0, le=600)
    read_timeout_s: float = Field(default=60.0, gt=0, le=3600)

    def policy(self) -> RetryPolicy:
        """The `RetryPolicy` these settings describe."""
        return RetryPolicy(
            max_tries=self.max_tries,
            backoff_s=self.backoff_s,
            max_backoff_s=self.max_backoff_s,
            max_retry_after_s=self.max_retry_after_s,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
        )


#: Earth Search v1: Sentinel-2 L2A COGs on AWS, no account needed.
EARTH_SEARCH_URL = "https://earth-search.aws.element84.com/v1"
PLANETARY_COMPUTER_SAS_URL = "https://planetarycomputer.microsoft.com/api/sas/v1/token"


class StacSourceConfig(_Strict):
    """Sentinel-2 L2A COGs found through a STAC API (Earth Search v1 by default).

    ``cache_dir`` (default ``<output>/cache``) holds the windows read, so a rerun reads nothing
    twice. ``asset_keys`` maps band names to asset keys where a catalog names them unusually.
    ``sign: planetary_computer`` signs hrefs with Planetary Computer SAS tokens.
    ``read_mode: download`` downloads whole files (checked against ``file:size`` and
    ``file:checksum``) instead of range-reading windows.
    """

    kind: Literal["stac"] = "stac"
    url: str = EARTH_SEARCH_URL
    collection: str = "sentinel-2-l2a"
    max_cloud_pct: float = Field(default=80.0, ge=0, le=100)
    page_size: int = Field(default=100, ge=1, le=10_000)
    max_items: int | None = Field(default=None, ge=1)
    asset_keys: dict[str, str] = Field(default_factory=dict)
    sign: Literal["none", "planetary_computer"] = "none"
    sas_token_url: str = PLANETARY_COMPUTER_SAS_URL
    read_mode: Literal["windows", "download"] = "windows"
    cache_dir: Path | None = None
    http: HttpConfig = Field(default_factory=HttpConfig)

    @model_validator(mode="after")
    def _check(self) -> StacSourceConfig:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {self.url!r}: expected an http(s) URL of a STAC API")
        unknown = [b for b in self.asset_keys if b != SCL and b not in BANDS]
        if unknown:
            raise ValueError(
                f"asset_keys: unknown band name(s) {unknown}; expected {sorted(BANDS)} or {SCL}"
            )
        return self


#: Sentinel Hub endpoints: (base URL, OAuth token URL).
SENTINELHUB_ENDPOINTS: dict[str, tuple[str, str]] = {
    "commercial": (
        "https://services.sentinel-hub.com",
        "https://services.sentinel-hub.com/auth/realms/main/protocol/openid-connect/token",
    ),
    "cdse": (
        "https://sh.dataspace.copernicus.eu",
        "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token",
    ),
}


class SentinelHubSourceConfig(_Strict):
    """Sentinel-2 L2A through the Sentinel Hub Catalog and Process APIs, on the commercial
    service (``endpoint: commercial``) or the Copernicus Data Space (``endpoint: cdse``);
    ``base_url``/``token_url`` override the endpoint's URLs. The OAuth client id and secret are
    read from the environment variables named by ``client_id_env``/``client_secret_env``, never
    from the file. ``cloud_mask: scl`` returns the scene classification; ``clm`` the s2cloudless
    mask (cloud as SCL class 9, clear as 4)."""

    kind: Literal["sentinelhub"] = "sentinelhub"
    endpoint: Literal["commercial", "cdse"] = "commercial"
    base_url: str | None = None
    token_url: str | None = None
    collection: str = "sentinel-2-l2a"
    max_cloud_pct: float = Field(default=80.0, ge=0, le=100)
    client_id_env: str = "SH_CLIENT_ID"
    client_secret_env: str = "SH_CLIENT_SECRET"
    cloud_mask: Literal["scl", "clm"] = "scl"
    max_request_px: int = Field(default=2500, ge=64, le=2500)
    cache_dir: Path | None = None
    http: HttpConfig = Field(default_factory=HttpConfig)

    @property
    def urls(self) -> tuple[str, str]:
        """``(base_url, token_url)`` in effect."""
        base, token = SENTINELHUB_ENDPOINTS[self.endpoint]
        return (self.base_url or base).rstrip("/"), self.token_url or token


SourceConfig = Annotated[
    LocalSourceConfig | SyntheticSourceConfig | StacSourceConfig | SentinelHubSourceConfig,
    Field(discriminator="kind"),
]


class PeriodSpec(_Strict):
    start: dt.date
    end: dt.date
    label: str | None = None


class PeriodsConfig(_Strict):
    """The periods a scan compares: calendar ``quarter`` (default), ``month`` or ``year`` periods
    overlapping ``[start, end]``, or an explicit ``custom`` list."""

    kind: Literal["quarter", "month", "year", "custom"] = "quarter"
    start: dt.date | None = None
    end: dt.date | None = None
    custom: list[PeriodSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> PeriodsConfig:
        if self.kind == "custom":
            if len(self.custom) < 2:
                raise ValueError("kind 'custom' needs at least two entries under 'custom'")
        elif self.start is None or self.end is None:
            raise ValueError(f"kind {self.kind!r} needs both 'start' and 'end' dates")
        return self

    def resolve(self) -> list[Period]:
        """The periods in time order."""
        if self.kind == "custom":
            periods = [
                Period(p.start, p.end, p.label or f"{p.start.isoformat()}_{p.end.isoformat()}")
                for p in self.custom
            ]
            return sorted(periods)
        if self.start is None or self.end is None:  # pragma: no cover - the validator checks
            raise ValueError(f"kind {self.kind!r} needs both 'start' and 'end' dates")
        return periods_between(self.start, self.end, kind=self.kind)


class CompositeConfig(_Strict):
    """How a period's clear observations become one composite per chip."""

    method: Literal["median", "best"] = "median"
    masked_scl: tuple[int, ...] = DEFAULT_MASKED_SCL
    dilation_px: int = Field(default=1, ge=0, le=50)
