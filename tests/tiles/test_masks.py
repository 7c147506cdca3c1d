"""Clear-sky masks from the SCL: masked classes, dilation of cloud and shadow, no-SCL fallback."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from aoi.grid import GridCell
from tests.tiles.conftest import World, make_scene
from tiles.masks import clear_mask, disk
from tiles.scene import Scene


@pytest.fixture
def scene(world: World, world_cell: GridCell) -> Scene:
    return make_scene(
        world_cell,
        {"B02": world.reflectance["B02"]},
        scene_id="s",
        scl=world.scl,
        valid=world.valid,
    )


def test_clouds_shadows_and_nodata_are_not_clear(scene: Scene, world: World) -> None:
    clear = clear_mask(scene)
    assert clear.dtype == bool
    assert clear.shape == world.shape
    np.testing.assert_array_equal(clear, world.valid & ~world.cloud & ~world.shadow)
    assert clear[world.feature].all()  # bare sediment (SCL 5) is clear


def test_dilation_grows_cloud_and_shadow_by_a_disk(scene: Scene, world: World) -> None:
    clear = clear_mask(scene, dilation_px=1)
    # cloud is rows/cols 44:50: a radius-1 disk grows its edges, not its corners
    assert not clear[43, 45]
    assert not clear[50, 49]
    assert clear[43, 43]
    assert clear[42, 45]
    assert not clear[51, 37]  # shadow rows 52:56 grown north
    assert clear[10, 4]  # no-data (class 0) is exact: its neighbour stays clear
    assert int((~clear & world.valid).sum()) == (36 + 4 * 6) + (16 + 4 * 4)

    clear2 = clear_mask(scene, dilation_px=2)
    assert not clear2[42, 45]
    assert not clear2[43, 43]  # distance sqrt(2) from the cloud corner
    assert clear2[42, 43]  # distance sqrt(5) > 2
    assert (clear2 <= clear).all()


def test_masked_classes_are_configurable(scene: Scene, world: World) -> None:
    clear = clear_mask(scene, masked_scl=(0, 5, 9))
    assert not clear[world.feature].any()
    assert clear[world.shadow].all()  # shadow no longer masked
    assert not clear[world.cloud].any()


def test_dilation_only_grows_cloud_and_shadow_classes(world: World, world_cell: GridCell) -> None:
    scl = np.full(world.shape, 4, dtype=np.uint8)
    scl[10:12, 10:12] = 6  # water, masked here but never grown
    s = make_scene(world_cell, {"B02": 0.1}, scene_id="w", scl=scl)
    clear = clear_mask(s, masked_scl=(6,), dilation_px=3)
    assert int((~clear).sum()) == 4


def test_without_scl_valid_only_and_logged(
    world: World, world_cell: GridCell, caplog: pytest.LogCaptureFixture
) -> None:
    s = make_scene(world_cell, {"B02": 0.1}, scene_id="noscl", scl=None, valid=world.valid)
    with caplog.at_level(logging.WARNING, logger="tiles.masks"):
        clear = clear_mask(s, dilation_px=2, cloud_mask="scl")
    np.testing.assert_array_equal(clear, world.valid)
    assert clear is not s.valid
    assert [r.getMessage() for r in caplog.records] == [
        "scene noscl has no SCL band: no cloud mask applied, only the valid-data mask"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tiles.masks"):
        clear_mask(s, log_missing_scl=False, cloud_mask="scl")
    assert not caplog.records


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dilation_px": -1}, "dilation_px -1 must be >= 0"),
        ({"dilation_px": 1.5}, "dilation_px 1.5 must be an integer"),
        ({"masked_scl": (3, 12)}, r"unknown SCL class\(es\) \[12\]"),
    ],
)
def test_bad_options(scene: Scene, options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        clear_mask(scene, **options)  # type: ignore[arg-type]


def test_disk() -> None:
    np.testing.assert_array_equal(disk(0), [[True]])
    np.testing.assert_array_equal(
        disk(1), [[False, True, False], [True, True, True], [False, True, False]]
    )
    assert disk(3).shape == (7, 7)
    with pytest.raises(ValueError, match="disk radius -1 must be >= 0"):
        disk(-1)
