"""HTTP behaviour of the remote sources: timeouts, retries with backoff, and GDAL's cloud settings.

What the libraries do not do on their own (RELIABILITY.md rows 4-7): GDAL does not retry HTTP
unless ``GDAL_HTTP_MAX_RETRY`` is set; pystac-client retries neither 5xx nor 429 on POST searches
and has no timeout by default; a stalled server hangs a request without a read timeout. Every
remote call of the ``stac`` and ``sentinelhub`` sources therefore goes through `retry_call` with
one `RetryPolicy`, and every GDAL read happens under `gdal_options` (set in one place).

Retried: HTTP 408, 425, 429, 500, 502, 503, 504, dropped connections and timeouts. A
``Retry-After`` header (seconds or an HTTP date) is honoured up to ``max_retry_after_s``; otherwise
the wait is exponential (``backoff_s * 2**n``, capped at ``max_backoff_s``) with random jitter.
After the last try a `SourceUnavailableError` names the call, the tries and the last reason.

A `CircuitBreaker` (one per source, carried by its `RetryPolicy`) counts the calls to each host
that failed every try on connection errors (refused, name resolution, timeouts): after
``threshold`` such calls in a row the host's circuit opens, and every later call to it fails at
once with a `HostUnavailableError` naming the host and the cause. So a dead host costs a scan a
few calls' retries, not the retries of every chip and period.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter

from tiles.errors import HostUnavailableError, SourceUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: HTTP statuses worth another try.
RETRY_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})

USER_AGENT = "minewatch (+https://github.com/minewatch)"


class TransientError(Exception):
    """A failure worth another try (raised by callers inside `retry_call`).

    Attributes:
        status: the HTTP status, or None for a connection error or timeout.
        retry_after_s: the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class CircuitBreaker:
    """Per-host count of calls that failed on connection errors, opening after ``threshold``.

    Args:
        threshold: failed calls in a row that open a host's circuit; 0 never opens it.

    Plain dicts and no lock (the GIL makes each update atomic), so a source carrying one can be
    sent to Dask workers; each worker process then keeps its own count.
    """

    def __init__(self, threshold: int = 3) -> None:
        if threshold < 0:
            raise ValueError(f"CircuitBreaker: threshold {threshold} must be >= 0")
        self.threshold = threshold
        self._failures: dict[str, int] = {}
        self._open: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"CircuitBreaker(threshold={self.threshold}, open={sorted(self._open)})"

    def check(self, url: str) -> None:
        """Raise `HostUnavailableError` when ``url``'s host has an open circuit."""
        host = host_of(url)
        if host in self._open:
            raise HostUnavailableError(self._open[host])

    def is_open(self, url: str) -> bool:
        return host_of(url) in self._open

    def message(self, url: str) -> str:
        """Why ``url``'s host's circuit is open ("" when it is not)."""
        return self._open.get(host_of(url), "")

    def success(self, url: str) -> None:
        self._failures.pop(host_of(url), None)

    def failure(self, url: str, reason: str) -> bool:
        """Count one failed call; return True when this one opened the circuit."""
        if not self.threshold:
            return False
        host = host_of(url)
        n = self._failures.get(host, 0) + 1
        self._failures[host] = n
        if n < self.threshold or host in self._open:
            return False
        self._open[host] = (
            f"host {host} unreachable: {n} calls in a row failed ({reason}); its circuit is "
            "open, so the rest of this run's reads from it fail at once: check the network, "
            "DNS and the host name, then run the scan again"
        )
        log.error("%s", self._open[host])
        return True


def host_of(url: str) -> str:
    """``host[:port]`` of a URL (the unit a circuit covers)."""
    return urllib.parse.urlsplit(url).netloc.rsplit("@", 1)[-1] or url


@dataclass(frozen=True)
class RetryPolicy:
    """Timeouts and retries of every remote call.

    Attributes:
        max_tries: attempts per call (1 = no retry).
        backoff_s: first wait; it doubles at each retry.
        max_backoff_s: cap of one wait.
        jitter: share of each wait that is random (0..1), so that parallel workers spread out.
        max_retry_after_s: longest ``Retry-After`` honoured; a longer one fails the call at once.
        connect_timeout_s: TCP connect timeout.
        read_timeout_s: longest silence while reading a response (a stalled server fails here).
        sleep: how to wait (tests pass a recorder).
        random: a 0..1 random draw for the jitter (tests pass a constant).
        breaker: the circuit breaker `retry_call` consults when given a ``url`` (None: none).
    """

    max_tries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    jitter: float = 0.5
    max_retry_after_s: float = 300.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)
    breaker: CircuitBreaker | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_tries < 1:
            raise ValueError(f"RetryPolicy: max_tries {self.max_tries} must be >= 1")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("RetryPolicy: backoff_s and max_backoff_s must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"RetryPolicy: jitter {self.jitter} must be within 0..1")
        if self.connect_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ValueError("RetryPolicy: timeouts must be > 0 seconds")

    @property
    def timeout(self) -> tuple[float, float]:
        """``(connect, read)`` timeout as `requests` takes it."""
        return (self.connect_timeout_s, self.read_timeout_s)

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after_s is not None:
            return max(0.0, retry_after_s)
        base = min(self.max_backoff_s, self.backoff_s * (2 ** (attempt - 1)))
        return base * (1.0 - self.jitter * self.random())


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date).

    Returns:
        The wait in seconds (>= 0), or None when the header is absent or not understood.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        log.debug("Retry-After %r not understood; ignored", value)
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def check_response(response: requests.Response, *, what: str) -> requests.Response:
    """Raise `TransientError` for a retryable status; return the response otherwise.

    Non-retryable errors (4xx other than 408/425/429) are left to the caller, which knows what a
    401, 403 or 404 means for it.
    """
    if response.status_code in RETRY_STATUSES:
        raise TransientError(
            f"{what}: HTTP {response.status_code} {response.reason}",
            status=response.status_code,
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
        )
    return response


def retry_call(fn: Callable[[], T], *, policy: RetryPolicy, what: str, url: str | None = None) -> T:
    """Call ``fn`` until it succeeds, retrying transient failures per ``policy``.

    ``fn`` signals a transient failure by raising `TransientError`, or a `requests` connection
    error or timeout; any other exception propagates at once.

    Args:
        fn: the call.
        policy: tries, waits and timeouts.
        what: names the call in logs and errors (never holds a secret).
        url: the URL called; with ``policy.breaker`` its host's circuit is checked first, and a
            call that fails every try on connection errors counts towards opening it.

    Returns:
        What ``fn`` returns.

    Raises:
        HostUnavailableError: the host's circuit is open (or this call opened it).
        SourceUnavailableError: every try failed, or the server asked for a wait longer than
            ``policy.max_retry_after_s``.
    """
    breaker = policy.breaker if url is not None else None
    if breaker is not None and url is not None:
        breaker.check(url)
    started = time.monotonic()
    waited = 0.0
    for attempt in range(1, policy.max_tries + 1):
        try:
            result = fn()
        except (TransientError, requests.ConnectionError, requests.Timeout) as exc:
            reason = _reason(exc)
            retry_after = exc.retry_after_s if isinstance(exc, TransientError) else None
            if retry_after is not None and retry_after > policy.max_retry_after_s:
                raise SourceUnavailableError(
                    f"{what}: the server asks to retry after {retry_after:.0f} s, longer than "
                    f"max_retry_after_s={policy.max_retry_after_s:.0f} s ({reason}); try later"
                ) from exc
            if attempt == policy.max_tries:
                message = (
                    f"{what}: failed after {attempt} tries in {time.monotonic() - started:.1f} s "
                    f"(waited {waited:.1f} s): {reason}"
                )
                if (
                    breaker is not None
                    and url is not None
                    and not isinstance(exc, TransientError)
                    and breaker.failure(url, reason)
                ):
                    raise HostUnavailableError(f"{message}; {breaker.message(url)}") from exc
                raise SourceUnavailableError(message) from exc
            wait = policy.delay(attempt, retry_after)
            log.debug(
                "%s: try %d/%d failed (%s); retrying in %.2f s%s",
                what,
                attempt,
                policy.max_tries,
                reason,
                wait,
                " (Retry-After)" if retry_after is not None else "",
            )
            policy.sleep(wait)
            waited += wait
            continue
        if breaker is not None and url is not None:
            breaker.success(url)
        return result
    raise AssertionError("unreachable")  # pragma: no cover


_RESOLVE = re.compile(
    r"NameResolutionError|Failed to resolve|Name or service not known|nodename nor servname|"
    r"Temporary failure in name resolution|getaddrinfo"
)


def _reason(exc: BaseException) -> str:
    """Why a call failed, naming the cause an operator can act on (DNS, refused, timeout)."""
    if isinstance(exc, requests.Timeout):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        host = getattr(getattr(exc, "request", None), "url", None)
        where = f" for {host_of(host)}" if host else ""
        if _RESOLVE.search(text):
            return f"name resolution (DNS) failed{where}: the host name does not resolve"
        if "Connection refused" in text or "Errno 111" in text:
            return f"connection refused{where}: nothing listens at that address"
        if "timed out" in text.lower():
            return f"connection timed out{where}"
        return f"connection failed{where} ({type(exc).__name__}: {text[:160]})"
    return str(exc)


def make_session(*, headers: Mapping[str, str] | None = None) -> requests.Session:
    """A `requests` session without urllib3 retries (`retry_call` owns retries).

    Every request made with it must pass ``timeout=policy.timeout``.
    """
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=0, pool_maxsize=16)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    if headers:
        session.headers.update(headers)
    return session


def gdal_options(policy: RetryPolicy) -> dict[str, Any]:
    """GDAL configuration for reading COGs over HTTP (pass to ``rasterio.Env``).

    - no directory listing on open, only ``.tif`` files probed: one request less per file;
    - consecutive ranges merged, and ranges fetched one request at a time (``SERIAL``) through
      GDAL's block cache: GDAL's default parallel multi-range reads bypass that cache, so COG
      blocks shared by neighbouring chips were fetched again for each chip (the benchmark read
      3.2x the full files that way; 0.39x this way for an AOI over 37% of a tile);
    - ``GDAL_HTTP_MAX_RETRY``/``GDAL_HTTP_RETRY_DELAY`` (GDAL retries 429/5xx once set; it
      doubles the delay with jitter), connect and total timeouts, and a low-speed abort that
      catches a stalled server;
    - caches (``CPL_VSIL_CURL_CACHE_SIZE`` 256 MB shared by all files, ``VSI_CACHE`` per file)
      so that headers and the COG blocks shared by neighbouring chips are fetched once.
    """
    return {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MULTIRANGE": "SERIAL",
        "GDAL_HTTP_MULTIPLEX": "YES",
        "GDAL_HTTP_VERSION": "2",
        "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
        "GDAL_HTTP_MAX_RETRY": str(policy.max_tries - 1),
        "GDAL_HTTP_RETRY_DELAY": f"{max(policy.backoff_s, 0.001):g}",
        "GDAL_HTTP_CONNECTTIMEOUT": str(max(1, round(policy.connect_timeout_s))),
        "GDAL_HTTP_TIMEOUT": str(max(1, round(policy.read_timeout_s * 4))),
        "GDAL_HTTP_LOW_SPEED_TIME": str(max(1, round(policy.read_timeout_s))),
        "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
        "GDAL_HTTP_USERAGENT": USER_AGENT,
        "CPL_VSIL_CURL_CACHE_SIZE": str(256 * 1024 * 1024),
        "VSI_CACHE": "TRUE",
        "VSI_CACHE_SIZE": str(64 * 1024 * 1024),
    }
