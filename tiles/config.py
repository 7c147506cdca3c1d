"""Configuration of imagery sources, periods and composites (the ``source``, ``periods`` and
``composite`` sections of a scan config)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from aoi.configfile import StrictConfig
from tiles.bands import BANDS, DEFAULT_MASKED_SCL, SCL
from tiles.http import CircuitBreaker, RetryPolicy
from tiles.periods import Period, periods_between
from tiles.synthetic import WorldSpec

log = logging.getLogger(__name__)


class LocalSourceConfig(StrictConfig):
    """A folder of scenes in the ``local`` format (DESIGN.md section 3)."""

    kind: Literal["local"] = "local"
    path: Path


class SyntheticSourceConfig(StrictConfig):
    """The synthetic world, generated on first use into ``path`` (default: ``<output>/world``)."""

    kind: Literal["synthetic"] = "synthetic"
    world: WorldSpec = Field(default_factory=WorldSpec)
    path: Path | None = None


class HttpConfig(StrictConfig):
    """Timeouts and retries of a remote source (see `tiles.http`)."""

    max_tries: int = Field(default=5, ge=1, le=20)
    backoff_s: float = Field(default=1.0, ge=0, le=600)
    max_backoff_s: float = Field(default=60.0, ge=0, le=3600)
    max_retry_after_s: float = Field(default=300.0, ge=0, le=3600)
    connect_timeout_s: float = Field(default=10.0, gt=0, le=600)
    read_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    #: calls in a row to one host that fail on connection errors (refused, DNS, timeouts) before
    #: its circuit opens and the rest of the run's reads from it fail at once; 0 = never
    circuit_failures: int = Field(default=3, ge=0, le=1000)

    def policy(self) -> RetryPolicy:
        """The `RetryPolicy` these settings describe (with a fresh `CircuitBreaker`)."""
        return RetryPolicy(
            breaker=CircuitBreaker(self.circuit_failures),
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


class StacSourceConfig(StrictConfig):
    """Sentinel-2 L2A (or L1C) COGs found through a STAC API (Earth Search v1 by default).

    ``collection: sentinel-2-l1c`` reads Level-1C (top of atmosphere, 13 bands with B10, no SCL);
    the level of each item is taken from ``s2:product_type`` / ``processing:level`` and else from
    the collection's name.

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


class SentinelHubSourceConfig(StrictConfig):
    """Sentinel-2 L2A (or L1C: ``collection: sentinel-2-l1c``) through the Sentinel Hub Catalog
    and Process APIs, on the commercial
    service (``endpoint: commercial``) or the Copernicus Data Space (``endpoint: cdse``);
    ``base_url``/``token_url`` override the endpoint's URLs. The OAuth client id and secret are
    read from the environment variables named by ``client_id_env``/``client_secret_env``, never
    from the file. ``cloud_mask: scl`` returns the scene classification (L2A only: L1C scenes
    then come without a mask and the composite's cloud detector masks them); ``clm`` the
    s2cloudless mask (cloud as SCL class 9, clear as 4)."""

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


class PeriodSpec(StrictConfig):
    start: dt.date
    end: dt.date
    label: str | None = None


#: The ``periods.end`` value that means "the UTC date when the scan runs".
TODAY = "today"

_PERIOD_KINDS = "quarter, month or year"


def utc_today() -> dt.date:
    """The current date in UTC: what ``periods.end: today`` (or an absent ``end`` with ``last``)
    means when the periods are resolved."""
    return dt.datetime.now(dt.timezone.utc).date()


def _period_start_back(day: dt.date, *, kind: str, back: int) -> dt.date:
    """The first day of the ``kind`` period ``back`` periods before the one containing ``day``."""
    if kind == "quarter":
        index = day.year * 4 + (day.month - 1) // 3 - back
        return dt.date(index // 4, index % 4 * 3 + 1, 1)
    if kind == "month":
        index = day.year * 12 + day.month - 1 - back
        return dt.date(index // 12, index % 12 + 1, 1)
    if kind == "year":
        return dt.date(day.year - back, 1, 1)
    raise ValueError(f"period kind {kind!r}: expected {_PERIOD_KINDS}")


class PeriodsConfig(StrictConfig):
    """The periods a scan compares.

    - ``kind`` ``quarter`` (default), ``month`` or ``year`` with ``start`` and ``end``: every
      calendar period overlapping ``[start, end]``.
    - the same kinds with ``last: N`` (N >= 2) and no ``start``: a rolling window, the N most
      recent periods ending with the period that contains ``end``. ``end`` may be a date, the
      literal ``today`` or absent (also today). Today is the UTC date when the periods are
      resolved, so a scheduled scan moves forward by itself; the current, still-running period is
      included (a rerun recomputes its units as new scenes arrive). ``start`` (also set by
      ``minewatch scan --since``) and ``last`` together are an error: one fixes the first
      period, the other counts back from the last.
    - ``kind: custom`` with an explicit ``custom`` list of at least two ranges.
    """

    kind: Literal["quarter", "month", "year", "custom"] = "quarter"
    start: dt.date | None = None
    end: dt.date | Literal["today"] | None = None
    last: int | None = None
    custom: list[PeriodSpec] = Field(default_factory=list)

    @field_validator("end", mode="before")
    @classmethod
    def _check_end(cls, value: object) -> object:
        if isinstance(value, str) and value != TODAY:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise ValueError(
                    "expected a date (YYYY-MM-DD) or 'today' (the UTC date of the run); "
                    "write e.g. 'end: 2024-09-30' or 'end: today'"
                ) from None
        return value

    @field_validator("last")
    @classmethod
    def _check_last(cls, value: int | None) -> int | None:
        if value is not None and value < 2:
            raise ValueError(
                "expected 2 or more periods (a scan compares each period with the one before); "
                "set 'last: 2' or more"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> PeriodsConfig:
        if self.kind == "custom":
            if self.last is not None:
                raise ValueError(
                    f"'last' ({self.last}) does not apply to kind 'custom', which scans the "
                    "ranges listed under 'custom'; remove 'last', or set kind to "
                    f"{_PERIOD_KINDS} for a rolling window"
                )
            if len(self.custom) < 2:
                raise ValueError("kind 'custom' needs at least two entries under 'custom'")
        elif self.last is not None:
            if self.start is not None:
                raise ValueError(
                    f"'start' ({self.start.isoformat()}) and 'last' ({self.last}) are both "
                    "given (start may come from --since); expected one of them: 'start' fixes "
                    "the first period, 'last' counts back from 'end'; remove 'start' (or "
                    "--since) for a rolling window, or remove 'last' for a fixed range"
                )
        elif self.start is None or self.end is None:
            missing = " and ".join(
                repr(k) for k, v in (("start", self.start), ("end", self.end)) if v is None
            )
            raise ValueError(
                f"kind {self.kind!r} needs 'start' and 'end' dates, or 'last: N' for the N most "
                f"recent periods up to 'end' (default today); {missing} missing: add "
                f"{'them' if ' and ' in missing else 'it'}, e.g. 'start: 2024-04-01' with "
                "'end: today', or use 'last: 4' for a rolling window"
            )
        else:
            end = self.end if isinstance(self.end, dt.date) else utc_today()
            if end < self.start:
                raise ValueError(
                    f"'end' ({self.end}) is before 'start' ({self.start.isoformat()}); "
                    "expected start <= end: fix the dates (or --since/--until)"
                )
        return self

    def resolve(self, *, today: dt.date | None = None) -> list[Period]:
        """The periods in time order.

        Args:
            today: the date ``end: today`` (or an absent ``end`` with ``last``) stands for;
                default `utc_today`.
        """
        if self.kind == "custom":
            periods = [
                Period(p.start, p.end, p.label or f"{p.start.isoformat()}_{p.end.isoformat()}")
                for p in self.custom
            ]
            return sorted(periods)
        if isinstance(self.end, dt.date):
            end = self.end
            end_text = end.isoformat()
        else:  # absent (with 'last') or 'today'
            end = today or utc_today()
            end_text = f"{end.isoformat()} (today, UTC)"
        if self.last is not None:
            start = _period_start_back(end, kind=self.kind, back=self.last - 1)
            periods = periods_between(start, end, kind=self.kind)
            log.info(
                "periods: the last %d %s period(s) up to %s: %s..%s",
                self.last,
                self.kind,
                end_text,
                periods[0].label,
                periods[-1].label,
            )
            return periods
        if self.start is None:  # pragma: no cover - the validator checks
            raise ValueError(f"kind {self.kind!r} needs 'start' and 'end' dates or 'last'")
        return periods_between(self.start, end, kind=self.kind)


class CompositeConfig(StrictConfig):
    """How a period's clear observations become one composite per chip.

    ``cloud_mask`` decides how clouds and shadows are found (`tiles.clouds`): ``scl`` the L2A
    scene classification only (scenes without it are used unmasked, with a warning);
    ``ukis-csmask`` the trained detector on every scene; ``auto`` (default) the SCL where a scene
    has one, else the detector, and a scan that needs the detector without it installed is
    refused with the fix. ``masked_scl`` applies to the SCL, ``dilation_px`` to both.
    """

    method: Literal["median", "best"] = "median"
    masked_scl: tuple[int, ...] = DEFAULT_MASKED_SCL
    dilation_px: int = Field(default=1, ge=0, le=50)
    cloud_mask: Literal["scl", "ukis-csmask", "auto"] = "auto"
