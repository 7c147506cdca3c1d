"""A checkpoint's sha256 covers its metadata: an edited band list is refused at load (issue 18,
item 4), through ``minewatch predict`` with a copy of the shipped checkpoint."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from minewatch.cli import cli
from models.checkpoint import CheckpointMetadata, checkpoint_sha256, load_checkpoint
from models.errors import CheckpointError
from models.registry import DEFAULT_MODEL, shipped_checkpoint_path
from tests.cli.conftest import minewatch, small_config
from tests.detection.test_inference import _forest, write_scene


def _swap_b02_b04(path: Path) -> None:
    """What the field test did: B02 and B04 swapped in both band lists, saved with torch."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    meta = payload["metadata"]
    for bands in (meta["bands"], meta["normalization"]["bands"]):
        i, j = bands.index("B02"), bands.index("B04")
        bands[i], bands[j] = bands[j], bands[i]
    torch.save(payload, path)


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_scene(tmp_path / "scene.tif", _forest(96, 96))


def _predict(ckpt: Path, scene: Path, out: Path) -> tuple[int, str]:
    res = CliRunner().invoke(
        cli, ["predict", str(scene), "--checkpoint", str(ckpt), "--device", "cpu",
              "--window-px", "96", "--overlap-px", "0", "--out", str(out), "--json"],
    )
    return res.exit_code, res.output


def test_swapped_band_list_is_refused_by_predict(scene: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "swapped.pt"
    shutil.copyfile(shipped_checkpoint_path(), ckpt)
    _swap_b02_b04(ckpt)
    # The swap is self-consistent: the metadata still parses and the weights still match.
    payload = torch.load(ckpt, weights_only=True)
    assert CheckpointMetadata.from_dict(payload["metadata"]).bands[:3] == ("B04", "B03", "B02")
    out = tmp_path / "out"
    code, output = _predict(ckpt, scene, out)
    assert code == 1, output
    assert "Traceback" not in output
    line = output.strip().splitlines()[-1]
    assert str(ckpt) in line and "metadata edited after saving" in line
    assert "['B04', 'B03', 'B02'" in line  # names what it holds now
    assert "restore the original file" in line and "retrain" in line  # and the fix
    assert not out.exists() or not list(out.glob("*.tif"))  # nothing written


def test_unedited_copy_loads_and_reports_the_checkpoint_sha256(
    scene: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "copy.pt"
    shutil.copyfile(shipped_checkpoint_path(), ckpt)
    out = tmp_path / "out"
    code, output = _predict(ckpt, scene, out)
    assert code == 0, output
    import rasterio

    with rasterio.open(out / "scene_probabilities.tif") as src:
        assert src.tags()["MODEL_SHA256"] == DEFAULT_MODEL.sha256
    assert DEFAULT_MODEL.sha256 != DEFAULT_MODEL.weights_sha256


def test_shipped_digests_cover_the_metadata() -> None:
    ckpt = load_checkpoint(shipped_checkpoint_path(), expected_sha256=DEFAULT_MODEL.sha256)
    meta = ckpt.metadata
    assert meta.sha256 == checkpoint_sha256(meta) == DEFAULT_MODEL.sha256
    assert meta.weights_sha256 == DEFAULT_MODEL.weights_sha256
    card = (shipped_checkpoint_path().parent / "MODEL_CARD.md").read_text()
    assert DEFAULT_MODEL.sha256 in card


@pytest.mark.parametrize(
    ("field", "value"),
    [("classes", ["background", "deforestation", "mining"]),
     ("extra.thresholds", {"mining": 0.1}),
     ("extra.toa_offsets", {"B02": 0.0}),
     ("optional_bands", ["B11", "B12"])],
)
def test_other_covered_fields_are_refused(field: str, value: object, tmp_path: Path) -> None:
    ckpt = tmp_path / "edited.pt"
    shutil.copyfile(shipped_checkpoint_path(), ckpt)
    payload = torch.load(ckpt, weights_only=True)
    target = payload["metadata"]
    *parents, key = field.split(".")
    for p in parents:
        target = target[p]
    assert target[key] != value
    target[key] = value
    torch.save(payload, ckpt)
    with pytest.raises(CheckpointError, match="metadata edited after saving"):
        load_checkpoint(ckpt)


def test_file_saved_without_a_digest_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Checkpoints trained before the digest existed still load; the warning says so."""
    ckpt = tmp_path / "old.pt"
    payload = torch.load(shipped_checkpoint_path(), weights_only=True)
    del payload["metadata"]["sha256"]
    torch.save(payload, ckpt)
    with caplog.at_level(logging.WARNING):
        loaded = load_checkpoint(ckpt)
    assert "not verified" in caplog.text
    assert loaded.metadata.sha256 == DEFAULT_MODEL.sha256  # the same metadata, the same digest
    assert json.dumps(loaded.metadata.as_dict())  # still JSON-compatible


def test_swapped_band_list_is_refused_by_scan(small_world: Path, tmp_path: Path) -> None:
    """The same checkpoint named in a scan config: refused before any unit, nothing written."""
    ckpt = tmp_path / "swapped.pt"
    shutil.copyfile(shipped_checkpoint_path(), ckpt)
    _swap_b02_b04(ckpt)
    cfg = small_config(tmp_path, world=small_world,
                       detector={"kind": "network", "checkpoint": str(ckpt)})
    res = minewatch("scan", str(cfg), "--out", "out", cwd=tmp_path)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert "metadata edited after saving" in res.stderr and "retrain" in res.stderr
    assert not (tmp_path / "out" / "alerts.geojson").exists()
