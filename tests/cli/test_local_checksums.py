"""Silent corruption of a local scene (RELIABILITY.md row 2): a scene folder's ``scene.json`` gives
its band files their sha256 (as ``scenes.json`` records it); one byte flipped in the middle of a
ZSTD tile of a real COG decodes without an error, but the scan hashes the file before reading it
and drops that scene with its reason. Tried through the command line; nothing is mocked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import rasterio
from rasterio.warp import transform_bounds

from detection.alerts import sha256_file
from tests.cli.conftest import minewatch, small_config
from tiles.cog import write_cog


@pytest.fixture(scope="module")
def scene_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scenes of a 256 px synthetic world, each as a folder of per-band ZSTD COGs whose
    scene.json lists every file's sha256."""
    folder = tmp_path_factory.mktemp("synth")
    res = minewatch("tiles", "synth", "world", "--size-px", "256", "--acquisitions", "2",
                    "--json", cwd=folder)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    out = folder / "folders"
    for tif in sorted((folder / "world" / "scenes").glob("*.tif")):
        scene = out / tif.stem
        scene.mkdir(parents=True)
        with rasterio.open(tif) as src:
            for i, band in enumerate(src.descriptions, start=1):
                write_cog(scene / f"{band}.tif", src.read(i), crs=src.crs,
                          transform=src.transform, nodata=src.nodata, compress="ZSTD",
                          blocksize=128)  # fmt: skip
            tags = src.tags()
        meta = {
            "datetime": tags["ACQUISITION_DATETIME"],
            "processing_baseline": tags["PROCESSING_BASELINE"],
            "files": {p.name: {"sha256": sha256_file(p)} for p in sorted(scene.glob("*.tif"))},
        }
        (scene / "scene.json").write_text(json.dumps(meta))
    return out


def flip_byte_mid_tile(path: Path) -> None:
    """Flip one byte in the middle of the compressed bytes of the file's second tile."""
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_1_0", "TIFF", bidx=1))
        size = int(src.get_tag_item("BLOCK_SIZE_1_0", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[offset + size // 2] ^= 0x10
    path.write_bytes(bytes(data))


def write_scan_config(folder: Path, scenes: Path) -> Path:
    """A scan of the local scene folders over an AOI inside the world."""
    tif = next(scenes.glob("*/B02.tif"))
    with rasterio.open(tif) as src:
        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    dx, dy = (e - w) * 0.15, (n - s) * 0.15
    ring = [
        [w + dx, s + dy],
        [e - dx, s + dy],
        [e - dx, n - dy],
        [w + dx, n - dy],
        [w + dx, s + dy],
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "aoi.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"id": "box-1", "name": "Test reserve"},
        "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))  # fmt: skip
    return small_config(folder, world=scenes, source={"kind": "local", "path": str(scenes)})


def test_a_flipped_byte_in_a_local_cog_drops_its_scene(scene_folders: Path, tmp_path: Path) -> None:
    import shutil

    scenes = tmp_path / "scenes"
    shutil.copytree(scene_folders, scenes)
    victim_scene = sorted(scenes.iterdir())[-1]
    victim = victim_scene / "B08.tif"
    before = victim.read_bytes()
    flip_byte_mid_tile(victim)
    # the flip is silent to the decoder: the file still opens and decodes (a different tile)
    with rasterio.open(victim) as src:
        src.read(1)
    cfg = write_scan_config(tmp_path, scenes)
    res = minewatch("-vv", "scan", str(cfg), "--out", "out", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    dropped = run["scenes_dropped"]
    assert dropped and {d["scene_id"] for d in dropped} == {victim_scene.name}, dropped
    assert all(f"{victim}: corrupt, its sha256" in d["reason"] for d in dropped)
    assert re.search(rf"scene dropped: {victim_scene.name} in \d+ unit\(s\)", res.stderr)
    assert "differs from file:checksum" in res.stderr
    # hashed once in the run, however many chips read it
    assert res.stderr.count(f"{victim}: checksum sha256") == 1, res.stderr[-3000:]
    assert res.stderr.count(f"{victim_scene / 'B02.tif'}: checksum verified") == 1

    # the good bytes back: the scene is used again, nothing is dropped
    victim.write_bytes(before)
    again = minewatch("scan", str(cfg), "--out", "out2", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "scene dropped" not in again.stderr
    assert json.loads((tmp_path / "out2" / "run.json").read_text())["scenes_dropped"] == []
