"""The on-disk cache of the remote sources: downloaded windows and downloaded files.

A rerun reads nothing twice, and never uses a half-written or corrupted entry:

- **Windows** (`WindowCache`): the native-resolution pixels a source read from one band of one
  scene for one grid cell, stored as they came (digital numbers, before radiometry), keyed by
  scene, band, asset, window and grid. Each entry is one file written atomically (temporary name,
  fsync, rename) holding a header with the payload's size and sha256; an entry whose size or hash
  does not match (a crash, a full disk, a flipped bit) is deleted and read again from the source.
- **Files** (`fetch_file`): whole asset files, checked by size and, where the STAC item gives one,
  by ``file:checksum`` (a multihash), both when downloaded and when reused. A mismatch is
  re-downloaded once, then fails with `ChecksumMismatchError`. A ZSTD COG with a flipped byte
  decodes into wrong pixels without any error, so this check is what catches it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests
from affine import Affine
from rasterio.crs import CRS

from tiles.errors import AssetMissingError, AuthenticationError, ChecksumMismatchError
from tiles.files import atomic_path
from tiles.http import RetryPolicy, TransientError, check_response, retry_call

log = logging.getLogger(__name__)

_MAGIC = b"MWWIN1\n"
_FORMAT = 1
#: multihash code -> (hashlib name, digest length)
_MULTIHASH: dict[int, tuple[str, int]] = {
    0x11: ("sha1", 20),
    0x12: ("sha256", 32),
    0x13: ("sha512", 64),
    0xD5: ("md5", 16),
}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RawWindow:
    """Pixels of one band read from a file, before radiometry.

    Attributes:
        data: ``(row, col)`` values as stored in the file.
        transform: affine transform of ``data``.
        crs: CRS of ``data``.
        nodata: the file's nodata value, if any.
    """

    data: np.ndarray
    transform: Affine
    crs: CRS
    nodata: float | None


def window_key(
    *,
    scene_id: str,
    band: str,
    href: str,
    window: tuple[int, int, int, int],
    grid: Mapping[str, Any],
) -> str:
    """The cache key (sha256 hex) of one band window of one scene for one grid.

    ``href`` is used without its query string, so a refreshed signature (SAS token) keeps the key.
    """
    payload = {
        "format": _FORMAT,
        "scene_id": scene_id,
        "band": band,
        "href": href.split("?", 1)[0],
        "window": list(window),
        "grid": dict(grid),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class WindowCache:
    """Windows of bands kept on disk under ``root/windows``.

    Attributes:
        root: the cache folder.
        hits: entries served from disk since this object was made.
        misses: lookups that found nothing usable.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.root / "windows" / key[:2] / f"{key}.win"

    def get(self, key: str) -> RawWindow | None:
        """The entry of ``key``, or None when it is missing or not intact (then it is removed)."""
        path = self.path(key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            self.misses += 1
            return None
        try:
            window = _decode(blob)
        except ValueError as exc:
            log.warning(
                "cache entry %s is not intact (%s); removed, it will be read again", path, exc
            )
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        log.debug("cache hit %s", path.name)
        return window

    def put(self, key: str, window: RawWindow) -> Path:
        """Store ``window`` under ``key`` atomically.

        Raises:
            OSError: the cache cannot be written (e.g. disk full); nothing partial is left.
        """
        path = self.path(key)
        with atomic_path(path) as tmp:
            tmp.write_bytes(_encode(window))
        return path


def _encode(window: RawWindow) -> bytes:
    data = np.ascontiguousarray(window.data)
    payload = data.tobytes()
    header = json.dumps(
        {
            "dtype": data.dtype.str,
            "shape": list(data.shape),
            "transform": list(window.transform)[:6],
            "crs": window.crs.to_wkt(),
            "nodata": window.nodata,
            "nbytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
    ).encode()
    return _MAGIC + struct.pack("<I", len(header)) + header + payload


def _decode(blob: bytes) -> RawWindow:
    if not blob.startswith(_MAGIC):
        raise ValueError("not a minewatch window entry")
    start = len(_MAGIC) + 4
    if len(blob) < start:
        raise ValueError("truncated header")
    (hlen,) = struct.unpack("<I", blob[len(_MAGIC) : start])
    try:
        header = json.loads(blob[start : start + hlen])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable header ({exc})") from None
    payload = blob[start + hlen :]
    if len(payload) != header["nbytes"]:
        raise ValueError(f"{len(payload)} payload bytes, expected {header['nbytes']}")
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise ValueError("payload sha256 mismatch")
    data = np.frombuffer(payload, dtype=np.dtype(header["dtype"])).reshape(header["shape"])
    return RawWindow(
        data=data.copy(),
        transform=Affine(*header["transform"]),
        crs=CRS.from_wkt(header["crs"]),
        nodata=header["nodata"],
    )


# --------------------------------------------------------------------------------------------
# whole files


def parse_multihash(checksum: str) -> tuple[str, str]:
    """``(hashlib name, hex digest)`` of a multihash hex string (STAC ``file:checksum``).

    Raises:
        ValueError: the value is not a multihash of a supported function (sha1, sha2-256,
            sha2-512, md5).
    """
    text = checksum.strip().lower()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"file:checksum {checksum!r} is not hexadecimal") from None
    code, pos = _varint(raw, 0)
    length, pos = _varint(raw, pos)
    if code not in _MULTIHASH:
        raise ValueError(
            f"file:checksum {checksum!r}: multihash code 0x{code:x} is not supported "
            "(expected sha1 0x11, sha2-256 0x12, sha2-512 0x13 or md5 0xd5)"
        )
    name, expected_len = _MULTIHASH[code]
    digest = raw[pos:]
    if length != expected_len or len(digest) != expected_len:
        raise ValueError(f"file:checksum {checksum!r}: digest length does not match {name}")
    return name, digest.hex()


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while pos < len(raw):
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated multihash")


def file_hash(path: Path, name: str = "sha256") -> str:
    """The ``name`` digest (hex) of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.new(name)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, *, size: int | None = None, checksum: str | None = None) -> str | None:
    """Why ``path`` does not match ``size``/``checksum``, or None when it does."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"{actual} bytes, expected {size} (file:size)"
    if checksum:
        name, expected = parse_multihash(checksum)
        actual_hex = file_hash(path, name)
        if actual_hex != expected:
            return f"{name} {actual_hex[:16]}... differs from file:checksum {expected[:16]}..."
    return None


def fetch_file(
    url: str,
    dest: Path,
    *,
    session: requests.Session,
    policy: RetryPolicy,
    size: int | None = None,
    checksum: str | None = None,
    what: str = "",
) -> Path:
    """Download ``url`` to ``dest`` unless an intact copy is there; verify it either way.

    The download goes to a temporary file renamed into place when complete; a body shorter than
    its ``Content-Length`` is a transient failure (retried). A copy that fails the size/checksum
    check is quarantined (``*.bad``) and downloaded once more.

    Args:
        url: the file (a signed URL is fine; it is never logged with its query).
        dest: where to keep it.
        session: the HTTP session.
        policy: timeouts and retries.
        size: expected size in bytes (``file:size``), if known.
        checksum: expected multihash (``file:checksum``), if known.
        what: names the file in messages.

    Returns:
        ``dest``.

    Raises:
        ChecksumMismatchError: the file still does not match after a second download.
        AssetMissingError: the server answers 404.
        AuthenticationError: the server answers 401/403.
        SourceUnavailableError: the download kept failing.
    """
    label = what or url.split("?", 1)[0]
    if dest.is_file():
        problem = verify_file(dest, size=size, checksum=checksum)
        if problem is None:
            log.debug("cached file %s is intact", dest)
            return dest
        log.warning("cached file %s: %s; quarantined, downloading again", dest, problem)
        dest.replace(dest.with_name(dest.name + ".bad"))
    for attempt in (1, 2):
        _download(url, dest, session=session, policy=policy, what=label)
        problem = verify_file(dest, size=size, checksum=checksum)
        if problem is None:
            return dest
        bad = dest.with_name(dest.name + ".bad")
        dest.replace(bad)
        if attempt == 2:
            raise ChecksumMismatchError(
                f"{label}: downloaded twice, still {problem}; the file on the server is corrupt or "
                f"the item's metadata is wrong (kept as {bad})"
            )
        log.warning("%s: %s; quarantined as %s, downloading once more", label, problem, bad)
    raise AssertionError("unreachable")  # pragma: no cover


def _download(
    url: str, dest: Path, *, session: requests.Session, policy: RetryPolicy, what: str
) -> None:
    def once() -> None:
        with session.get(url, stream=True, timeout=policy.timeout) as resp:
            if resp.status_code == 404:
                raise AssetMissingError(f"{what}: HTTP 404, the file does not exist")
            if resp.status_code in (401, 403):
                raise AuthenticationError(
                    f"{what}: HTTP {resp.status_code}; the signature or token was refused"
                )
            check_response(resp, what=what)
            resp.raise_for_status()
            expected = resp.headers.get("Content-Length")
            got = 0
            with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
                try:
                    for chunk in resp.iter_content(_CHUNK):
                        fh.write(chunk)
                        got += len(chunk)
                except requests.exceptions.ChunkedEncodingError as exc:
                    raise TransientError(f"{what}: connection broke after {got} bytes") from exc
                if expected is not None and got != int(expected):
                    raise TransientError(
                        f"{what}: connection closed after {got} of {expected} bytes"
                    )
        log.debug("%s: downloaded %d bytes to %s", what, got, dest)

    retry_call(once, policy=policy, what=f"download {what}", url=url)
