"""HTTP for the ``stac`` source: pystac-client I/O with timeouts and retries, Planetary Computer
SAS tokens, and the errors of refused access."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import requests
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO

from tiles.errors import (
    AssetMissingError,
    AuthenticationError,
)
from tiles.http import (
    RetryPolicy,
    check_response,
    retry_call,
)
from tiles.sources._stac_items import parse_datetime

log = logging.getLogger(__name__)

#: Refresh a SAS token this long before it expires.
_SAS_MARGIN_S = 120.0


# --------------------------------------------------------------------------------------------
# public API


class SasSigner:
    """Planetary Computer SAS tokens for one collection (``GET {token_url}/{collection}``).

    A token is reused until ``_SAS_MARGIN_S`` before its ``msft:expiry``; `invalidate` forces a
    new one (after a 403).
    """

    def __init__(
        self,
        token_url: str,
        collection: str,
        *,
        session: requests.Session,
        policy: RetryPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token_url = token_url.rstrip("/")
        self.collection = collection
        self.session = session
        self.policy = policy
        self.clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        #: the service gave a token already (nearly) expired: use it until the storage refuses it
        self._stale = False

    def __repr__(self) -> str:
        return f"SasSigner({self.token_url!r}, {self.collection!r}, token=***)"

    def invalidate(self) -> None:
        self._token = None
        self._stale = False

    def sign(self, href: str) -> str:
        """``href`` with the current token appended as its query.

        Raises:
            AuthenticationError: the token service refused.
            SourceUnavailableError: the token service kept failing.
        """
        if self._token is None or (
            not self._stale and self.clock() >= self._expires_at - _SAS_MARGIN_S
        ):
            self._refresh()
        return f"{href}{'&' if '?' in href else '?'}{self._token}"

    def _refresh(self) -> None:
        url = f"{self.token_url}/{self.collection}"

        def get() -> requests.Response:
            return check_response(
                self.session.get(url, timeout=self.policy.timeout), what=f"SAS token {url}"
            )

        resp = retry_call(get, policy=self.policy, what=f"SAS token {url}", url=url)
        raise_for_access(resp.status_code, what=f"SAS token {url}")
        if resp.status_code >= 400:
            raise AuthenticationError(f"SAS token {url}: HTTP {resp.status_code}")
        body = resp.json()
        token = body.get("token")
        if not token:
            raise AuthenticationError(f"SAS token {url}: the answer holds no 'token'")
        expiry = body.get("msft:expiry")
        self._expires_at = (
            parse_datetime(expiry).timestamp() if expiry else self.clock() + 45 * 60.0
        )
        self._token = str(token)
        log.debug("SAS token for %s valid until %s", self.collection, expiry)
        if self._expires_at - _SAS_MARGIN_S <= self.clock():
            # Fetching again would give the same token (a clock set wrong here or there): use
            # it until the storage refuses it, then fetch once more (`invalidate`).
            self._stale = True
            log.warning(
                "SAS token for %s from %s expires %s, %.0f s from now (within the %.0f s "
                "refresh margin): this machine's clock or the token service is off; using the "
                "token until the storage refuses it. Check the clock (timedatectl / NTP).",
                self.collection,
                self.token_url,
                expiry,
                self._expires_at - self.clock(),
                _SAS_MARGIN_S,
            )


class RetryingStacApiIO(StacApiIO):
    """pystac-client I/O with timeouts and `retry_call` (429/5xx, connection errors) on every
    request, GET and POST alike, honouring ``Retry-After``."""

    def __init__(self, *, policy: RetryPolicy, headers: dict[str, str] | None = None) -> None:
        super().__init__(headers=headers, timeout=policy.timeout, max_retries=None)
        self.policy = policy

    def request(
        self,
        href: str,
        method: str | None = None,
        headers: dict[str, str] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> str:
        """One request of a search (landing page, collection, each page), with retries.

        Raises:
            SourceUnavailableError: it kept failing (429/5xx/connection errors/timeouts).
            APIError: the API answered with another error (4xx).
        """
        method = (method or "GET").upper()
        what = f"STAC {method} {href.split('?', 1)[0]}"
        if method in ("POST", "PUT", "PATCH"):
            request = requests.Request(method=method, url=href, headers=headers, json=parameters)
        else:
            request = requests.Request(
                method=method, url=href, headers=headers, params=dict(parameters or {})
            )
        prepped = self.session.prepare_request(request)

        def once() -> str:
            log.debug("%s %s", what, json.dumps(parameters)[:500] if parameters else "")
            resp = self.session.send(prepped, timeout=self.policy.timeout)
            check_response(resp, what=what)
            if not 200 <= resp.status_code < 300:
                raise APIError.from_response(resp)
            return resp.content.decode("utf-8")

        return retry_call(once, policy=self.policy, what=what, url=href)


# --------------------------------------------------------------------------------------------
# helpers


def raise_for_access(status: int, *, what: str) -> None:
    if status == 404:
        raise AssetMissingError(f"{what}: HTTP 404, the file does not exist on the server")
    if status in (401, 403):
        raise AuthenticationError(
            f"{what}: HTTP {status}, access refused (expired or missing signature/token)"
        )
