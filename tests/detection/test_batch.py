"""The whole-scene batch through its public name, ``detection.runs.predict_scenes``: what
``minewatch predict`` calls, with the same files, counts and failures."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from detection.errors import ConfigError, DetectionError, OutputExistsError
from detection.runs import PredictionBatch, PredictOptions, SitesConfig, predict_scenes
from minewatch.cli_predict import predict
from tests.detection.conftest import X0
from tests.detection.test_inference import _forest, tiny_checkpoint, write_scene
from tiles.cog import is_cog

__all__ = ["tiny_checkpoint"]  # the fixture, shared with test_inference


def _features(path: Path) -> list[dict]:
    collection = json.loads(path.read_text())
    assert collection["type"] == "FeatureCollection" and "crs" not in collection
    return collection["features"]


def test_predict_scenes_writes_what_the_command_writes(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    a = write_scene(tmp_path / "a.tif", _forest(160, 160))
    b = write_scene(tmp_path / "b.tif", _forest(160, 160, seed=3), x0=X0 + 1600)
    options = PredictOptions(
        checkpoint=tiny_checkpoint, device="cpu", window_px=128, overlap_px=32
    )
    rule = SitesConfig(thresholds={"mining": 0.3, "deforestation": 0.3}, min_area_ha=0.1)
    out = tmp_path / "lib"
    batch = predict_scenes([a, b, a], out=out, sites=rule, options=options)
    assert isinstance(batch, PredictionBatch) and batch.failure is None
    assert [s.scene for s in batch.scenes] == [a, b]  # a scene named twice runs once
    for done in batch.scenes:
        assert not done.reused and done.run["device"] == "cpu"
        assert is_cog(done.probabilities)
        assert len(_features(done.sites_path)) == len(done.sites) == done.summary()["site_count"]
    assert batch.merged_path == out / "sites.geojson"
    assert batch.merged is not None
    merged = _features(out / "sites.geojson")
    per_class: dict[str, int] = {}
    for f in merged:
        per_class[f["properties"]["alert_class"]] = per_class.get(
            f["properties"]["alert_class"], 0) + 1
    assert batch.report()["sites_per_class"] == per_class == {"mining": 1}
    assert len(merged) == len(batch.merged)

    # The command is this call: the same files from the same flags.
    group = click.Group()
    group.add_command(predict)
    args = ["predict", str(a), str(b), "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
            "--window-px", "128", "--overlap-px", "32", "--threshold", "mining=0.3",
            "--threshold", "deforestation=0.3", "--min-area-ha", "0.1", "--out",
            str(tmp_path / "cli"), "--json"]
    res = CliRunner().invoke(group, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["sites_per_class"] == batch.report()["sites_per_class"]
    for name in ("a_sites.geojson", "b_sites.geojson", "sites.geojson"):
        assert (tmp_path / "cli" / name).read_text() == (out / name).read_text()

    # Again into the same folder: refused unless asked, kept with resume.
    with pytest.raises(OutputExistsError, match="--resume"):
        predict_scenes([a], out=out, options=options)
    with pytest.raises(ConfigError, match="not both"):
        predict_scenes([a], out=out, options=options, resume=True, overwrite=True)
    again = predict_scenes([a, b], out=out, sites=rule, options=options, resume=True)
    assert [s.reused for s in again.scenes] == [True, True]
    assert again.report()["scenes"][0]["reused"] is True
    assert (out / "sites.geojson").read_text() == (tmp_path / "cli" / "sites.geojson").read_text()


def test_a_failing_scene_stops_the_batch_and_is_its_failure(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    a = write_scene(tmp_path / "a.tif", _forest(160, 160))
    broken = tmp_path / "c.tif"
    broken.write_bytes(b"not a GeoTIFF")
    later = write_scene(tmp_path / "d.tif", _forest(160, 160, seed=5), x0=X0 + 1600)
    out = tmp_path / "out"
    options = PredictOptions(checkpoint=tiny_checkpoint, device="cpu", window_px=128,
                             overlap_px=32)  # fmt: skip
    batch = predict_scenes([a, broken, later], out=out, options=options)
    assert [s.scene for s in batch.scenes] == [a]
    assert batch.failure is not None and batch.failure.scene == broken
    assert isinstance(batch.failure.error, DetectionError) and "c.tif" in str(batch.failure.error)
    message = batch.failure_message()
    assert "1 scene(s) before c.tif" in message and "--resume" in message
    assert (out / "a_sites.geojson").exists()
    assert not (out / "d_probabilities.tif").exists() and not (out / "sites.geojson").exists()
    assert batch.merged is None
