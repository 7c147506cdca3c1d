"""The on-disk cache (`tiles.cache`): atomic, verified window entries; whole files checked by
size and ``file:checksum`` (a flipped byte in a ZSTD COG reads back silently wrong)."""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from tests.tiles.servers import RangeServer
from tiles.cache import RawWindow, WindowCache, fetch_file, parse_multihash, verify_file, window_key
from tiles.cog import write_cog
from tiles.errors import AssetMissingError, ChecksumMismatchError
from tiles.http import RetryPolicy, make_session

CRS_UTM = CRS.from_epsg(32721)
T = Affine(20, 0, 600000, 0, -20, 9450000)
FAST = RetryPolicy(max_tries=2, backoff_s=0.0, connect_timeout_s=1, read_timeout_s=2)


def window() -> RawWindow:
    data = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) + 1000).astype(np.uint16)
    return RawWindow(data, T, CRS_UTM, 0.0)


def key(**kw: object) -> str:
    args: dict = {
        "scene_id": "S2A_21MVN_20240419_0_L2A",
        "band": "B11",
        "href": "https://x/B11.tif?token=a",
        "window": (0, 0, 64, 48),
        "grid": {"crs": "EPSG:32721", "shape": [96, 128]},
    }
    args.update(kw)
    return window_key(**args)


def test_key_depends_on_scene_band_window_grid_not_on_signature() -> None:
    base = key()
    assert key(href="https://x/B11.tif?token=b") == base
    assert key(band="B12") != base
    assert key(window=(1, 0, 64, 48)) != base
    assert key(grid={"crs": "EPSG:32722", "shape": [96, 128]}) != base
    assert key(scene_id="other") != base


def test_roundtrip_and_counts(tmp_path: Path) -> None:
    cache = WindowCache(tmp_path)
    assert cache.get(key()) is None and cache.misses == 1
    cache.put(key(), window())
    got = cache.get(key())
    assert got is not None and cache.hits == 1
    np.testing.assert_array_equal(got.data, window().data)
    assert got.transform == T and got.crs == CRS_UTM and got.nodata == 0.0


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_damaged_entry_is_never_used(tmp_path: Path, damage: str) -> None:
    cache = WindowCache(tmp_path)
    path = cache.put(key(), window())
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "flip":
        blob[-7] ^= 0x01
    else:
        blob = bytearray(b"<html>503</html>")
    path.write_bytes(bytes(blob))
    assert cache.get(key()) is None
    assert not path.exists()


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = WindowCache(tmp_path)

    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError, match="No space left"):
        cache.put(key(), window())
    monkeypatch.undo()
    assert list(tmp_path.rglob("*")) == [] or all(p.is_dir() for p in tmp_path.rglob("*"))
    assert cache.get(key()) is None


def test_multihash() -> None:
    digest = hashlib.sha256(b"abc").hexdigest()
    assert parse_multihash("1220" + digest) == ("sha256", digest)
    assert parse_multihash("d50110" + hashlib.md5(b"abc").hexdigest())[0] == "md5"
    with pytest.raises(ValueError, match="code 0x15 is not supported"):
        parse_multihash("1520" + digest)
    with pytest.raises(ValueError, match="digest length"):
        parse_multihash("1220" + digest[:-2])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RangeServer, Path]]:
    root = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(0)
    data = rng.integers(1000, 4000, (512, 512), dtype=np.uint16)
    good = write_cog(
        root / "good.tif", data, crs=CRS_UTM, transform=T, compress="ZSTD", blocksize=256
    )
    raw = bytearray(good.read_bytes())
    with rasterio.open(good) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    raw[offset + size // 2] ^= 0x10  # one flipped byte mid-tile
    (root / "flipped.tif").write_bytes(bytes(raw))
    srv = RangeServer(root).start()
    yield srv, root
    srv.stop()


def test_zstd_bit_flip_reads_back_wrong_without_error(served: tuple[RangeServer, Path]) -> None:
    _, root = served
    with rasterio.open(root / "good.tif") as a, rasterio.open(root / "flipped.tif") as b:
        try:
            differs = not np.array_equal(a.read(1), b.read(1))
        except rasterio.errors.RasterioIOError:
            pytest.skip("this GDAL build detects the damaged ZSTD frame")
    assert differs  # decoded without any error, but the pixels are wrong
    good = root / "good.tif"
    checksum = "1220" + hashlib.sha256(good.read_bytes()).hexdigest()
    problem = verify_file(root / "flipped.tif", size=good.stat().st_size, checksum=checksum)
    assert problem is not None and "sha256" in problem


def test_fetch_file_verifies_and_reuses(served: tuple[RangeServer, Path], tmp_path: Path) -> None:
    srv, root = served
    good = (root / "good.tif").read_bytes()
    checksum = "1220" + hashlib.sha256(good).hexdigest()
    dest = tmp_path / "good.tif"
    srv.reset()
    kw = {"session": make_session(), "policy": FAST, "size": len(good), "checksum": checksum}
    fetch_file(f"{srv.url}/good.tif", dest, **kw)  # type: ignore[arg-type]
    assert dest.read_bytes() == good and len(srv.requests) == 1
    fetch_file(f"{srv.url}/good.tif", dest, **kw)  # type: ignore[arg-type]
    assert len(srv.requests) == 1  # intact copy reused
    dest.write_bytes(good[:-5])  # a damaged copy (e.g. a crash): quarantined and fetched again
    fetch_file(f"{srv.url}/good.tif", dest, **kw)  # type: ignore[arg-type]
    assert len(srv.requests) == 2 and dest.read_bytes() == good
    assert (tmp_path / "good.tif.bad").exists()


def test_corrupt_remote_file_fails_after_one_refetch(
    served: tuple[RangeServer, Path], tmp_path: Path
) -> None:
    srv, root = served
    good = (root / "good.tif").read_bytes()
    srv.reset()
    with pytest.raises(ChecksumMismatchError, match=r"downloaded twice, still sha256"):
        fetch_file(
            f"{srv.url}/flipped.tif",
            tmp_path / "f.tif",
            session=make_session(),
            policy=FAST,
            checksum="1220" + hashlib.sha256(good).hexdigest(),
        )
    assert len(srv.requests) == 2
    with pytest.raises(AssetMissingError, match="404"):
        fetch_file(f"{srv.url}/nope.tif", tmp_path / "n.tif", session=make_session(), policy=FAST)


def test_fetch_retries_5xx(served: tuple[RangeServer, Path], tmp_path: Path) -> None:
    srv, _ = served
    srv.reset()
    srv.inject("/good.tif", "503")
    fetch_file(f"{srv.url}/good.tif", tmp_path / "g.tif", session=make_session(), policy=FAST)
    assert [r.status for r in srv.requests] == [503, 200]
