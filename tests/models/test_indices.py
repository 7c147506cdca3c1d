"""The spectral-index detector: planted features, NaN, band errors, and a generated world."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.features import rasterize
from scipy import ndimage
from shapely.geometry import shape

from models.detector import Detector
from models.errors import BandMismatchError
from models.indices import IndexDetector, IndexThresholds

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")

#: Reflectance of planted surfaces in the order of BANDS (levels of tiles/spectra.py).
FOREST = (0.020, 0.040, 0.022, 0.310, 0.150, 0.065)
RIVER = (0.035, 0.055, 0.050, 0.020, 0.006, 0.004)  # moderately turbid natural river
TURBID_POND = (0.075, 0.120, 0.160, 0.110, 0.030, 0.018)
SEDIMENT = (0.100, 0.130, 0.170, 0.220, 0.300, 0.250)
SANDBAR = (0.150, 0.200, 0.250, 0.315, 0.380, 0.320)
CLEARING = (0.055, 0.075, 0.095, 0.210, 0.305, 0.210)
PASTURE = (0.045, 0.075, 0.070, 0.260, 0.270, 0.150)


def scene(size: int = 64) -> np.ndarray:
    data = np.empty((len(BANDS), size, size), dtype=np.float32)
    data[:] = np.asarray(FOREST, dtype=np.float32)[:, None, None]
    return data


def plant(data: np.ndarray, rows: slice, cols: slice, spectrum: tuple[float, ...]) -> None:
    data[:, rows, cols] = np.asarray(spectrum, dtype=np.float32)[:, None, None]


def test_is_a_detector_with_stable_identity() -> None:
    det = IndexDetector()
    assert isinstance(det, Detector)
    assert det.bands == BANDS
    assert det.info.name == "indices"
    assert det.info.sha256 == IndexDetector(IndexThresholds()).info.sha256
    assert len(det.info.sha256) == 64
    other = IndexDetector(IndexThresholds(turbid_red_min=0.1))
    assert other.info.sha256 != det.info.sha256


def test_turbid_pond_next_to_sediment_is_mining() -> None:
    data = scene()
    plant(data, slice(20, 34), slice(20, 36), SEDIMENT)
    plant(data, slice(23, 31), slice(23, 31), TURBID_POND)
    pred = IndexDetector().predict(data, BANDS)
    assert pred.classes == ("mining", "deforestation")
    assert pred.probabilities.dtype == np.float32
    mining = pred.of("mining")
    assert mining[21:33, 21:35].min() >= 0.5
    assert mining[25, 26] > 0.9
    assert mining[:15].max() < 0.5  # forest
    assert pred.of("deforestation")[20:34, 20:36].max() < 0.5


def test_sandbar_in_turbid_river_is_not_mining() -> None:
    data = scene()
    plant(data, slice(0, 64), slice(20, 40), RIVER)
    plant(data, slice(10, 30), slice(26, 33), SANDBAR)
    pred = IndexDetector().predict(data, BANDS)
    assert np.nanmax(pred.probabilities) < 0.5


def test_sediment_without_ponds_and_turbid_river_alone_are_not_mining() -> None:
    data = scene()
    plant(data, slice(5, 15), slice(5, 15), SEDIMENT)  # a quarry-like bare patch
    turbid = (0.060, 0.100, 0.120, 0.060, 0.012, 0.008)  # a very turbid river
    plant(data, slice(0, 64), slice(40, 52), turbid)
    assert IndexDetector().predict(data, BANDS).of("mining").max() < 0.5


def test_clearing_is_deforestation_and_pasture_is_not() -> None:
    data = scene()
    plant(data, slice(10, 25), slice(10, 25), CLEARING)
    plant(data, slice(40, 60), slice(40, 60), PASTURE)
    plant(data, slice(30, 31), slice(0, 64), SEDIMENT)  # a road: one pixel wide
    pred = IndexDetector().predict(data, BANDS)
    deforestation = pred.of("deforestation")
    assert deforestation[11:24, 11:24].min() >= 0.5
    assert deforestation[40:60, 40:60].max() < 0.5
    assert deforestation[29:32].max() < 0.5
    assert pred.of("mining").max() < 0.5


def test_forest_is_nothing() -> None:
    pred = IndexDetector().predict(scene(), BANDS)
    assert pred.probabilities.max() < 0.05


def test_nan_passes_through_and_band_order_is_free() -> None:
    data = scene()
    plant(data, slice(20, 34), slice(20, 36), SEDIMENT)
    plant(data, slice(23, 31), slice(23, 31), TURBID_POND)
    data[3, 0:10, 0:10] = np.nan  # B08 unobserved there
    order = (5, 0, 4, 1, 3, 2)
    shuffled = data[list(order)]
    names = tuple(BANDS[i] for i in order)
    pred = IndexDetector().predict(np.concatenate([shuffled, data[:1]]), (*names, "B01"))
    assert np.isnan(pred.probabilities[:, 0:10, 0:10]).all()
    assert np.isfinite(pred.probabilities[:, 10:, 10:]).all()
    assert pred.of("mining")[25, 26] > 0.9


def test_missing_band_names_band_given_and_fix() -> None:
    with pytest.raises(BandMismatchError, match=r"missing band\(s\) \['B11'\]") as info:
        IndexDetector().predict(scene()[[0, 1, 2, 3, 5]], ("B02", "B03", "B04", "B08", "B12"))
    message = str(info.value)
    assert "got ['B02', 'B03', 'B04', 'B08', 'B12']" in message
    assert "read the composite with these bands" in message


def test_data_shape_must_match_bands() -> None:
    with pytest.raises(ValueError, match=r"data shape \(6, 64, 64\) does not match 7 bands"):
        IndexDetector().predict(scene(), (*BANDS, "B01"))


# --------------------------------------------------------------------------------------------
# On a generated world
# --------------------------------------------------------------------------------------------


def _composite(root: Path, period: str, bands: tuple[str, ...]) -> np.ndarray:
    """Throwaway cloud-masked median composite of a synthetic period (not the product's)."""
    meta = json.loads((root / "world.json").read_text())
    stack = []
    for s in meta["scenes"]:
        if s["period"] != period:
            continue
        with rasterio.open(root / s["path"]) as src:
            names = list(src.descriptions)
            dn = src.read([names.index(b) + 1 for b in bands]).astype(np.float32)
            scl = src.read(names.index("SCL") + 1)
            offset = float(src.tags()["BOA_ADD_OFFSET"])
        refl = (dn + offset) / 10_000.0
        refl[:, np.isin(scl, (0, 1, 3, 8, 9, 10))] = np.nan
        stack.append(refl)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        return np.nanmedian(np.stack(stack), axis=0)


def _site_masks(root: Path, period: str) -> list[tuple[dict, np.ndarray]]:
    meta = json.loads((root / "world.json").read_text())
    with rasterio.open(root / meta["truth"][period]) as src:
        out_shape, transform, crs = src.shape, src.transform, src.crs
    to_utm = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    sites = []
    for feature in json.loads((root / meta["sites"]).read_text())["features"]:
        if feature["properties"]["period"] != period:
            continue
        geom = shapely.transform(
            shape(feature["geometry"]),
            lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])),
        )
        mask = rasterize([geom], out_shape=out_shape, transform=transform).astype(bool)
        sites.append((feature["properties"], mask))
    return sites


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiles.synthetic import WorldSpec, generate_world

    spec = WorldSpec(
        size_px=384,
        n_mining_sites=6,
        n_clearings=3,
        mining_site_area_ha=(2.0, 8.0),
        clearing_area_ha=(1.0, 5.0),
        n_pastures=2,
        n_sandbars=3,
        seed=3,
    )
    return generate_world(tmp_path_factory.mktemp("indices_world"), spec).root


def test_recall_and_precision_on_a_generated_world(generated: Path) -> None:
    det = IndexDetector()
    period = "2024Q3"
    pred = det.predict(_composite(generated, period, det.bands), det.bands)
    sites = _site_masks(generated, period)
    mining = np.nan_to_num(pred.of("mining"), nan=0.0) >= 0.5
    deforestation = np.nan_to_num(pred.of("deforestation"), nan=0.0) >= 0.5

    targets = [m for p, m in sites if p["class"] == "mining" and p["change"] != "stable"]
    assert targets
    recall = np.mean([mining[m].any() for m in targets])
    all_mining = np.any([m for p, m in sites if p["class"] == "mining"], axis=0)
    labels, n = ndimage.label(mining, structure=np.ones((3, 3)))
    hits = ndimage.maximum(all_mining, labels, index=np.arange(1, n + 1))
    precision = float(np.mean(hits)) if n else 0.0
    assert recall >= 0.9
    assert precision >= 0.8
    for p, m in sites:
        if p["class"] == "lookalike":
            assert not mining[m].any(), f"look-alike {p['kind']} {p['truth_id']} detected as mining"

    clearings = [m for p, m in sites if p["class"] == "deforestation"]
    assert np.mean([deforestation[m].any() for m in clearings]) >= 0.9
