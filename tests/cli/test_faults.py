"""Faults inside a scan: what was not observed is said so, never reported as "no mining"."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from aoi.grid import GridCell
from detection.runs import load_config, run_scan
from models.indices import IndexDetector
from tests.cli.conftest import small_config
from tiles.scene import Scene, SceneInfo
from tiles.sources import SyntheticSource


class _FaultySource(SyntheticSource):
    """The synthetic world, with every scene of one quarter turned into a fault."""

    fault = "cloud"

    def read(self, info: SceneInfo, cell: GridCell, *, bands: Sequence[str]) -> Scene:
        scene = super().read(info, cell, bands=bands)
        if info.datetime.month < 7:  # only the last quarter (2024Q3) is hit
            return scene
        if self.fault == "cloud":  # SCL says high-probability cloud everywhere
            scl = np.full(scene.valid.shape, 9, dtype=np.uint8)
            return dataclasses.replace(scene, scl=scl)
        # nodata-only: the sensor saw nothing (swath edge)
        data = np.full_like(scene.data, np.nan)
        return dataclasses.replace(scene, data=data, valid=np.zeros_like(scene.valid))


@pytest.mark.parametrize("fault", ["cloud", "nodata"])
def test_unobserved_last_period_is_not_observed_not_no_change(
    fault: str, small_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(small_config(tmp_path, world=small_world))
    monkeypatch.setattr(_FaultySource, "fault", fault)
    monkeypatch.setattr(
        "detection.runs._scan.open_source",
        lambda config, *, workdir, progress=None: _FaultySource(
            config.path, config.world, progress=progress
        ),
    )
    with pytest.warns(UserWarning, match="not observed"):
        result = run_scan(cfg, detector=IndexDetector(), out_dir=tmp_path / "out")
    assert result.observed_fraction["2024Q3"] == 0.0
    assert result.observed_fraction["2024Q2"] > 0.5
    # No alert claims a site was seen in the last period: the sites of 2024Q2 are kept with
    # their status, an observed share of 0 and their last detection in 2024Q2; the metadata
    # and the coverage layer say why.
    assert not result.alerts.empty
    assert set(result.alerts["observed_fraction"]) == {0.0}
    assert set(result.alerts["last_detected"]) == {"2024-06-30"}
    assert result.unobserved_periods == ["2024Q3"]
    assert result.feature_collection["minewatch"]["unobserved_periods"] == ["2024Q3"]
    import pyogrio

    coverage = pyogrio.read_dataframe(tmp_path / "out" / "alerts.gpkg", layer="coverage")
    last = coverage[coverage["period"] == "2024Q3"]
    # chips with imagery say "not_observed"; chips past the world's edge say "no_imagery"
    assert "not_observed" in set(last["status"])
    assert set(last["status"]) <= {"not_observed", "no_imagery"}
    fc = result.feature_collection
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(result.alerts)


def test_a_skipped_source_scene_alone_never_makes_a_run_failed() -> None:
    """A failed run keeps the last outputs, so 'failed' must mean every unit failed: a scene the
    source skipped (tile ``*``) beside a unit that worked is 'partial'."""
    from detection.runs import ChipFailure
    from detection.runs._scan import _outcome

    skipped = ChipFailure("*", "*", "scene skipped: x.tif: truncated")
    assert _outcome([skipped], attempted=1) == "partial"
    assert _outcome([skipped, ChipFailure("t1", "2024Q3", "r")], attempted=2) == "partial"
    assert _outcome([skipped, ChipFailure("t1", "2024Q3", "r")], attempted=1) == "failed"
    assert _outcome([], attempted=3) == "success"
