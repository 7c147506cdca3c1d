"""polygonize_mask: areas, confidences and filters on planted regions of known size."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from detection.errors import DetectionError
from detection.sites import polygonize_mask
from tests.detection.conftest import UTM, X0, Y0

TRANSFORM = Affine(10.0, 0.0, X0, 0.0, -10.0, Y0)  # 10 m pixels, upper-left at (X0, Y0)


def _planted() -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((64, 64), dtype=bool)
    prob = np.full((64, 64), 0.1, dtype=np.float32)
    mask[10:30, 10:30] = True  # 20 x 20 pixels = 200 m x 200 m = 4 ha
    prob[10:30, 10:30] = 0.8
    prob[10:20, 10:30] = 0.6  # half at 0.6, half at 0.8 -> mean 0.7
    prob[10, 10] = np.nan  # not observed: ignored by the mean
    mask[50:52, 50:52] = True  # 4 pixels = 0.04 ha
    prob[50:52, 50:52] = 0.9
    return mask, prob


def test_planted_square_has_known_area_confidence_and_pixels() -> None:
    mask, prob = _planted()
    gdf = polygonize_mask(mask, transform=TRANSFORM, crs=UTM, min_area_ha=0.0, probabilities=prob)
    assert list(gdf.columns) == ["area_ha", "confidence", "pixel_count", "geometry"]
    assert len(gdf) == 2
    big = gdf.iloc[0]
    assert big.pixel_count == 400
    # Equal-area (EPSG:6933) area of a 200 m UTM square: 4 ha within the UTM scale error.
    assert big.area_ha == pytest.approx(4.0, rel=2e-3)
    expected = (199 * 0.6 + 200 * 0.8) / 399  # the 0.6 pixel at (10, 10) is NaN
    assert big.confidence == pytest.approx(expected, rel=1e-6)
    assert big.geometry.bounds == pytest.approx((X0 + 100, Y0 - 300, X0 + 300, Y0 - 100))
    assert gdf.crs.to_epsg() == 32721


def test_min_area_drops_small_regions() -> None:
    mask, prob = _planted()
    gdf = polygonize_mask(mask, transform=TRANSFORM, crs=UTM, min_area_ha=0.5, probabilities=prob)
    assert len(gdf) == 1 and gdf.iloc[0].pixel_count == 400


def test_confidence_is_nan_without_probabilities_or_finite_pixels() -> None:
    mask, _ = _planted()
    gdf = polygonize_mask(mask, transform=TRANSFORM, crs=UTM, min_area_ha=0.0)
    assert gdf["confidence"].isna().all()
    prob = np.full(mask.shape, np.nan)
    gdf = polygonize_mask(mask, transform=TRANSFORM, crs=UTM, min_area_ha=0.0, probabilities=prob)
    assert gdf["confidence"].isna().all()


def test_connectivity_joins_diagonal_pixels_only_at_8() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[2, 2] = mask[3, 3] = True
    eight = polygonize_mask(mask, transform=TRANSFORM, crs=UTM, min_area_ha=0.0)
    four = polygonize_mask(mask, transform=TRANSFORM, crs=UTM, min_area_ha=0.0, connectivity=4)
    assert len(eight) == 1 and eight.iloc[0].pixel_count == 2
    assert eight.geometry.iloc[0].geom_type == "MultiPolygon" and eight.geometry.is_valid.all()
    assert len(four) == 2


def test_region_with_hole_keeps_the_hole() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[1:9, 1:9] = True
    mask[4:6, 4:6] = False
    gdf = polygonize_mask(mask, transform=TRANSFORM, crs=UTM, min_area_ha=0.0)
    assert len(gdf) == 1 and len(gdf.geometry.iloc[0].interiors) == 1
    assert gdf.iloc[0].pixel_count == 60


def test_empty_mask_gives_empty_table_with_columns() -> None:
    gdf = polygonize_mask(np.zeros((5, 5), bool), transform=TRANSFORM, crs=UTM, min_area_ha=0.0)
    assert gdf.empty and list(gdf.columns) == ["area_ha", "confidence", "pixel_count", "geometry"]
    assert gdf.crs.to_epsg() == 32721


def test_simplify_keeps_area_and_reduces_vertices() -> None:
    yy, xx = np.mgrid[0:100, 0:100]
    mask = (xx - 50) ** 2 + (yy - 50) ** 2 < 40**2  # a pixelated disc
    exact = polygonize_mask(mask, transform=TRANSFORM, crs=UTM, min_area_ha=0.0)
    simple = polygonize_mask(mask, transform=TRANSFORM, crs=UTM, min_area_ha=0.0, simplify_m=15)
    assert simple.iloc[0].area_ha == exact.iloc[0].area_ha
    assert len(simple.geometry.iloc[0].exterior.coords) < len(
        exact.geometry.iloc[0].exterior.coords
    )
    assert simple.geometry.is_valid.all()


def test_many_regions_are_fast() -> None:
    mask = np.zeros((1000, 1000), dtype=bool)
    mask[::10, ::10] = True  # 10,000 single-pixel regions
    mask[1::10, ::10] = True
    gdf = polygonize_mask(mask, transform=TRANSFORM, crs=UTM, min_area_ha=0.0)
    assert len(gdf) == 10_000 and (gdf["pixel_count"] == 2).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask": np.zeros((2, 2, 2), bool)}, "expected a 2-D"),
        ({"mask": np.zeros((2, 2), float)}, "expected bool or integer"),
        ({"connectivity": 6}, "connectivity 6"),
        ({"min_area_ha": -1.0}, "min_area_ha -1.0"),
        ({"simplify_m": -2.0}, "simplify_m -2.0"),
        ({"crs": None}, "crs is None"),
        ({"crs": "EPSG:999999"}, "invalid crs"),
        ({"transform": (10, 0, 0, 0, -10, 0)}, "expected affine.Affine"),
        ({"probabilities": np.zeros((3, 3))}, r"probabilities shape \(3, 3\) does not match"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(kwargs: dict, message: str) -> None:
    args: dict = {
        "mask": np.ones((2, 2), bool),
        "transform": TRANSFORM,
        "crs": UTM,
        "min_area_ha": 0.0,
    }
    args.update(kwargs)
    mask = args.pop("mask")
    with pytest.raises(DetectionError, match=message):
        polygonize_mask(mask, **args)
