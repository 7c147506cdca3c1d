"""Retries, backoff, Retry-After and timeouts (`tiles.http`), on a real loopback server with
injected faults and a recorded (not real) sleep."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.tiles.servers import RangeServer
from tiles.errors import HostUnavailableError, SourceUnavailableError
from tiles.http import (
    CircuitBreaker,
    RetryPolicy,
    TransientError,
    check_response,
    gdal_options,
    make_session,
    parse_retry_after,
    retry_call,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RangeServer]:
    root = tmp_path_factory.mktemp("http")
    (root / "a.bin").write_bytes(bytes(range(256)) * 64)
    srv = RangeServer(root).start()
    yield srv
    srv.stop()


def policy(sleeps: list[float], **kw: float) -> RetryPolicy:
    opts: dict[str, float] = {"max_tries": 4, "backoff_s": 0.5, "jitter": 0.0}
    opts.update(kw)
    return RetryPolicy(
        connect_timeout_s=1.0,
        read_timeout_s=0.5,
        sleep=sleeps.append,
        **opts,  # type: ignore[arg-type]
    )


def get(server: RangeServer, p: RetryPolicy) -> bytes:
    session = make_session()

    def once() -> bytes:
        resp = check_response(
            session.get(f"{server.url}/a.bin", timeout=p.timeout, headers={"Range": "bytes=0-9"}),
            what="GET a.bin",
        )
        resp.raise_for_status()
        return resp.content

    return retry_call(once, policy=p, what="GET a.bin")


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after(when) or 0) <= 31


def test_exponential_backoff_with_jitter() -> None:
    p = RetryPolicy(backoff_s=1.0, max_backoff_s=5.0, jitter=0.5, random=lambda: 1.0)
    assert [p.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 2.5, 2.5]
    assert p.delay(1, retry_after_s=12.0) == 12.0
    with pytest.raises(ValueError, match="max_tries 0 must be >= 1"):
        RetryPolicy(max_tries=0)


def test_5xx_then_success(server: RangeServer) -> None:
    server.reset()
    server.inject("/a.bin", "500", "502", "503")
    sleeps: list[float] = []
    assert get(server, policy(sleeps)) == bytes(range(10))
    assert [r.status for r in server.requests] == [500, 502, 503, 206]
    assert sleeps == [0.5, 1.0, 2.0]


def test_429_honours_retry_after(server: RangeServer) -> None:
    server.reset()
    server.inject("/a.bin", "429:3", "429")
    sleeps: list[float] = []
    assert get(server, policy(sleeps)) == bytes(range(10))
    assert sleeps == [3.0, 1.0]  # the server's wait, then backoff


def test_retry_after_beyond_the_cap_fails_at_once(server: RangeServer) -> None:
    server.reset()
    server.inject("/a.bin", "429:3600")
    sleeps: list[float] = []
    with pytest.raises(SourceUnavailableError, match="retry after 3600 s"):
        get(server, policy(sleeps, max_retry_after_s=60))
    assert sleeps == []


def test_gives_up_after_the_last_try(server: RangeServer) -> None:
    server.reset()
    server.inject("/a.bin", *["503"] * 4)
    sleeps: list[float] = []
    with pytest.raises(SourceUnavailableError, match=r"GET a.bin: failed after 4 tries.*HTTP 503"):
        get(server, policy(sleeps))
    assert len(server.requests) == 4


def test_stalled_server_times_out_and_is_retried(server: RangeServer) -> None:
    server.reset()
    server.inject("/a.bin", "stall:2")
    sleeps: list[float] = []
    started = time.monotonic()
    assert get(server, policy(sleeps)) == bytes(range(10))
    assert len(sleeps) == 1 and time.monotonic() - started < 2.0


def test_connection_refused_is_retried_then_reported() -> None:
    sleeps: list[float] = []
    p = policy(sleeps, max_tries=2)
    session = make_session()
    with pytest.raises(SourceUnavailableError, match=r"connection refused for 127\.0\.0\.1:9"):
        retry_call(
            lambda: session.get("http://127.0.0.1:9/x", timeout=p.timeout),
            policy=p,
            what="GET x",
        )
    assert sleeps == [0.5]


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens


@pytest.mark.parametrize(
    ("base", "cause"),
    [
        ("http://cogs.minewatch.invalid", r"name resolution \(DNS\) failed for cogs\.minewatch"),
        ("http://127.0.0.1:{port}", r"connection refused for 127\.0\.0\.1:\d+"),
    ],
)
def test_dead_host_opens_its_circuit_after_n_calls(base: str, cause: str) -> None:
    """A host that fails N calls in a row (DNS or refused, really) fails every later call at
    once, without a request or a wait, with one message naming the host and the cause."""
    base = base.format(port=_closed_port())
    sleeps: list[float] = []
    p = policy(sleeps, max_tries=2)
    p = RetryPolicy(**{**p.__dict__, "breaker": CircuitBreaker(3)})
    session = make_session()
    calls: list[str] = []

    def get(path: str) -> requests.Response:
        calls.append(path)
        return session.get(f"{base}{path}", timeout=p.timeout)

    for n in (1, 2):
        with pytest.raises(SourceUnavailableError, match=cause) as info:
            retry_call(lambda n=n: get(f"/{n}.tif"), policy=p, what=f"HEAD {n}", url=f"{base}/{n}")
        assert not isinstance(info.value, HostUnavailableError)
    with pytest.raises(HostUnavailableError, match=f"{cause}.*circuit is open"):
        retry_call(lambda: get("/3.tif"), policy=p, what="HEAD 3", url=f"{base}/3.tif")
    assert len(calls) == 6 and len(sleeps) == 3  # 3 calls of 2 tries, a wait between tries
    for _ in range(50):
        with pytest.raises(HostUnavailableError, match=cause):
            retry_call(lambda: get("/x.tif"), policy=p, what="HEAD x", url=f"{base}/x.tif")
    assert len(calls) == 6 and len(sleeps) == 3  # no request, no wait once open


def test_a_success_resets_the_count_and_other_hosts_are_not_affected(server: RangeServer) -> None:
    server.reset()
    breaker = CircuitBreaker(2)
    sleeps: list[float] = []
    p = RetryPolicy(**{**policy(sleeps, max_tries=1).__dict__, "breaker": breaker})
    session = make_session()
    dead = f"http://127.0.0.1:{_closed_port()}/a.bin"

    def call(url: str) -> bytes:
        return retry_call(
            lambda: session.get(url, timeout=p.timeout).content, policy=p, what="GET", url=url
        )

    with pytest.raises(SourceUnavailableError):
        call(dead)
    assert breaker.failure(dead, "x") is True  # the second failure in a row opens it
    assert breaker.is_open(dead)
    assert call(f"{server.url}/a.bin")  # another host works on
    healthy = CircuitBreaker(2)
    p2 = RetryPolicy(**{**p.__dict__, "breaker": healthy})
    with pytest.raises(SourceUnavailableError):
        retry_call(lambda: session.get(dead).content, policy=p2, what="GET", url=dead)
    healthy.success(dead)  # a success in between: the count starts again
    with pytest.raises(SourceUnavailableError) as info:
        retry_call(lambda: session.get(dead).content, policy=p2, what="GET", url=dead)
    assert not isinstance(info.value, HostUnavailableError) and not healthy.is_open(dead)
    assert CircuitBreaker(0).failure(dead, "x") is False  # 0 never opens


def test_http_config_sets_the_circuit() -> None:
    from tiles.config import HttpConfig

    assert HttpConfig().policy().breaker.threshold == 3  # type: ignore[union-attr]
    assert HttpConfig(circuit_failures=0).policy().breaker.threshold == 0  # type: ignore[union-attr]


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def boom() -> None:
        calls.append(1)
        raise requests.HTTPError("404")

    with pytest.raises(requests.HTTPError):
        retry_call(boom, policy=RetryPolicy(sleep=lambda s: None), what="x")
    assert calls == [1]
    with pytest.raises(SourceUnavailableError, match="x: failed after 1 tries"):
        retry_call(
            lambda: (_ for _ in ()).throw(TransientError("x: busy")),
            policy=RetryPolicy(max_tries=1),
            what="x",
        )


def test_gdal_options_enable_retries_and_timeouts(tmp_path: Path) -> None:
    opts = gdal_options(RetryPolicy(max_tries=4, backoff_s=0.5, read_timeout_s=30))
    assert opts["GDAL_HTTP_MAX_RETRY"] == "3"
    assert opts["GDAL_HTTP_RETRY_DELAY"] == "0.5"
    assert opts["GDAL_HTTP_LOW_SPEED_TIME"] == "30"
    assert opts["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert opts["GDAL_HTTP_MERGE_CONSECUTIVE_RANGES"] == "YES"
