from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import rasterio

from models.normalization import Normalization
from training.config import RegionSplit
from training.data import (
    IGNORE_INDEX,
    LabelledImage,
    assign_splits,
    grid_windows,
    read_chip_folder,
)
from training.dataset import PatchDataset
from training.errors import DatasetError

from .conftest import BANDS


def test_chip_folder_round_trip_keeps_regions_in_one_split(chip_folder: Path) -> None:
    with (chip_folder / "chips.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows
    split_of: dict[str, set[str]] = {}
    for row in rows:
        split_of.setdefault(row["region"], set()).add(row["split"])
        assert (chip_folder / row["image"]).is_file() and (chip_folder / row["mask"]).is_file()
    assert all(len(s) == 1 for s in split_of.values())
    assert {next(iter(s)) for s in split_of.values()} == {"train", "val", "test"}
    chips = read_chip_folder(chip_folder, splits=["val"])
    assert chips and all(c.split == "val" and c.region == "region-1" for c in chips)
    assert chips[0].bands == BANDS and chips[0].image.shape == (6, 32, 32)
    with rasterio.open(chip_folder / rows[0]["image"]) as src:
        assert src.crs.to_epsg() == 32721 and src.descriptions == BANDS


def test_missing_chip_index_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="minewatch dataset build"):
        read_chip_folder(tmp_path)


def test_select_missing_band_is_named(planted_images: list[LabelledImage]) -> None:
    with pytest.raises(DatasetError, match=r"band\(s\) \['B05'\] missing"):
        planted_images[0].select(["B02", "B05"])


def test_assign_splits_by_region() -> None:
    regions = [f"r{i}" for i in range(10)]
    out = assign_splits(regions, RegionSplit(val=0.2, test=["r3"], seed=1))
    assert out["r3"] == "test"
    assert sum(v == "val" for v in out.values()) == 2
    assert assign_splits(regions, RegionSplit(val=0.2, test=["r3"], seed=1)) == out
    with pytest.raises(DatasetError, match="unknown region"):
        assign_splits(regions, RegionSplit(val=["nowhere"], test=0.0))


def test_grid_windows_cover_the_image() -> None:
    assert grid_windows((70, 64), 32, 32) == [
        (0, 0), (0, 32), (32, 0), (32, 32), (38, 0), (38, 32)
    ]
    assert grid_windows((20, 20), 32, 32) == [(0, 0)]


def test_patches_ignore_unobserved_pixels(planted_images: list[LabelledImage]) -> None:
    norm = Normalization(BANDS, (0.0,) * 6, (1.0,) * 6)
    ds = PatchDataset(planted_images, normalization=norm, patch_px=32, n_patches=20,
                      positive_share=1.0, edge_share=0.5, seed=3)
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (6, 32, 32) and y.shape == (32, 32)
        assert np.isfinite(x.numpy()).all()
        assert set(np.unique(y.numpy())) <= {0, 1, 2, IGNORE_INDEX}
    grid = PatchDataset(planted_images[:1], normalization=norm, patch_px=32)
    assert len(grid) == 4
    x, y = grid[0]
    assert (y[:4, :4] == IGNORE_INDEX).all()
