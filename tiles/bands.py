"""Sentinel-2 MSI band definitions: names, native resolutions, central wavelengths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Band:
    name: str
    resolution_m: int
    wavelength_nm: float
    description: str


# Central wavelengths of Sentinel-2A (ESA Sentinel-2 User Handbook, table of spectral bands).
BANDS: dict[str, Band] = {
    b.name: b
    for b in (
        Band("B01", 60, 442.7, "coastal aerosol"),
        Band("B02", 10, 492.4, "blue"),
        Band("B03", 10, 559.8, "green"),
        Band("B04", 10, 664.6, "red"),
        Band("B05", 20, 704.1, "red edge 1"),
        Band("B06", 20, 740.5, "red edge 2"),
        Band("B07", 20, 782.8, "red edge 3"),
        Band("B08", 10, 832.8, "NIR"),
        Band("B8A", 20, 864.7, "narrow NIR"),
        Band("B09", 60, 945.1, "water vapour"),
        Band("B10", 60, 1373.5, "SWIR cirrus (L1C only)"),
        Band("B11", 20, 1613.7, "SWIR 1"),
        Band("B12", 20, 2202.4, "SWIR 2"),
    )
}

#: Bands every source offers and every detector may rely on.
CORE_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B11", "B12")

#: The scene classification layer of L2A products.
SCL = "SCL"

#: SCL classes (Sen2Cor): 0 no data, 1 saturated/defective, 2 dark area/topographic shadow,
#: 3 cloud shadow, 4 vegetation, 5 not vegetated, 6 water, 7 unclassified,
#: 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus, 11 snow/ice.
SCL_NAMES: dict[int, str] = {
    0: "no_data",
    1: "saturated_or_defective",
    2: "dark_area",
    3: "cloud_shadow",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium_probability",
    9: "cloud_high_probability",
    10: "thin_cirrus",
    11: "snow",
}

#: SCL classes masked as not clear by default.
DEFAULT_MASKED_SCL: tuple[int, ...] = (0, 1, 3, 8, 9, 10)


def check_band_names(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Return ``names`` as a tuple after checking each is a Sentinel-2 band name.

    Raises:
        ValueError: a name is not a Sentinel-2 band.
    """
    unknown = [n for n in names if n not in BANDS]
    if unknown:
        raise ValueError(
            f"unknown band name(s) {unknown}: expected Sentinel-2 names {sorted(BANDS)}"
        )
    return tuple(names)


def check_requested_bands(bands: Sequence[str]) -> tuple[str, ...]:
    """The bands a caller asks a source to read, checked: a non-empty sequence of distinct
    Sentinel-2 band names, without ``SCL`` (sources read it whenever present).

    Raises:
        ValueError: ``bands`` is a string, empty, names SCL or a band twice, or an unknown band.
    """
    if isinstance(bands, str):
        raise ValueError(f"bands must be a sequence of band names, got the string {bands!r}")
    wanted = tuple(bands)
    if not wanted:
        raise ValueError("bands is empty: name the bands to read, e.g. ('B02', 'B03', 'B04')")
    if SCL in wanted:
        raise ValueError(f"bands {list(wanted)}: leave out {SCL}; it is read whenever present")
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"bands {list(wanted)}: a band is named twice")
    return check_band_names(wanted)
