"""Tiny labelled data for the training tests: planted mining and clearing patches on forest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from training.data import DEFORESTATION, MINING, LabelledImage, write_chip_folder

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
FOREST = np.array([0.02, 0.04, 0.022, 0.31, 0.15, 0.065], dtype=np.float32)
MINE = np.array([0.10, 0.13, 0.15, 0.20, 0.28, 0.22], dtype=np.float32)
CLEARING = np.array([0.05, 0.07, 0.08, 0.22, 0.30, 0.20], dtype=np.float32)


def planted_image(name: str, region: str, *, size: int = 64, seed: int = 0) -> LabelledImage:
    """Forest with one square mine and one square clearing at random places; a NaN corner."""
    rng = np.random.default_rng(seed)
    image = FOREST[:, None, None] * (1 + 0.05 * rng.standard_normal((6, size, size)))
    label = np.zeros((size, size), dtype=np.uint8)
    for spectrum, code in ((MINE, MINING), (CLEARING, DEFORESTATION)):
        r, c = rng.integers(2, size - 14, size=2)
        image[:, r : r + 12, c : c + 12] = spectrum[:, None, None]
        label[r : r + 12, c : c + 12] = code
    image = image.astype(np.float32)
    image[:, :4, :4] = np.nan
    transform = Affine(10.0, 0.0, 500_000.0 + 10_000 * seed, 0.0, -10.0, 9_300_000.0)
    return LabelledImage(name, region, BANDS, image, label, CRS.from_epsg(32721), transform)


@pytest.fixture
def planted_images() -> list[LabelledImage]:
    return [planted_image(f"img{i}", f"region-{i % 3}", seed=i) for i in range(6)]


@pytest.fixture
def chip_folder(tmp_path: Path, planted_images: list[LabelledImage]) -> Path:
    folder = tmp_path / "chips"
    splits = {"region-0": "train", "region-1": "val", "region-2": "test"}
    write_chip_folder(planted_images, folder, splits=splits, chip_size_px=32)
    return folder


TINY_OPTIONS = {"widths": [4, 8], "blocks": [1, 1]}
