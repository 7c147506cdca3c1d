"""Digital numbers to reflectance, with the baseline 04.00 offset applied exactly once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

from tiles.errors import SceneFormatError
from tiles.radiometry import (
    boa_add_offset,
    dn_to_reflectance,
    file_radiometry,
    format_baseline,
    parse_baseline,
    processing_level,
    toa_to_surface,
)


@pytest.mark.parametrize(
    ("baseline", "offset"),
    [
        ("04.00", -1000.0),
        ("N0400", -1000.0),
        ("4.0", -1000.0),
        ("4", -1000.0),
        ("05.11", -1000.0),
        ("n0509", -1000.0),
        ("03.01", 0.0),
        ("N0301", 0.0),
        ("2.08", 0.0),
        (" 03.00 ", 0.0),
    ],
)
def test_boa_add_offset_by_baseline(baseline: str, offset: float) -> None:
    assert boa_add_offset(baseline) == offset


@pytest.mark.parametrize("bad", ["", "x4", "04.00.1", "N04", "baseline 4", "-4.0"])
def test_boa_add_offset_rejects_bad_value(bad: str) -> None:
    with pytest.raises(SceneFormatError, match=f"processing baseline {bad!r} is not understood"):
        boa_add_offset(bad)


def test_parse_and_format_baseline() -> None:
    assert parse_baseline("N0509") == (5, 9)
    assert format_baseline("4.0") == "04.00"
    assert format_baseline("N0301") == "03.01"


def test_dn_to_reflectance_formula_and_nodata() -> None:
    dn = np.array([[0, 1000, 1500], [11000, 500, 65535]], dtype=np.uint16)
    refl = dn_to_reflectance(dn, offset=-1000.0)
    assert refl.dtype == np.float32
    assert np.isnan(refl[0, 0])  # nodata
    np.testing.assert_allclose(refl[0, 1:], [0.0, 0.05], atol=1e-7)
    np.testing.assert_allclose(refl[1, 0], 1.0, atol=1e-6)
    assert refl[1, 1] == 0.0  # negative (dark water below the offset) clipped to 0
    np.testing.assert_allclose(refl[1, 2], 6.4535, rtol=1e-6)


def test_dn_to_reflectance_without_nodata_keeps_zero() -> None:
    refl = dn_to_reflectance(np.array([0, 100], dtype=np.uint16), offset=0.0, nodata=None)
    np.testing.assert_allclose(refl, [0.0, 0.01], atol=1e-7)


def test_same_surface_two_baselines_same_reflectance() -> None:
    """RELIABILITY row 11: a 03.01 and a 04.00 product of one surface agree after conversion."""
    surface = np.array([0.0123, 0.05, 0.3, 0.8], dtype=np.float32)
    dn_0301 = np.round(surface * 10_000).astype(np.uint16)
    dn_0400 = np.round(surface * 10_000 + 1000).astype(np.uint16)
    a = dn_to_reflectance(dn_0301, offset=boa_add_offset("03.01"))
    b = dn_to_reflectance(dn_0400, offset=boa_add_offset("04.00"))
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(b, surface, atol=1e-6)


@pytest.mark.parametrize(("scale", "offset"), [(0.0, 0.0), (-1e-4, 0.0), (1e-4, float("nan"))])
def test_dn_to_reflectance_rejects_bad_scale_offset(scale: float, offset: float) -> None:
    with pytest.raises(ValueError, match=r"must be a (positive|finite) number"):
        dn_to_reflectance(np.zeros(2, dtype=np.uint16), offset=offset, scale=scale)


def _geotiff(
    path: Path,
    dtype: str,
    *,
    tags: dict[str, str] | None = None,
    scales: tuple[float, float] | None = None,
    offsets: tuple[float, float] | None = None,
    nodata: float | None = None,
) -> Path:
    """A 2-band 4 x 4 GeoTIFF in UTM 21S with the radiometry a source would give it."""
    profile = {
        "driver": "GTiff", "width": 4, "height": 4, "count": 2, "dtype": dtype,
        "crs": "EPSG:32721", "transform": Affine(10, 0, 600000, 0, -10, 9300000),
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((2, 4, 4), 1500, dtype=dtype))
        dst.update_tags(**(tags or {}))
        if scales is not None:
            dst.scales = scales
        if offsets is not None:
            dst.offsets = offsets
    return path


@pytest.mark.parametrize(
    ("dtype", "kwargs", "offset", "scale", "nodata"),
    [
        ("float32", {"tags": {"BOA_ADD_OFFSET": "-1000"}}, 0.0, 1.0, None),
        ("uint16", {"scales": (1e-4, 1e-4), "offsets": (-0.1, -0.1)}, -1000.0, 1e-4, 0.0),
        ("uint16", {"tags": {"REFLECTANCE_SCALE": "0.0001"}, "nodata": 0}, 0.0, 1e-4, 0.0),
        ("uint16", {"tags": {"BOA_ADD_OFFSET": "-1000", "PROCESSING_BASELINE": "03.00"}},
         -1000.0, 1e-4, 0.0),
        ("uint16", {"tags": {"PROCESSING_BASELINE": "04.00"}}, -1000.0, 1e-4, 0.0),
        ("uint16", {"tags": {"PROCESSING_BASELINE": "03.01"}}, 0.0, 1e-4, 0.0),
        ("uint16", {"tags": {"PROCESSING_LEVEL": "L1C", "RADIO_ADD_OFFSET": "-1000"}},
         -1000.0, 1e-4, 0.0),
        ("uint16", {"tags": {"PROCESSING_LEVEL": "L1C", "PROCESSING_BASELINE": "N0500"}},
         -1000.0, 1e-4, 0.0),
    ],
)
def test_file_radiometry_rules(
    tmp_path: Path,
    dtype: str,
    kwargs: dict[str, Any],
    offset: float,
    scale: float,
    nodata: float | None,
) -> None:
    path = _geotiff(tmp_path / "s.tif", dtype, **kwargs)
    with rasterio.open(path) as src:
        rule = file_radiometry(src, [2, 1])
    assert rule.offset == pytest.approx((offset, offset))
    assert rule.scale == pytest.approx((scale, scale))
    assert rule.nodata == nodata
    # The rule and dn_to_reflectance agree: DN 1500 is 0.05 reflectance with the -1000 offset.
    expected = max((1500 + offset) * scale, 0.0) if dtype == "uint16" else 1500.0
    got = dn_to_reflectance(np.array([1500]), offset=rule.offset[0], scale=rule.scale[0])
    assert got[0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({}, "neither BOA_ADD_OFFSET, PROCESSING_BASELINE, REFLECTANCE_SCALE nor a GDAL"),
        ({"PROCESSING_LEVEL": "L1C"}, "neither RADIO_ADD_OFFSET, PROCESSING_BASELINE"),
        ({"BOA_ADD_OFFSET": "minus"}, "tag BOA_ADD_OFFSET='minus' is not a finite number"),
        ({"PROCESSING_LEVEL": "L3"}, "tag PROCESSING_LEVEL 'L3' is not a Sentinel-2 processing"),
        ({"PROCESSING_BASELINE": "x4"}, "processing baseline 'x4' is not understood"),
    ],
)
def test_file_radiometry_refuses_an_unstated_offset(
    tmp_path: Path, tags: dict[str, str], message: str
) -> None:
    path = _geotiff(tmp_path / "s.tif", "uint16", tags=tags)
    with rasterio.open(path) as src, pytest.raises(SceneFormatError, match=re.escape(message)):
        file_radiometry(src, [1, 2])
    zero = _geotiff(tmp_path / "z.tif", "uint16", scales=(0.0, 1.0), offsets=(0.0, 0.0))
    with rasterio.open(zero) as src, pytest.raises(SceneFormatError, match="GDAL scale of 0"):
        file_radiometry(src, [1, 2])


@pytest.mark.parametrize(
    ("value", "level"),
    [(None, "L2A"), ("", "L2A"), ("l1c", "L1C"), ("Level-1C", "L1C"), ("S2MSI2A", "L2A")],
)
def test_processing_level_spellings(value: str | None, level: str) -> None:
    assert processing_level(value, where="s.tif") == level


def test_processing_level_names_an_unknown_value() -> None:
    with pytest.raises(SceneFormatError, match=r"s\.tif: PROCESSING_LEVEL 'L3' is not a"):
        processing_level("L3", where="s.tif")


def test_toa_to_surface_subtracts_each_band_s_offset_clipped_at_zero() -> None:
    x = np.array([[[0.10, np.nan]], [[0.02, 0.05]], [[0.30, 0.40]]], dtype=np.float32)
    out = toa_to_surface(x, ("B02", "B04", "B08"), {"B02": 0.074, "B04": 0.03})
    np.testing.assert_allclose(out[0, 0, 0], 0.026, atol=1e-7)
    assert np.isnan(out[0, 0, 1])  # unobserved stays unobserved
    np.testing.assert_allclose(out[1, 0], [0.0, 0.02], atol=1e-7)  # 0.02 - 0.03 clipped at 0
    np.testing.assert_array_equal(out[2], x[2])  # no offset for NIR
    assert out is not x and x[0, 0, 0] == np.float32(0.10)  # a copy
    batch = toa_to_surface(np.stack([x, x]), ("B02", "B04", "B08"), {"B02": 0.074})
    np.testing.assert_allclose(batch[1, 0, 0, 0], 0.026, atol=1e-7)
