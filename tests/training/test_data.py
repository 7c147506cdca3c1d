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


def _l1c_copy(scene: Path, out: Path) -> None:
    """An L1C version of a synthetic L2A scene: top-of-atmosphere reflectance = surface +
    the measured path-radiance offsets, as digital numbers of baseline 05.10 (RADIO_ADD_OFFSET
    -1000), no SCL (L1C has none)."""
    from tiles.radiometry import TOA_OFFSETS

    with rasterio.open(scene) as src:
        names = [d for d in src.descriptions if d != "SCL"]
        dn = src.read(list(range(1, len(names) + 1))).astype(np.float64)
        tags = {k: v for k, v in src.tags().items() if k != "BOA_ADD_OFFSET"}
        profile = src.profile | {"count": len(names)}
    toa = (dn - 1000) / 1e4 + np.array([TOA_OFFSETS.get(b, 0.0) for b in names])[:, None, None]
    out_dn = np.where(dn == 0, 0, np.round(toa * 1e4 + 1000)).astype(np.uint16)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(out_dn)
        dst.descriptions = names
        dst.update_tags(**tags, PROCESSING_LEVEL="L1C", RADIO_ADD_OFFSET="-1000")


def test_labelled_l1c_scenes_are_read_as_surface_reflectance(tmp_path: Path) -> None:
    """Scenes + label polygons (data kind 'scenes'): L1C scenes are brought to surface-like
    reflectance with the offsets the real chips are converted with (and a checkpoint stores),
    so they give the L2A scenes' images; read as they are (a network trained on L1C), they do
    not."""
    from tiles.synthetic import WorldSpec, generate_world
    from training.config import CompositeOptions, ScenesData
    from training.data import load_labelled_images

    spec = WorldSpec(size_px=384, seed=5, n_mining_sites=2, n_clearings=1, cloud_cover=0.0,
                     periods=["2024Q2", "2024Q3"], acquisitions_per_period=2, n_quarries=0,
                     n_fish_pond_groups=0)  # fmt: skip
    generate_world(tmp_path / "world", spec)
    l1c_dir = tmp_path / "l1c"
    l1c_dir.mkdir()
    for scene in sorted((tmp_path / "world" / "scenes").glob("*.tif")):
        _l1c_copy(scene, l1c_dir / scene.name.replace("MSIL2A", "MSIL1C"))
    bands = ("B02", "B03", "B04", "B08", "B11", "B12")

    def images(folder: Path, **kw: object) -> LabelledImage:
        data = ScenesData(kind="scenes", scenes=folder, labels=tmp_path / "world" / "truth" /
                          "sites.geojson", period_start="2024-07-01", period_end="2024-09-30",
                          margin_m=200, split=RegionSplit(val=0.0, test=0.0))  # fmt: skip
        (image,) = load_labelled_images(data, bands=bands, composite=CompositeOptions(), **kw)
        return image

    surface, l1c, as_is = images(tmp_path / "world" / "scenes"), images(l1c_dir), images(
        l1c_dir, l1c_offsets={})
    assert (l1c.label == surface.label).all() and (surface.label == 1).any()
    both = np.isfinite(l1c.image).all(axis=0) & np.isfinite(surface.image).all(axis=0)
    assert both.mean() > 0.9  # the L1C scenes are masked by the cloud detector, not SCL
    np.testing.assert_allclose(l1c.image[:, both], surface.image[:, both], atol=2e-4)
    blue = bands.index("B02")
    assert np.nanmedian(as_is.image[blue] - surface.image[blue]) == pytest.approx(0.074, abs=1e-3)
