"""Probability rasters to sites: thresholds, hysteresis, morphology, MMU, merging across blocks
and tiles. Probability COGs are written directly (no model) in UTM 21S."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from pyproj import CRS
from scipy import ndimage

from detection.errors import DetectionError
from detection.inference import TAG_THRESHOLDS, UINT8_NODATA, UINT8_SCALE
from detection.sites import (
    MaskOptions,
    SiteStream,
    merge_tile_sites,
    sites_from_probabilities,
)
from models.site_rule import threshold_mask
from tests.detection.conftest import X0, Y0
from tiles.cog import write_cog


def write_probabilities(
    path: Path,
    mining: np.ndarray,
    deforestation: np.ndarray | None = None,
    *,
    x0: float = X0,
    tags: dict[str, str] | None = None,
) -> str:
    defo = np.zeros_like(mining) if deforestation is None else deforestation
    write_cog(
        path,
        np.stack([mining, defo]).astype(np.float32),
        crs="EPSG:32721",
        transform=Affine(10.0, 0.0, x0, 0.0, -10.0, Y0),
        nodata=float("nan"),
        band_descriptions=["mining", "deforestation"],
        tags=tags,
    )
    return str(path)


def test_threshold_hysteresis_and_morphology() -> None:
    p = np.zeros((40, 40), dtype=np.float32)
    p[5:15, 5:15] = 0.4  # low region ...
    p[8, 8] = 0.9  # ... holding one high pixel: kept whole with hysteresis
    p[25:35, 25:35] = 0.4  # low region without a high pixel: dropped
    p[20, 2] = 0.95  # a single-pixel speck: removed by the opening
    p[0:3, 30:33] = np.nan  # not observed: never detected
    plain = threshold_mask(p, threshold=0.5)
    assert plain.sum() == 2
    hyst = threshold_mask(p, threshold=0.5, low=0.3)
    assert hyst[5:15, 5:15].all() and not hyst[25:35, 25:35].any()
    opened = threshold_mask(p, threshold=0.5, low=0.3, opening_px=1, closing_px=1)
    assert opened[5:15, 5:15].all() and not opened[20, 2]
    assert not threshold_mask(np.full((3, 3), np.nan), threshold=0.1).any()
    with pytest.raises(ValueError, match="expected \\(row, col\\)"):
        threshold_mask(np.zeros((2, 3, 3)), threshold=0.5)


def test_sites_do_not_depend_on_the_block_size(tmp_path: Path) -> None:
    p = np.zeros((300, 200), dtype=np.float32)
    p[50:190, 40:100] = 0.9  # 140 x 60 px = 84 ha, crossing block edges at 64 and 128 rows
    p[250:254, 150:154] = 0.9  # 16 px = 0.16 ha, below the MMU
    p[200:230, 150:180] = 0.7  # 9 ha
    path = write_probabilities(tmp_path / "p.tif", p)
    expected = None
    for block_rows in (64, 100, 2048):
        sites = sites_from_probabilities(
            path, options=MaskOptions(block_rows=block_rows, min_area_ha=0.5, simplify_m=None),
            tile_id="T1",
        )
        assert list(sites["alert_class"]) == ["mining", "mining"]
        areas = sorted(round(a, 1) for a in sites["area_ha"])
        if expected is None:
            expected = areas
        assert areas == expected
        assert set(sites["tile_id"]) == {"T1"}
        big = sites.loc[sites["area_ha"].idxmax()]
        assert big.geometry.geom_type == "Polygon"
        assert abs(big["confidence"] - 0.9) < 1e-6
    assert expected is not None and 80 < expected[1] < 88 and 8 < expected[0] < 10


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_sites_streamed_in_rows_of_any_height_are_those_of_the_file(
    dtype: str, tmp_path: Path
) -> None:
    """What ``minewatch predict`` traces while the network runs is what the COG would give."""
    rng = np.random.default_rng(3)
    field = ndimage.gaussian_filter(rng.standard_normal((2, 420, 230)), (0, 4, 4))
    p = (0.5 + 4 * field).clip(0, 1).astype(np.float32)
    p[:, 300:340, 0:60] = np.nan  # unobserved
    if dtype == "uint8":
        raw = np.where(np.isnan(p), UINT8_NODATA, np.round(p * UINT8_SCALE)).astype(np.uint8)
        nodata: float | None = UINT8_NODATA
    else:
        raw, nodata = p, float("nan")
    path = tmp_path / "p.tif"
    transform = Affine(10.0, 0.0, X0, 0.0, -10.0, Y0)
    write_cog(path, raw, crs="EPSG:32721", transform=transform,
              nodata=nodata, band_descriptions=["mining", "deforestation"],
              tags={TAG_THRESHOLDS: json.dumps({"mining": 0.55})})
    for opts in (
        MaskOptions(block_rows=64, min_area_ha=0.0, simplify_m=None),
        MaskOptions(block_rows=100, hysteresis_low={"mining": 0.3}, thresholds={"mining": 0.7}),
        MaskOptions(opening_px=2, closing_px=0, min_area_ha=1.0),
    ):
        expected = sites_from_probabilities(str(path), options=opts, tile_id="T")
        assert len(expected) > 3, opts
        # In blocks (rows carried from one block to the next) as in one block, before the
        # simplification (which depends on where an outline's vertices start).
        blocks, whole = (
            sites_from_probabilities(str(path), options=replace(opts, simplify_m=None, **one))
            for one in ({}, {"block_rows": 4096})
        )
        assert list(whole["alert_class"]) == list(blocks["alert_class"])
        assert whole.geometry.geom_equals(blocks.geometry).all(), opts
        np.testing.assert_allclose(whole["confidence"], blocks["confidence"], rtol=1e-3)
        stream = SiteStream(crs=CRS.from_epsg(32721), transform=transform, height=420,
                            width=230, bands=["mining", "deforestation"], nodata=nodata,
                            recorded_thresholds={"mining": 0.55}, options=opts, tile_id="T")
        row = 0
        while row < 420:
            n = int(rng.integers(1, 150))
            stream.add(raw[:, row : row + n], row)
            row += raw[:, row : row + n].shape[1]
        got = stream.finish()
        assert list(got["alert_class"]) == list(expected["alert_class"])
        assert got.geometry.geom_equals_exact(expected.geometry, tolerance=0).all()
        np.testing.assert_allclose(got["confidence"], expected["confidence"])
    def fresh() -> SiteStream:
        return SiteStream(crs=CRS.from_epsg(32721), transform=transform, height=420, width=230,
                          bands=["mining", "deforestation"], nodata=nodata)

    with pytest.raises(DetectionError, match="in order"):
        fresh().add(raw[:, 10:20], 10)
    short = fresh()
    short.add(raw[:, :100], 0)
    with pytest.raises(DetectionError, match="100 of 420 rows were added"):
        short.finish()
    with pytest.raises(DetectionError, match="expected the alert classes"):
        SiteStream(crs=CRS.from_epsg(32721), transform=transform, height=420, width=230,
                   bands=["B04"], nodata=nodata)


def test_hysteresis_across_blocks(tmp_path: Path) -> None:
    p = np.zeros((256, 100), dtype=np.float32)
    p[40:200, 20:50] = 0.4  # low band crossing three blocks of 64 rows...
    p[180, 30] = 0.8  # ... high only in the third block: the whole band is kept
    p[40:200, 70:90] = 0.4  # low only: dropped
    path = write_probabilities(tmp_path / "p.tif", p)
    opts = MaskOptions(block_rows=64, hysteresis_low={"mining": 0.3}, opening_px=0,
                       closing_px=0, simplify_m=None)
    sites = sites_from_probabilities(path, options=opts)
    assert len(sites) == 1
    assert abs(sites.iloc[0]["area_ha"] - 160 * 30 * 0.01) < 1.5  # EPSG:6933 vs UTM areas


def test_thresholds_from_the_checkpoint_tag_then_options(tmp_path: Path) -> None:
    p = np.zeros((80, 80), dtype=np.float32)
    p[10:40, 10:40] = 0.55
    tagged = write_probabilities(tmp_path / "p.tif", p, tags={TAG_THRESHOLDS: json.dumps(
        {"mining": 0.6})})
    assert len(sites_from_probabilities(tagged)) == 0
    assert len(sites_from_probabilities(tagged, options=MaskOptions(
        thresholds={"mining": 0.5}))) == 1
    with pytest.raises(DetectionError, match="mining"):
        MaskOptions(thresholds={"mining": 1.5})
    with pytest.raises(DetectionError, match="above its threshold"):
        MaskOptions(thresholds={"mining": 0.5}, hysteresis_low={"mining": 0.7})


def test_a_site_straddling_a_tile_edge_is_one_site(tmp_path: Path) -> None:
    west = np.zeros((100, 100), dtype=np.float32)
    east = np.zeros((100, 100), dtype=np.float32)
    west[30:60, 70:100] = 0.8  # the site's western 30 columns ...
    east[30:60, 0:25] = 0.9  # ... and its eastern 25, across the tile edge at x = X0 + 1000
    east[80:90, 80:90] = 0.9  # another site, in the east tile only
    frames = [
        sites_from_probabilities(write_probabilities(tmp_path / "w.tif", west), tile_id="W"),
        sites_from_probabilities(
            write_probabilities(tmp_path / "e.tif", east, x0=X0 + 1000), tile_id="E"
        ),
    ]
    assert [len(f) for f in frames] == [1, 2]
    merged = merge_tile_sites(frames)
    assert len(merged) == 2
    site = merged.loc[merged["area_ha"].idxmax()]
    assert site["tile_id"] == "E,W"
    assert site.geometry.geom_type == "Polygon"
    assert abs(site["area_ha"] - 30 * 55 * 0.01) < 1.0
    assert abs(site["confidence"] - (0.8 * 30 + 0.9 * 25) / 55) < 0.01
    # tables in different CRSs are merged in EPSG:4326
    other = frames[1].to_crs("EPSG:31981")
    merged_4326 = merge_tile_sites([frames[0], other])
    assert merged_4326.crs.to_epsg() == 4326 and len(merged_4326) == 2


def test_empty_inputs_give_empty_tables(tmp_path: Path) -> None:
    path = write_probabilities(tmp_path / "p.tif", np.zeros((50, 50), dtype=np.float32))
    sites = sites_from_probabilities(path)
    assert len(sites) == 0 and list(sites.columns)[-1] == "geometry"
    assert len(merge_tile_sites([sites])) == 0
    with pytest.raises(DetectionError, match="cannot read"):
        sites_from_probabilities(str(tmp_path / "missing.tif"))


def test_chips_with_hysteresis_give_the_sites_of_the_whole_raster(tmp_path: Path) -> None:
    """The scan's path (each chip's masks and seeds, merged, finished) is the rule
    `sites_from_probabilities` applies to the whole raster, hysteresis across a chip edge
    included: a mine whose strong pixels are all on one chip is kept whole, one without any
    strong pixel is dropped."""
    import geopandas as gpd
    import shapely

    from aoi.grid import GridCell
    from detection.runs import chip_parts
    from detection.sites import finish_sites, merge_parts
    from models.detector import Prediction

    mining = np.zeros((64, 128), dtype=np.float32)
    mining[20:40, 40:90] = 0.5  # crosses the chip edge at column 64 ...
    mining[25:35, 42:50] = 0.9  # ... strong on the west chip only
    mining[50:60, 100:120] = 0.6  # never strong
    mining[5, 5] = 0.95  # a strong speck: the opening removes it
    path = write_probabilities(tmp_path / "p.tif", mining)
    options = MaskOptions(thresholds={"mining": 0.8, "deforestation": 0.8},
                          hysteresis_low={"mining": 0.4}, min_area_ha=0.0, simplify_m=5.0)
    whole = sites_from_probabilities(path, options=options)

    crs = CRS.from_epsg(32721)
    probs = np.stack([mining, np.zeros_like(mining)])
    parts, seeds = [], []
    for k in range(2):
        cell = GridCell(f"21MVN_000{k}", crs, Affine(10.0, 0.0, X0 + 640 * k, 0.0, -10.0, Y0),
                        64, 64)  # fmt: skip
        chip = Prediction(("mining", "deforestation"), probs[:, :, 64 * k : 64 * (k + 1)].copy())
        p, s = chip_parts(chip, cell, cell, options)
        parts += [p] if p is not None else []
        seeds += [s] if s is not None else []
    assert len(parts) == 2 and len(seeds) == 1  # the mine's strong pixels: west chip only
    sites = finish_sites(merge_parts(parts), options=options, strong=seeds)
    assert len(sites) == len(whole) == 1
    chips_site = gpd.GeoSeries(sites.geometry, crs=sites.crs).to_crs(crs).iloc[0]
    assert abs(chips_site.area - whole.geometry.iloc[0].area) < 1.0  # m2
    assert chips_site.hausdorff_distance(whole.geometry.iloc[0]) < 0.01
    assert sites["area_ha"].iloc[0] == pytest.approx(whole["area_ha"].iloc[0], rel=1e-5)
    assert shapely.box(X0 + 630, Y0 - 400, X0 + 650, Y0 - 200).intersects(chips_site)
