"""The local source: listing and reading scenes of both layouts, and refusing bad files clearly."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

import tiles.sources._local
from aoi.grid import GridCell
from tests.tiles.conftest import (
    ALL_BANDS,
    FOREST,
    SEDIMENT,
    WHEN,
    World,
    corrupt_first_block,
    truncate,
    write_folder,
    write_single,
)
from tiles.cog import write_cog
from tiles.errors import (
    ChecksumMismatchError,
    MissingBandError,
    SceneFormatError,
    SceneNotFoundError,
)
from tiles.sources import list_scenes, read_scene, scene_footprint_intersects

# ------------------------------------------------------------------------------------- listing


def test_single_file_band_descriptions_name_the_bands(scene_dir: Path, world: World) -> None:
    write_single(scene_dir / "S2A_20240210.tif", world, bands=("B04", "B02", "B08"))
    [info] = list_scenes(scene_dir)
    assert info.scene_id == "S2A_20240210"
    assert info.bands == ("B02", "B04", "B08")
    assert info.has_scl
    assert info.datetime == WHEN
    assert info.datetime.tzinfo is not None
    assert info.processing_baseline == "04.00"
    assert info.crs == CRS.from_epsg(32721)
    assert (info.width, info.height) == world.shape


def test_per_band_folder_takes_finest_grid(scene_dir: Path, world: World) -> None:
    write_folder(scene_dir / "scene_a", world, meta={"scene_id": "S2B_X"})
    [info] = list_scenes(scene_dir)
    assert info.scene_id == "S2B_X"
    assert info.bands == ALL_BANDS
    assert info.has_scl
    assert info.transform == world.transform  # the 10 m grid, not the 20 m one
    assert (info.width, info.height) == world.shape


def test_scenes_sorted_by_datetime_then_id(scene_dir: Path, world: World) -> None:
    later = WHEN + dt.timedelta(days=5)
    write_single(scene_dir / "a_late.tif", world, when=later)
    write_single(scene_dir / "b_early.tif", world, when=WHEN)
    write_folder(scene_dir / "c_early", world, when=WHEN + dt.timedelta(hours=1))
    ids = [i.scene_id for i in list_scenes(scene_dir)]
    assert ids == ["b_early", "c_early", "a_late"]


def test_datetime_without_timezone_is_utc(scene_dir: Path, world: World) -> None:
    write_single(scene_dir / "s.tif", world, when="2024-02-10T14:03:21")
    assert list_scenes(scene_dir)[0].datetime == WHEN


def test_empty_folder_is_not_found(scene_dir: Path) -> None:
    (scene_dir / "README.txt").write_text("nothing here")
    with pytest.raises(SceneNotFoundError, match=r"no scenes found.*ACQUISITION_DATETIME"):
        list_scenes(scene_dir)


def test_missing_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(SceneNotFoundError, match="scene folder not found"):
        list_scenes(tmp_path / "nope")


def test_missing_datetime_tag_names_file_tag_and_fix(scene_dir: Path, world: World) -> None:
    write_single(scene_dir / "undated.tif", world, when=None)
    with pytest.raises(
        SceneFormatError,
        match=r"undated\.tif: missing tag ACQUISITION_DATETIME .*gdal_edit\.py -mo "
        r"ACQUISITION_DATETIME=",
    ):
        list_scenes(scene_dir)


def test_bad_datetime_tag(scene_dir: Path, world: World) -> None:
    write_single(scene_dir / "s.tif", world, when="10/02/2024")
    with pytest.raises(SceneFormatError, match=r"ACQUISITION_DATETIME '10/02/2024' is not an ISO"):
        list_scenes(scene_dir)


def test_unknown_band_description(scene_dir: Path, world: World) -> None:
    write_single(
        scene_dir / "s.tif", world, bands=("B02", "B03"), scl=False, descriptions=["B02", "red"]
    )
    with pytest.raises(SceneFormatError, match=r"band 2: unknown band name 'red'"):
        list_scenes(scene_dir)


def test_missing_band_description(scene_dir: Path, world: World) -> None:
    write_single(
        scene_dir / "s.tif", world, bands=("B02", "B03"), scl=False, descriptions=["B02", ""]
    )
    with pytest.raises(SceneFormatError, match=r"band 2: has no band description"):
        list_scenes(scene_dir)


def test_short_band_names_accepted(scene_dir: Path, world: World) -> None:
    write_single(
        scene_dir / "s.tif", world, bands=("B02", "B03"), scl=False, descriptions=["b2", "B3"]
    )
    assert list_scenes(scene_dir)[0].bands == ("B02", "B03")


def test_html_saved_as_tif(scene_dir: Path) -> None:
    (scene_dir / "scene.tif").write_text("<html><body>503 Service Unavailable</body></html>")
    with pytest.raises(SceneFormatError, match=r"scene\.tif: not a GeoTIFF .*HTML.*re-download"):
        list_scenes(scene_dir)


def test_zero_byte_file(scene_dir: Path) -> None:
    (scene_dir / "scene.tif").write_bytes(b"")
    with pytest.raises(SceneFormatError, match=r"scene\.tif: file is empty \(0 bytes\)"):
        list_scenes(scene_dir)


def test_truncated_cog_is_refused_from_its_header(scene_dir: Path, world: World) -> None:
    path = write_single(scene_dir / "cut.tif", world)
    truncate(path, keep=0.5)
    with pytest.raises(SceneFormatError, match=r"cut\.tif: truncated or corrupt.*re-download it"):
        list_scenes(scene_dir)


def test_truncated_band_file_in_scene_folder(scene_dir: Path, world: World) -> None:
    folder = write_folder(scene_dir / "scene", world)
    truncate(folder / "B04.tif", keep=0.5)
    with pytest.raises(SceneFormatError, match=r"B04\.tif: truncated or corrupt"):
        list_scenes(scene_dir)


def test_integer_scene_without_offset_or_baseline_is_refused(scene_dir: Path, world: World) -> None:
    write_single(scene_dir / "s.tif", world, baseline=None)
    with pytest.raises(
        SceneFormatError,
        match=r"s\.tif: integer \(digital number\) band B02 but neither BOA_ADD_OFFSET nor "
        r"PROCESSING_BASELINE",
    ):
        list_scenes(scene_dir)


def test_baseline_alone_gives_the_offset(
    scene_dir: Path, world: World, world_cell: GridCell
) -> None:
    write_single(scene_dir / "s.tif", world, baseline="N0400", offset_tag=False)
    [info] = list_scenes(scene_dir)
    assert info.processing_baseline == "04.00"
    scene = read_scene(info, world_cell, bands=["B02"])
    np.testing.assert_allclose(
        scene.band("B02")[world.valid], world.reflectance["B02"][world.valid], atol=1e-6
    )


def test_bad_processing_baseline_tag(scene_dir: Path, world: World) -> None:
    write_single(scene_dir / "s.tif", world, baseline="04.00", tags={"PROCESSING_BASELINE": "v4"})
    with pytest.raises(SceneFormatError, match=r"PROCESSING_BASELINE: processing baseline 'v4'"):
        list_scenes(scene_dir)


def test_scene_folder_without_scene_json(scene_dir: Path, world: World) -> None:
    folder = write_folder(scene_dir / "scene", world)
    (folder / "scene.json").unlink()
    with pytest.raises(
        SceneFormatError, match=r"scene: scene folder has GeoTIFFs but no scene\.json"
    ):
        list_scenes(scene_dir)


def test_scene_json_unknown_key(scene_dir: Path, world: World) -> None:
    write_folder(scene_dir / "scene", world, meta={"cloud_cover": 3})
    with pytest.raises(SceneFormatError, match=r"scene\.json: unknown key\(s\) \['cloud_cover'\]"):
        list_scenes(scene_dir)


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"B99.tif": {"sha256": "0" * 64}}, r"files names 'B99\.tif', which is not a band file"),
        (
            {"B02.tif": {"md5": "0" * 32}},
            r"files\.B02\.tif must hold one of \['sha256', 'file:checksum'\]",
        ),
        ({"B02.tif": {"sha256": "abc"}}, r"files\.B02\.tif\.sha256 'abc' is not a valid checksum"),
        ({"B02.tif": {"file:checksum": "1220zz"}}, r"is not a valid checksum .*not hexadecimal"),
        (["B02.tif"], r"files must be an object such as"),
    ],
)
def test_scene_json_bad_checksums_name_the_entry(
    scene_dir: Path, world: World, files: object, match: str
) -> None:
    write_folder(scene_dir / "scene", world, meta={"files": files})
    with pytest.raises(SceneFormatError, match=match):
        list_scenes(scene_dir)


def test_scene_json_checksum_verified_once_and_a_flipped_byte_refused(
    scene_dir: Path, world: World, world_cell: GridCell
) -> None:
    folder = write_folder(scene_dir / "scene", world)
    meta = json.loads((folder / "scene.json").read_text())
    good = hashlib.sha256((folder / "B02.tif").read_bytes()).hexdigest()
    meta["files"] = {"B02.tif": {"file:checksum": "1220" + good}, "B04.tif": {"sha256": good}}
    (folder / "scene.json").write_text(json.dumps(meta))
    [info] = list_scenes(scene_dir)
    read_scene(info, world_cell, bands=["B02", "B03"])  # B02 matches; B03 has no checksum
    with pytest.raises(ChecksumMismatchError, match=r"B04\.tif: corrupt, its sha256 .* differs"):
        read_scene(info, world_cell, bands=["B04"])  # B02's hash given for B04


def test_scene_json_missing_datetime(scene_dir: Path, world: World) -> None:
    folder = write_folder(scene_dir / "scene", world)
    (folder / "scene.json").write_text(json.dumps({"processing_baseline": "04.00"}))
    with pytest.raises(SceneFormatError, match=r"scene\.json: missing key 'datetime'"):
        list_scenes(scene_dir)


def test_skip_invalid_logs_and_keeps_the_rest(
    scene_dir: Path, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    write_single(scene_dir / "good.tif", world)
    (scene_dir / "bad.tif").write_text("<html>503</html>")
    with caplog.at_level(logging.WARNING, logger="tiles.sources"):
        infos = list_scenes(scene_dir, skip_invalid=True)
    assert [i.scene_id for i in infos] == ["good"]
    assert "bad.tif: not a GeoTIFF" in caplog.text


def test_duplicate_scene_keeps_newest_baseline(
    scene_dir: Path, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """RELIABILITY row 18: a reprocessed product of the same acquisition replaces the old one."""
    write_single(scene_dir / "old_N0301.tif", world, baseline="03.01")
    write_single(scene_dir / "new_N0510.tif", world, baseline="05.10")
    write_single(scene_dir / "other_day.tif", world, when=WHEN + dt.timedelta(days=1))
    with caplog.at_level(logging.INFO, logger="tiles.sources"):
        infos = list_scenes(scene_dir)
    assert [i.scene_id for i in infos] == ["new_N0510", "other_day"]
    assert "dropped duplicate scene old_N0301 (baseline 03.01" in caplog.text
    assert "new_N0510 (baseline 05.10), which is kept" in caplog.text


# ------------------------------------------------------------------------------------- reading


def test_read_single_file_on_its_grid(scene_dir: Path, world: World, world_cell: GridCell) -> None:
    [info] = list_scenes(write_single(scene_dir / "s.tif", world).parent)
    scene = read_scene(info, world_cell, bands=["B04", "B02", "B11"])
    assert scene.bands == ("B04", "B02", "B11")
    assert scene.data.shape == (3, *world.shape)
    assert scene.data.dtype == np.float32
    np.testing.assert_array_equal(scene.valid, world.valid)
    assert np.isnan(scene.data[:, ~world.valid]).all()
    for i, band in enumerate(scene.bands):
        np.testing.assert_allclose(
            scene.data[i][world.valid], world.reflectance[band][world.valid], atol=1e-6
        )
    assert scene.scl is not None
    assert scene.scl.dtype == np.uint8
    np.testing.assert_array_equal(scene.scl, world.scl)
    assert scene.crs == world_cell.crs
    assert scene.transform == world_cell.transform


@pytest.mark.parametrize("baseline", ["03.01", "04.00"])
def test_both_baselines_give_the_surface_reflectance(
    scene_dir: Path, world: World, world_cell: GridCell, baseline: str
) -> None:
    """RELIABILITY row 11: the -1000 offset of 04.00 is applied once; 03.01 has none."""
    write_single(scene_dir / f"s_{baseline}.tif", world, baseline=baseline)
    [info] = list_scenes(scene_dir)
    scene = read_scene(info, world_cell, bands=ALL_BANDS)
    planted = world.feature & world.valid
    for band in ALL_BANDS:
        np.testing.assert_allclose(scene.band(band)[planted], SEDIMENT[band], atol=1e-6)
        np.testing.assert_allclose(
            scene.band(band)[~world.feature & world.valid], FOREST[band], atol=1e-6
        )


def test_mixed_baselines_read_alike(scene_dir: Path, world: World, world_cell: GridCell) -> None:
    write_single(scene_dir / "a.tif", world, baseline="03.01")
    write_single(scene_dir / "b.tif", world, baseline="04.00", when=WHEN + dt.timedelta(days=3))
    a, b = (read_scene(i, world_cell, bands=ALL_BANDS) for i in list_scenes(scene_dir))
    np.testing.assert_allclose(a.data, b.data, atol=1e-6, equal_nan=True)


def test_float_reflectance_file_is_used_as_is(
    scene_dir: Path, world: World, world_cell: GridCell
) -> None:
    write_single(scene_dir / "f.tif", world, dtype="float32", baseline=None, scl=False)
    [info] = list_scenes(scene_dir)
    assert info.processing_baseline == "unknown"
    assert not info.has_scl
    scene = read_scene(info, world_cell, bands=["B08"])
    assert scene.scl is None
    np.testing.assert_array_equal(scene.valid, world.valid)
    np.testing.assert_allclose(
        scene.band("B08")[world.valid], world.reflectance["B08"][world.valid]
    )


def test_float_file_holding_digital_numbers_is_refused(
    scene_dir: Path, world: World, world_cell: GridCell
) -> None:
    dn = world.dn("B02", offset=-1000).astype("float32")
    write_cog(
        scene_dir / "f.tif",
        dn,
        crs=world.crs,
        transform=world.transform,
        nodata=0,
        band_descriptions=["B02"],
        tags={"ACQUISITION_DATETIME": WHEN.isoformat()},
    )
    [info] = list_scenes(scene_dir)
    with pytest.raises(SceneFormatError, match=r"float band B02 holds values up to 2200;"):
        read_scene(info, world_cell, bands=["B02"])


def test_gdal_scale_offset_used_when_set(
    scene_dir: Path, world: World, world_cell: GridCell
) -> None:
    path = write_single(scene_dir / "s.tif", world, baseline=None, bands=("B02", "B08"), scl=False)
    with rasterio.open(path, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
        dst.scales = (1e-4, 1e-4)
        dst.offsets = (-0.1, -0.1)
    [info] = list_scenes(scene_dir)
    scene = read_scene(info, world_cell, bands=["B08", "B02"])
    for band in ("B02", "B08"):
        np.testing.assert_allclose(
            scene.band(band)[world.valid], world.reflectance[band][world.valid], atol=1e-6
        )


def test_gdal_offset_contradicting_tag_is_refused(scene_dir: Path, world: World) -> None:
    path = write_single(scene_dir / "s.tif", world, bands=("B02",), scl=False)
    with rasterio.open(path, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
        dst.scales = (1e-4,)
        dst.offsets = (0.0,)  # says "no offset" while the tag says -1000
    with pytest.raises(SceneFormatError, match=r"GDAL scale/offset .* BOA_ADD_OFFSET says -1000"):
        list_scenes(scene_dir)


def test_folder_20m_bands_resampled_to_10m(
    scene_dir: Path, world: World, inner_cell: GridCell
) -> None:
    write_folder(scene_dir / "scene", world)
    [info] = list_scenes(scene_dir)
    scene = read_scene(info, inner_cell, bands=["B02", "B11", "B12"])
    assert scene.data.shape == (3, 32, 32)
    # the feature in cell pixels: world rows 20:30, cols 24:36 -> cell rows 12:22, cols 8:20
    interior = np.zeros((32, 32), dtype=bool)
    interior[13:21, 9:19] = True  # one 10 m pixel in from the 20 m edges: bilinear is exact
    for band in ("B11", "B12"):
        np.testing.assert_allclose(scene.band(band)[interior], SEDIMENT[band], atol=1e-6)
    far = np.zeros((32, 32), dtype=bool)
    far[:, 26:] = True
    np.testing.assert_allclose(scene.band("B11")[far], FOREST["B11"], atol=1e-6)
    # bilinear: 10 m pixels on the feature's edge blend the two 20 m values
    edge = scene.band("B11")[12, 12]
    assert FOREST["B11"] < edge < SEDIMENT["B11"]
    assert scene.valid.all()
    # SCL (20 m) by nearest neighbour: only class values, no blends
    assert scene.scl is not None
    assert set(np.unique(scene.scl)) <= {3, 4, 5, 9}
    assert (scene.scl[14:20, 10:18] == 5).all()


def test_read_covers_only_the_cell_window(
    scene_dir: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = 1024
    dn = (np.arange(big * big, dtype=np.uint32) % 5000 + 1001).astype(np.uint16).reshape(big, big)
    transform = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 9_460_000.0)
    write_cog(
        scene_dir / "big.tif",
        dn,
        crs=world.crs,
        transform=transform,
        nodata=0,
        band_descriptions=["B02"],
        blocksize=256,
        tags={"ACQUISITION_DATETIME": WHEN.isoformat(), "PROCESSING_BASELINE": "04.00"},
    )
    windows: list[rasterio.windows.Window] = []
    real = tiles.sources._local._source_window

    def spy(src: rasterio.io.DatasetReader, cell: GridCell) -> rasterio.windows.Window | None:
        win = real(src, cell)
        windows.append(win)
        return win

    monkeypatch.setattr(tiles.sources._local, "_source_window", spy)
    cell = GridCell("T_0505", world.crs, transform @ Affine.translation(500, 300), 20, 16)
    [info] = list_scenes(scene_dir)
    scene = read_scene(info, cell, bands=["B02"])
    [win] = windows
    assert (win.col_off, win.row_off) == (498, 298)
    assert (win.width, win.height) == (24, 20)  # the cell plus a 2-pixel margin, not 1024 x 1024
    expected = (dn[300:316, 500:520].astype(np.float32) - 1000) * np.float32(1e-4)
    np.testing.assert_allclose(scene.band("B02"), expected, atol=1e-6)


def test_cell_partly_outside_footprint(scene_dir: Path, world: World) -> None:
    write_single(scene_dir / "s.tif", world, scl=False)
    [info] = list_scenes(scene_dir)
    cell = GridCell("T", world.crs, world.transform @ Affine.translation(48, -8), 32, 32)
    assert scene_footprint_intersects(info, cell)
    scene = read_scene(info, cell, bands=["B02"])
    assert not scene.valid[:8].any()  # rows north of the scene
    assert not scene.valid[:, 16:].any()  # columns east of the scene
    assert scene.valid[8:, :16].all()
    assert np.isnan(scene.band("B02")[~scene.valid]).all()


def test_cell_outside_footprint(scene_dir: Path, world: World) -> None:
    write_single(scene_dir / "s.tif", world)
    [info] = list_scenes(scene_dir)
    cell = GridCell("T", world.crs, world.transform @ Affine.translation(200, 0), 16, 16)
    assert not scene_footprint_intersects(info, cell)
    scene = read_scene(info, cell, bands=["B02"])
    assert not scene.valid.any()
    assert scene.scl is not None
    assert not scene.scl.any()


def test_read_onto_cell_in_neighbouring_utm_zone(scene_dir: Path, world: World) -> None:
    write_single(scene_dir / "s.tif", world, scl=False)
    [info] = list_scenes(scene_dir)
    # the middle of the planted feature, seen from zone 20S (EPSG:32720)
    cx, cy = world.transform @ (30, 25)
    [x], [y] = warp_transform(world.crs, "EPSG:32720", [cx], [cy])
    cell = GridCell("20M_T", CRS.from_epsg(32720), Affine(10, 0, x - 20, 0, -10, y + 20), 4, 4)
    assert scene_footprint_intersects(info, cell)
    scene = read_scene(info, cell, bands=["B11"])
    assert scene.valid.all()
    np.testing.assert_allclose(scene.band("B11"), SEDIMENT["B11"], atol=1e-3)


def test_missing_band_names_scene_band_and_available(
    scene_dir: Path, world: World, world_cell: GridCell
) -> None:
    write_single(scene_dir / "s.tif", world, bands=("B02", "B03"))
    [info] = list_scenes(scene_dir)
    with pytest.raises(
        MissingBandError,
        match=r"scene s .*band\(s\) \['B05'\] not found; the scene has "
        r"\['B02', 'B03', 'SCL'\]",
    ):
        read_scene(info, world_cell, bands=["B02", "B05"])


@pytest.mark.parametrize(
    ("bands", "message"),
    [
        ([], "bands is empty"),
        (["B02", "SCL"], "leave out SCL"),
        (["B02", "B02"], "named twice"),
        (["B13"], "unknown band name"),
        ("B02", "got the string"),
    ],
)
def test_bad_band_request(
    scene_dir: Path, world: World, world_cell: GridCell, bands: list[str], message: str
) -> None:
    write_single(scene_dir / "s.tif", world)
    [info] = list_scenes(scene_dir)
    with pytest.raises(ValueError, match=message):
        read_scene(info, world_cell, bands=bands)


def test_truncated_after_listing(scene_dir: Path, world: World, world_cell: GridCell) -> None:
    path = write_single(scene_dir / "s.tif", world)
    [info] = list_scenes(scene_dir)
    truncate(path, keep=0.5)
    with pytest.raises(SceneFormatError, match=r"s\.tif: truncated or corrupt.*re-download it"):
        read_scene(info, world_cell, bands=["B02"])


def test_corrupt_block_fails_to_decode(scene_dir: Path, world: World, world_cell: GridCell) -> None:
    path = write_single(scene_dir / "s.tif", world)
    [info] = list_scenes(scene_dir)
    corrupt_first_block(path)
    with pytest.raises(
        SceneFormatError, match=r"s\.tif: truncated or corrupt, decoding failed .*re-download it"
    ):
        read_scene(info, world_cell, bands=["B02"])


def test_deleted_scene(scene_dir: Path, world: World, world_cell: GridCell) -> None:
    path = write_single(scene_dir / "s.tif", world)
    [info] = list_scenes(scene_dir)
    path.unlink()
    with pytest.raises(SceneNotFoundError, match=r"s\.tif: scene not found"):
        read_scene(info, world_cell, bands=["B02"])


def test_offset_tag_disagreeing_with_baseline_wins_and_is_logged(
    scene_dir: Path, world: World, world_cell: GridCell, caplog: pytest.LogCaptureFixture
) -> None:
    # DN already harmonised to the old convention (e.g. a "harmonized" export), tagged as such
    write_single(
        scene_dir / "h.tif", world, baseline="03.01", tags={"PROCESSING_BASELINE": "04.00"}
    )
    with caplog.at_level(logging.WARNING, logger="tiles.sources"):
        [info] = list_scenes(scene_dir)
    assert "BOA_ADD_OFFSET 0 differs from the -1000 of baseline 04.00" in caplog.text
    scene = read_scene(info, world_cell, bands=["B08"])
    np.testing.assert_allclose(
        scene.band("B08")[world.valid], world.reflectance["B08"][world.valid], atol=1e-6
    )


def test_offset_tag_alone_is_enough(scene_dir: Path, world: World, world_cell: GridCell) -> None:
    path = write_single(scene_dir / "o.tif", world, baseline="04.00")
    with rasterio.open(path, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
        dst.update_tags(PROCESSING_BASELINE="")
    [info] = list_scenes(scene_dir)
    assert info.processing_baseline == "unknown"
    scene = read_scene(info, world_cell, bands=["B04"])
    np.testing.assert_allclose(
        scene.band("B04")[world.valid], world.reflectance["B04"][world.valid], atol=1e-6
    )
