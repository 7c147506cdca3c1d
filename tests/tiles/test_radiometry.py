"""Digital numbers to reflectance, with the baseline 04.00 offset applied exactly once."""

from __future__ import annotations

import numpy as np
import pytest

from tiles.errors import SceneFormatError
from tiles.radiometry import boa_add_offset, dn_to_reflectance, format_baseline, parse_baseline


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
