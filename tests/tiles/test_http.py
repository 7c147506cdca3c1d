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
from tiles.errors import SourceUnavailableError
from tiles.http import (
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
    with pytest.raises(SourceUnavailableError, match="connection failed"):
        retry_call(
            lambda: session.get("http://127.0.0.1:9/x", timeout=p.timeout),
            policy=p,
            what="GET x",
        )
    assert sleeps == [0.5]


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
