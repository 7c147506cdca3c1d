"""Scan units with a halo: a chip is read, composited and predicted with context around it, then
cropped back, so probabilities near chip edges match a whole-scene prediction (no seams)."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import torch
import yaml
from affine import Affine
from pydantic import ValidationError
from shapely.geometry import box

from aoi.grid import GridCell
from detection.runs import (
    GridConfig,
    ScanConfig,
    UnitSettings,
    WorkUnit,
    default_config_dir,
    load_config,
    predict_unit,
    process_unit,
    run_scan,
)
from models.checkpoint import CheckpointMetadata, save_checkpoint
from models.detector import Detector, ModelInfo, Prediction
from models.indices import IndexDetector
from models.network import load_network_detector
from models.normalization import Normalization
from models.registry import DEFAULT_BANDS, build_model
from tiles.errors import CloudyPeriodWarning
from tiles.sources import LocalSource
from tiles.synthetic import World, WorldSpec, generate_world

#: A small world (192 px, about a second to generate) with a couple of sites of each kind.
SPEC = WorldSpec(
    size_px=192,
    n_mining_sites=2,
    n_clearings=1,
    mining_site_area_ha=(1.0, 3.0),
    clearing_area_ha=(1.0, 2.0),
    n_pastures=1,
    n_sandbars=1,
    n_oxbow_lakes=1,
    cloud_cover=0.1,
    seed=5,
)
CHIP = 64
#: The tiny network below sees 24 px around a pixel: a 32 px halo gives it all its context.
HALO = 32


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return generate_world(tmp_path_factory.mktemp("halo") / "world", SPEC)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Detector:
    """A tiny U-Net (random weights, three stages): zero-padded at its input edge like any."""
    torch.manual_seed(0)
    options = {"widths": [4, 8, 8], "blocks": [1, 1, 1]}
    model = build_model("unet-slim", in_channels=6, options=options)
    with torch.no_grad():
        head: torch.nn.Conv2d = model.head  # type: ignore[assignment]
        head.weight.mul_(10.0)  # confident logits: edge errors show in the masks too
    meta = CheckpointMetadata(
        name="tiny", version="0.0.1", architecture="unet-slim", options=options,
        bands=DEFAULT_BANDS, normalization=Normalization(DEFAULT_BANDS, (0.05,) * 6, (0.05,) * 6),
        patch_size_px=32,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    save_checkpoint(path, model, meta)
    return load_network_detector(path, device="cpu")


def _settings(detector: Detector, halo_px: int) -> UnitSettings:
    return UnitSettings(
        bands=tuple(detector.bands),
        method="median",
        masked_scl=(0, 1, 3, 8, 9, 10),
        dilation_px=1,
        model_sha256=detector.info.sha256,
        halo_px=halo_px,
    )


def _cell(world: World, row: int, col: int, size: int = CHIP, name: str = "21MVN_0101") -> GridCell:
    """A ``size`` px cell whose upper-left pixel is ``(row, col)`` of the world's grid."""
    return GridCell(name, world.crs, world.transform @ Affine.translation(col, row), size, size)


def _unit(world: World, cell: GridCell, period: int = -1) -> WorkUnit:
    p = world.periods[period]
    source = LocalSource(world.root / "scenes")
    infos = source.search(_wgs84(world), p.start, p.end)
    return WorkUnit(cell, p, tuple(infos))


def _wgs84(world: World) -> shapely.Geometry:
    cell = _cell(world, 0, 0, size=world.width)
    return gpd.GeoSeries([box(*cell.bounds)], crs=world.crs).to_crs(4326).iloc[0]


def _edge_band(shape: tuple[int, int], width: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.minimum(np.minimum(yy, shape[0] - 1 - yy), np.minimum(xx, shape[1] - 1 - xx)) < width


def test_halo_removes_the_seam_at_chip_edges(world: World, network: Detector) -> None:
    """Near a chip's edges, its probabilities with a halo are those of the whole scene."""
    source = LocalSource(world.root / "scenes")
    whole = _cell(world, 0, 0, size=world.width, name="21MVN_0000")
    _, ref = predict_unit(
        _unit(world, whole), source=source, detector=network, settings=_settings(network, 0)
    )
    chip = _cell(world, 64, 64)  # inside the world, halo included
    reference = ref.probabilities[:, 64 : 64 + CHIP, 64 : 64 + CHIP]
    edge = _edge_band(chip.shape, 8)
    errors, flips = {}, {}
    for halo in (0, HALO):
        comp, pred = predict_unit(
            _unit(world, chip), source=source, detector=network, settings=_settings(network, halo)
        )
        assert comp.cell == chip and pred.probabilities.shape == (2, CHIP, CHIP)
        errors[halo] = float(np.nanmean(np.abs(pred.probabilities - reference)[:, edge]))
        flips[halo] = int(((pred.probabilities >= 0.5) != (reference >= 0.5)).sum())
    # Without a halo the zero padding shows at the edge (and changes masks); with one the chip
    # sees what the whole scene sees, so its edge is predicted as the whole scene predicts it.
    assert errors[0] > 3e-3 and flips[0] > 0
    assert errors[HALO] < 1e-5 and flips[HALO] == 0


class _Spy:
    """A detector that records what it is given and answers the index detector's result."""

    def __init__(self) -> None:
        self.inner = IndexDetector()
        self.inputs: list[np.ndarray] = []

    @property
    def info(self) -> ModelInfo:
        return self.inner.info

    @property
    def bands(self) -> tuple[str, ...]:
        return self.inner.bands

    def predict(self, data: np.ndarray, bands: tuple[str, ...]) -> Prediction:
        self.inputs.append(data)
        return self.inner.predict(data, bands)


def test_halo_outside_every_scene_is_unobserved(world: World, tmp_path: Path) -> None:
    """A chip at the world's corner: its halo reaches past every scene. That part is NaN for the
    detector; the chip itself is predicted and saved on its own grid."""
    spy = _Spy()
    chip = _cell(world, 0, 0)
    source = LocalSource(world.root / "scenes")
    res = process_unit(
        _unit(world, chip),
        source=source,
        detector=spy,
        settings=_settings(spy, HALO),
        units_dir=tmp_path,
    )
    assert res.status in ("observed", "partly_observed")
    (data,) = spy.inputs
    assert data.shape == (len(spy.bands), CHIP + 2 * HALO, CHIP + 2 * HALO)
    seen = np.isfinite(data).all(axis=0)
    assert not seen[:HALO].any() and not seen[:, :HALO].any()  # above and left of the world
    assert seen[HALO:-HALO, HALO:-HALO].mean() > 0.5  # the chip itself
    assert seen[-HALO:, HALO:-HALO].mean() > 0.5  # the halo below the chip, inside the world


def test_outputs_keep_the_chip_footprint(world: World, network: Detector, tmp_path: Path) -> None:
    chip = _cell(world, 64, 64)
    unit = _unit(world, chip)
    source = LocalSource(world.root / "scenes")
    results = {}
    for halo in (0, HALO):
        out = tmp_path / f"halo{halo}"
        res = process_unit(
            unit, source=source, detector=network, settings=_settings(network, halo), units_dir=out
        )
        assert res.composite is not None
        with rasterio.open(out / unit.period.label / res.composite) as src:
            assert (src.height, src.width) == chip.shape
            assert src.transform.almost_equals(chip.transform) and src.crs == chip.crs
            data = src.read()
        results[halo] = (res, data)
    (res0, data0), (res1, data1) = results[0], results[HALO]
    assert res1.observed_fraction == res0.observed_fraction
    # The composite inside the chip is the same; only cloud dilation from the halo may differ.
    assert np.mean(data1 == data0) > 0.99
    # Observed area and polygons stay on the chip (compared in its UTM CRS, to 1 m2).
    footprint = box(*chip.bounds)
    observed = _to_crs([res1.observed], chip)
    assert observed[0].difference(footprint).area < 1.0
    assert observed[0].area == pytest.approx(res1.observed_fraction * footprint.area, rel=1e-3)
    assert res1.parts is not None and len(res1.parts)
    assert all(g.difference(footprint).area < 1.0 for g in _to_crs(res1.parts.geometry, chip))


def _to_crs(geoms: object, cell: GridCell) -> list[shapely.Geometry]:
    return list(gpd.GeoSeries(geoms, crs=4326).to_crs(cell.crs))


def test_cell_with_halo_and_back() -> None:
    cell = GridCell(
        "21MVN_0000", rasterio.CRS.from_epsg(32721), Affine(10, 0, 5e5, 0, -10, 9e6), 64, 48
    )
    grown = cell.with_halo(16)
    assert (grown.height, grown.width) == (80, 96)
    assert grown.transform.almost_equals(Affine(10, 0, 5e5 - 160, 0, -10, 9e6 + 160))
    assert grown.slices_of(cell) == (slice(16, 64), slice(16, 80))
    assert cell.with_halo(0) is cell
    with pytest.raises(ValueError, match="halo -1 px must be >= 0"):
        cell.with_halo(-1)
    with pytest.raises(ValueError, match="reaches outside"):
        cell.slices_of(grown)
    shifted = GridCell("X", cell.crs, cell.transform @ Affine.translation(0.5, 0), 8, 8)
    with pytest.raises(ValueError, match="not on its pixel grid"):
        grown.slices_of(shifted)


# ------------------------------------------------------------------------------- keys, config


def _identity_before_halo(config: ScanConfig) -> str:
    """``ScanConfig.identity`` as minewatch computed it before ``grid.halo_px`` existed."""
    data = config.model_dump(
        mode="json", exclude={"periods", "output", "legal", "admin", "sites"}
    )
    # The confidence words of format 1.x.
    words = {"probable": "low", "likely": "high", "very_likely": "highest"}
    data["alerts"]["confidence_levels"] = {
        words[k]: v for k, v in data["alerts"]["confidence_levels"].items()
    }
    # The demo's keys that later moved into `sites`, as they were then.
    data["detector"]["probability_threshold"] = None
    data["alerts"] |= {"min_area_ha": 0.5, "simplify_m": None}
    data["grid"].pop("halo_px")
    data.get("detector", {}).pop("backend", None)  # not part of the identity either
    data["composite"].pop("cloud_mask")  # nor is the default cloud_mask (auto), added later
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def test_halo_is_in_the_unit_key_not_the_scan_identity() -> None:
    config = load_config(default_config_dir() / "demo.yaml")
    assert config.grid.halo_px > 0
    # Existing output folders keep their identity: the demo's is what it was before halos.
    assert config.identity() == _identity_before_halo(config)
    for halo in (0, 64):
        grid = config.grid.model_copy(update={"halo_px": halo})
        other = config.model_copy(update={"grid": grid})
        assert other.identity() == config.identity()
        assert other.digest() != config.digest()

    det = IndexDetector()
    unit = WorkUnit(
        GridCell("21MVN_0000", rasterio.CRS.from_epsg(32721), Affine(10, 0, 0, 0, -10, 0), 64, 64),
        config.periods.resolve()[-1],
        (),
    )
    keys = {h: unit.key(_settings(det, h)) for h in (0, 16, 32)}
    assert len(set(keys.values())) == 3
    # A unit saved before halos existed (no halo_px in its settings) keeps its key at halo 0.
    assert "halo_px" not in _settings(det, 0).as_dict()


@pytest.mark.parametrize(
    ("grid", "match"),
    [
        ({"halo_px": -1}, "greater than or equal to 0"),
        ({"chip_size_px": 64, "halo_px": 65}, "halo_px 65 is larger than chip_size_px 64"),
    ],
)
def test_halo_is_validated(grid: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        GridConfig(**grid)


def test_changing_the_halo_recomputes_units_in_the_same_folder(
    world: World, tmp_path: Path
) -> None:
    """The folder stays the same scan (no --overwrite needed); units computed with another halo
    are computed again, then reused."""
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"id": "a", "name": "A"},
                        "geometry": shapely.geometry.mapping(_wgs84(world).centroid.buffer(0.002)),
                    }
                ],
            }
        )
    )
    raw: dict[str, Any] = {
        "name": "halo",
        "aoi": {
            "path": "aoi.geojson",
            "id_field": "id",
            "name_field": "name",
            "kind": "indigenous_land",
            "buffer_m": 0,
        },
        "source": {"kind": "local", "path": str(world.root / "scenes")},
        "periods": {"kind": "quarter", "start": "2024-04-01", "end": "2024-09-30"},
        "grid": {"chip_size_px": 128, "halo_px": 0},
        "detector": {"kind": "indices"},
    }
    runs = []
    for halo in (0, 16, 16):
        raw["grid"]["halo_px"] = halo
        (tmp_path / "scan.yaml").write_text(yaml.safe_dump(raw))
        config = load_config(tmp_path / "scan.yaml")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CloudyPeriodWarning)
            runs.append(run_scan(config, detector=IndexDetector(), out_dir=tmp_path / "out"))
    first, changed, again = runs
    assert first.units_computed > 0 and first.units_reused == 0
    assert changed.units_computed == first.units_computed and changed.units_reused == 0
    assert again.units_computed == 0 and again.units_reused == first.units_computed
