"""Per-period composites: median and best-pixel, clear counts, all-cloud periods, COG output."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from aoi.grid import GridCell
from tests.tiles.conftest import (
    ALL_BANDS,
    FOREST,
    Q1_2024,
    SEDIMENT,
    WHEN,
    World,
    make_scene,
    write_folder,
    write_single,
)
from tiles.cog import is_cog
from tiles.composite import Composite, composite_period, crop_composite, write_composite
from tiles.errors import CloudyPeriodWarning, MissingBandError
from tiles.scene import Scene
from tiles.sources import list_scenes, read_scene

PLANTED = (2, 3)  # a pixel of the 6 x 8 cell


def _day(n: int) -> dt.datetime:
    return WHEN + dt.timedelta(days=n)


def _planted_cloud(cell: GridCell) -> np.ndarray:
    scl = np.full(cell.shape, 4, dtype=np.uint8)
    scl[PLANTED] = 9
    return scl


@pytest.fixture
def four_scenes(small_cell: GridCell) -> list[Scene]:
    """Blue 0.1, 0.2, 0.3, 0.9; the 0.9 scene is cloudy on the planted pixel only."""
    return [
        make_scene(small_cell, {"B02": 0.1, "B04": 0.5}, scene_id="s1", when=_day(0)),
        make_scene(small_cell, {"B02": 0.2, "B04": 0.4}, scene_id="s2", when=_day(5)),
        make_scene(small_cell, {"B02": 0.3, "B04": 0.3}, scene_id="s3", when=_day(10)),
        make_scene(
            small_cell,
            {"B02": 0.9, "B04": 0.2},
            scene_id="s4",
            when=_day(15),
            scl=_planted_cloud(small_cell),
        ),
    ]


def test_median_on_planted_pixel_and_clear_count(
    small_cell: GridCell, four_scenes: list[Scene]
) -> None:
    comp = composite_period(four_scenes, cell=small_cell, period=Q1_2024, bands=["B02", "B04"])
    assert comp.bands == ("B02", "B04")
    assert comp.data.dtype == np.float32
    assert comp.data.shape == (2, 6, 8)
    # the planted pixel: the cloudy 0.9 observation is left out -> median(0.1, 0.2, 0.3)
    np.testing.assert_allclose(comp.data[:, PLANTED[0], PLANTED[1]], [0.2, 0.4], atol=1e-7)
    # elsewhere: median of four
    np.testing.assert_allclose(comp.data[:, 0, 0], [0.25, 0.35], atol=1e-7)
    assert comp.clear_count.dtype == np.uint16
    assert comp.clear_count[PLANTED] == 3
    assert (np.delete(comp.clear_count.ravel(), PLANTED[0] * 8 + PLANTED[1]) == 4).all()
    assert comp.scene_ids == ("s1", "s2", "s3", "s4")
    assert comp.observed.all()
    assert comp.observed_fraction == 1.0
    assert comp.method == "median"


def test_scenes_are_streamed(small_cell: GridCell, four_scenes: list[Scene]) -> None:
    consumed: list[str] = []

    def stream() -> Iterator[Scene]:
        for s in four_scenes:
            consumed.append(s.info.scene_id)
            yield s

    comp = composite_period(stream(), cell=small_cell, period=Q1_2024, bands=["B02"])
    assert consumed == ["s1", "s2", "s3", "s4"]
    assert comp.clear_count[0, 0] == 4


def test_invalid_pixels_and_cloudy_scenes_do_not_count(small_cell: GridCell) -> None:
    valid = np.ones(small_cell.shape, dtype=bool)
    valid[:, :2] = False  # swath edge
    scenes = [
        make_scene(small_cell, {"B02": 0.1}, scene_id="edge", valid=valid, when=_day(0)),
        make_scene(small_cell, {"B02": 0.3}, scene_id="cloudy", scl=9, when=_day(1)),
        make_scene(small_cell, {"B02": 0.5}, scene_id="clear", when=_day(2)),
    ]
    comp = composite_period(scenes, cell=small_cell, period=Q1_2024, bands=["B02"])
    assert comp.scene_ids == ("edge", "clear")  # "cloudy" contributed no clear pixel
    assert (comp.clear_count[:, :2] == 1).all()
    assert (comp.clear_count[:, 2:] == 2).all()
    np.testing.assert_allclose(comp.data[0, :, :2], 0.5)
    np.testing.assert_allclose(comp.data[0, :, 2:], 0.3)


def test_partly_observed_is_nan_where_not_seen(small_cell: GridCell) -> None:
    scl = np.full(small_cell.shape, 4, dtype=np.uint8)
    scl[:3] = 8
    comp = composite_period(
        [make_scene(small_cell, {"B02": 0.1}, scene_id="s", scl=scl)],
        cell=small_cell,
        period=Q1_2024,
        bands=["B02"],
    )
    assert np.isnan(comp.data[0, :3]).all()
    assert (comp.clear_count[:3] == 0).all()
    assert comp.observed_fraction == 0.5


def test_dilation_reaches_the_composite(small_cell: GridCell) -> None:
    comp = composite_period(
        [make_scene(small_cell, {"B02": 0.1}, scene_id="s", scl=_planted_cloud(small_cell))],
        cell=small_cell,
        period=Q1_2024,
        bands=["B02"],
        dilation_px=1,
    )
    assert int((comp.clear_count == 0).sum()) == 5  # the planted pixel and its 4 neighbours


def test_all_cloud_period_warns_not_observed(small_cell: GridCell) -> None:
    scenes = [
        make_scene(small_cell, {"B02": 0.1}, scene_id=f"c{i}", scl=cls, when=_day(i))
        for i, cls in enumerate((8, 9, 10, 3))
    ]
    with pytest.warns(
        CloudyPeriodWarning,
        match=r"tile 21MXT_0202, period 2024Q1: not observed: no clear observation in 4 "
        r"scene\(s\).*never as no change",
    ):
        comp = composite_period(scenes, cell=small_cell, period=Q1_2024, bands=["B02"])
    assert np.isnan(comp.data).all()
    assert (comp.clear_count == 0).all()
    assert comp.observed_fraction == 0.0
    assert not comp.observed.any()
    assert comp.scene_ids == ()


def test_no_scene_at_all_warns_not_observed(small_cell: GridCell) -> None:
    with pytest.warns(CloudyPeriodWarning, match=r"not observed: no clear observation in 0 scene"):
        comp = composite_period([], cell=small_cell, period=Q1_2024, bands=["B02", "B03"])
    assert comp.data.shape == (2, 6, 8)
    assert np.isnan(comp.data).all()


def test_best_takes_the_lowest_blue_clear_observation(
    small_cell: GridCell, four_scenes: list[Scene]
) -> None:
    hazy_low_blue = make_scene(
        small_cell,
        {"B02": 0.05, "B04": 0.9},
        scene_id="s0_cirrus",
        when=_day(1),
        scl=_planted_cloud(small_cell),
    )
    comp = composite_period(
        [*four_scenes, hazy_low_blue],
        cell=small_cell,
        period=Q1_2024,
        bands=["B04"],
        method="best",
    )
    assert comp.method == "best"
    np.testing.assert_allclose(comp.data[0, PLANTED[0], PLANTED[1]], 0.5)  # s1's spectrum
    np.testing.assert_allclose(comp.data[0, 0, 0], 0.9)  # s0 is clear there and bluest
    assert comp.clear_count[PLANTED] == 3


def test_best_needs_blue(small_cell: GridCell) -> None:
    s = make_scene(small_cell, {"B04": 0.1}, scene_id="noblue")
    with pytest.raises(MissingBandError, match=r"scene noblue: band 'B02' not read"):
        composite_period([s], cell=small_cell, period=Q1_2024, bands=["B04"], method="best")


def test_scene_outside_period_is_refused(small_cell: GridCell) -> None:
    s = make_scene(
        small_cell,
        {"B02": 0.1},
        scene_id="april",
        when=dt.datetime(2024, 4, 1, tzinfo=dt.timezone.utc),
    )
    with pytest.raises(
        ValueError, match=r"scene april acquired 2024-04-01.* outside period 2024Q1"
    ):
        composite_period([s], cell=small_cell, period=Q1_2024, bands=["B02"])


def test_scene_given_twice_is_refused(small_cell: GridCell) -> None:
    s = make_scene(small_cell, {"B02": 0.1}, scene_id="dup")
    with pytest.raises(ValueError, match="scene dup given twice"):
        composite_period([s, s], cell=small_cell, period=Q1_2024, bands=["B02"])


def test_scene_on_another_grid_is_refused(small_cell: GridCell) -> None:
    other = GridCell("X", small_cell.crs, small_cell.transform @ Affine.translation(1, 0), 8, 6)
    s = make_scene(other, {"B02": 0.1}, scene_id="shifted")
    with pytest.raises(ValueError, match=r"scene shifted: grid .* differs from cell 21MXT_0202"):
        composite_period([s], cell=small_cell, period=Q1_2024, bands=["B02"])


def test_missing_band_is_refused(small_cell: GridCell) -> None:
    s = make_scene(small_cell, {"B02": 0.1}, scene_id="s")
    with pytest.raises(MissingBandError, match=r"scene s: band 'B11' not read; have \['B02'\]"):
        composite_period([s], cell=small_cell, period=Q1_2024, bands=["B02", "B11"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "mean"}, r"composite method 'mean': expected one of \['median', 'best'\]"),
        ({"bands": ["B02", "NIR"]}, r"unknown band name\(s\) \['NIR'\]"),
        ({"bands": []}, "bands is empty"),
        ({"masked_scl": (99,)}, r"unknown SCL class\(es\) \[99\]"),
        ({"dilation_px": -2}, "dilation_px -2 must be >= 0"),
    ],
)
def test_bad_options(small_cell: GridCell, options: dict[str, object], message: str) -> None:
    kwargs: dict[str, object] = {"cell": small_cell, "period": Q1_2024, "bands": ["B02"]}
    kwargs.update(options)
    with pytest.raises(ValueError, match=message):
        composite_period([], **kwargs)  # type: ignore[arg-type]


def test_scenes_without_scl_logged_once_per_period(
    small_cell: GridCell, caplog: pytest.LogCaptureFixture
) -> None:
    scenes = [
        make_scene(small_cell, {"B02": 0.1}, scene_id=f"n{i}", scl=None, when=_day(i))
        for i in range(3)
    ]
    with caplog.at_level(logging.WARNING):
        composite_period(scenes, cell=small_cell, period=Q1_2024, bands=["B02"], cloud_mask="scl")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "21MXT_0202 2024Q1: 3 of 3 scene(s) have no SCL band, so no cloud mask was applied to "
        "them (cloud_mask scl; 'auto' masks them with the cloud detector): n0, n1, n2"
    ]


def test_composite_checks_shapes(small_cell: GridCell) -> None:
    with pytest.raises(ValueError, match=r"data shape \(1, 6, 7\) != \(1, 6, 8\)"):
        Composite(
            small_cell,
            Q1_2024,
            ("B02",),
            np.zeros((1, 6, 7), np.float32),
            np.zeros((6, 8), np.uint16),
            (),
        )
    with pytest.raises(ValueError, match="dtypes float64/uint16, expected float32/uint16"):
        Composite(
            small_cell,
            Q1_2024,
            ("B02",),
            np.zeros((1, 6, 8)),
            np.zeros((6, 8), np.uint16),
            (),
        )


def test_write_composite_cogs(
    tmp_path: Path, small_cell: GridCell, four_scenes: list[Scene]
) -> None:
    scl = np.full(small_cell.shape, 4, dtype=np.uint8)
    scl[0] = 9
    cloudy_row = [make_scene(small_cell, {"B02": 0.2, "B04": 0.1}, scene_id="x", scl=scl)]
    comp = composite_period(cloudy_row, cell=small_cell, period=Q1_2024, bands=["B02", "B04"])
    paths = write_composite(comp, tmp_path / "out")
    assert paths == {
        "composite": tmp_path / "out" / "21MXT_0202_2024Q1_composite.tif",
        "clear_count": tmp_path / "out" / "21MXT_0202_2024Q1_clear_count.tif",
    }
    assert is_cog(paths["composite"])
    assert is_cog(paths["clear_count"])
    with rasterio.open(paths["composite"]) as src:
        assert src.descriptions == ("B02", "B04")
        assert src.dtypes == ("float32", "float32")
        assert src.nodata is not None and np.isnan(src.nodata)
        assert src.crs == small_cell.crs
        assert src.transform == small_cell.transform
        np.testing.assert_array_equal(src.read(), comp.data)
        tags = src.tags()
    assert tags["TILE_ID"] == "21MXT_0202"
    assert (tags["PERIOD_START"], tags["PERIOD_END"]) == ("2024-01-01", "2024-03-31")
    assert tags["SCENE_IDS"] == "x"
    with rasterio.open(paths["clear_count"]) as src:
        assert src.dtypes == ("uint16",)
        counts = src.read(1)
    np.testing.assert_array_equal(counts, comp.clear_count)
    assert (counts[0] == 0).all()
    assert (counts[1:] == 1).all()


def test_local_scenes_of_mixed_baselines_composite_to_the_surface(
    scene_dir: Path, world: World, world_cell: GridCell
) -> None:
    """End to end: 03.01 file, 04.00 file and 04.00 band folder -> one harmonised median."""
    write_single(scene_dir / "a_0301.tif", world, baseline="03.01", when=_day(0))
    write_single(scene_dir / "b_0400.tif", world, baseline="04.00", when=_day(5))
    write_folder(scene_dir / "c_0400", world, baseline="04.00", when=_day(10))
    infos = list_scenes(scene_dir)
    assert {i.processing_baseline for i in infos} == {"03.01", "04.00"}
    comp = composite_period(
        (read_scene(i, world_cell, bands=ALL_BANDS) for i in infos),
        cell=world_cell,
        period=Q1_2024,
        bands=ALL_BANDS,
    )
    seen = world.valid & ~world.cloud & ~world.shadow
    # cloud, shadow and swath edge lie on whole 20 m pixels, so the 20 m SCL masks them exactly
    assert (comp.clear_count[seen] == 3).all()
    assert (comp.clear_count[~seen] == 0).all()
    for i, band in enumerate(ALL_BANDS):
        inner = world.feature.copy()
        inner[20, :] = inner[29, :] = False
        inner[:, 24] = inner[:, 35] = False  # bilinear 20 m edges of the folder scene
        np.testing.assert_allclose(comp.data[i][inner], SEDIMENT[band], atol=1e-6)
        np.testing.assert_allclose(comp.data[i][10:16, 10:16], FOREST[band], atol=1e-6)
    assert np.isnan(comp.data[:, ~world.valid]).all()
    assert comp.scene_ids == ("a_0301", "b_0400", "c_0400")


def test_core_and_crop_give_the_chip_of_a_composite_with_a_halo(small_cell: GridCell) -> None:
    """Composited on the chip grown by 2 px, then cropped: the chip's pixels, counts and grid; a
    scene clear only in the halo is not one of the chip's scenes, and the not-observed warning
    speaks of the chip."""
    grown = small_cell.with_halo(2)
    halo_only = np.zeros(grown.shape, dtype=bool)
    halo_only[:2] = True  # the two rows above the chip
    scenes = [
        make_scene(grown, {"B02": 0.1}, scene_id="s1", when=_day(0), valid=halo_only),
        make_scene(grown, {"B02": 0.3}, scene_id="s2", when=_day(5), valid=halo_only),
    ]
    with pytest.warns(CloudyPeriodWarning, match=r"tile 21MXT_0202, period 2024Q1: not observed"):
        comp = composite_period(scenes, cell=grown, period=Q1_2024, bands=["B02"], core=small_cell)
    assert comp.cell == grown and comp.observed[:2].all()
    assert comp.scene_ids == ()  # nothing clear on the chip itself

    scenes.append(make_scene(grown, {"B02": 0.2}, scene_id="s3", when=_day(9)))
    comp = composite_period(scenes, cell=grown, period=Q1_2024, bands=["B02"], core=small_cell)
    assert comp.scene_ids == ("s3",)
    chip = crop_composite(comp, small_cell)
    assert chip.cell == small_cell and chip.data.shape == (1, *small_cell.shape)
    assert chip.clear_count.shape == small_cell.shape and (chip.clear_count == 1).all()
    np.testing.assert_allclose(chip.data, 0.2)
    assert chip.observed_fraction == 1.0 and chip.scene_ids == ("s3",)
    assert crop_composite(chip, small_cell) is chip
    with pytest.raises(ValueError, match="reaches outside"):
        crop_composite(chip, grown)
