"""The shipped networks as ONNX files (models.onnx_checkpoint): what a CPU-only install runs.

Each export matches its registry sha256, carries the metadata of its ``.pt`` and gives its logits;
an altered or foreign file is refused with one line. Runs in the CPU-only install too (``make
test-cpu``); the comparisons with the ``.pt`` need PyTorch and skip there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from models.checkpoint import load_checkpoint
from models.errors import CheckpointError, ModelError
from models.network import load_network_detector
from models.onnx_checkpoint import OnnxCheckpoint, load_onnx_checkpoint
from models.registry import DEFAULT_MODEL, SYNTHETIC_MODEL, ShippedModel, shipped_checkpoint_path
from models.runtime import build_engine

pytestmark = pytest.mark.cpu_install

SHIPPED = [DEFAULT_MODEL, SYNTHETIC_MODEL]


@pytest.mark.parametrize("model", SHIPPED, ids=lambda m: m.name)
def test_shipped_export_matches_its_registry_sha256(model: ShippedModel) -> None:
    path = shipped_checkpoint_path(model, onnx=True)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == model.onnx_sha256
    ckpt = load_onnx_checkpoint(path, file_sha256=model.onnx_sha256, expected_sha256=model.sha256)
    assert ckpt.metadata.name == model.name
    # the alerts name the checkpoint's sha256, whichever file ran it
    assert ckpt.metadata.sha256 == model.sha256
    assert ckpt.metadata.weights_sha256 == model.weights_sha256
    assert ckpt.stride in (8, 16, 32)  # what the inputs are padded to


@pytest.mark.parametrize("model", SHIPPED, ids=lambda m: m.name)
def test_export_carries_the_metadata_and_logits_of_the_pt(model: ShippedModel) -> None:
    torch = pytest.importorskip("torch")
    from models.checkpoint import build_network

    pt = load_checkpoint(shipped_checkpoint_path(model), expected_sha256=model.sha256)
    onnx = load_onnx_checkpoint(shipped_checkpoint_path(model, onnx=True))
    assert onnx.metadata == pt.metadata
    network = build_network(pt)
    assert onnx.stride == network.stride
    x = np.random.default_rng(0).normal(size=(1, pt.metadata.input_channels, 96, 128))
    x = x.astype(np.float32)
    engine = build_engine(onnx, "cpu", num_threads=1)
    with torch.inference_mode():
        reference = network(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(engine.run(x), reference, atol=1e-3 * np.abs(reference).max())


def test_an_altered_export_is_refused(tmp_path: Path) -> None:
    data = bytearray(shipped_checkpoint_path(DEFAULT_MODEL, onnx=True).read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "altered.onnx"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"altered.onnx: sha256 .* is not the expected"):
        load_onnx_checkpoint(bad, file_sha256=DEFAULT_MODEL.onnx_sha256)


def test_an_onnx_model_without_minewatch_metadata_is_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(shipped_checkpoint_path(DEFAULT_MODEL, onnx=True)))
    del model.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(model, str(plain))
    with pytest.raises(CheckpointError, match="without minewatch metadata"):
        load_onnx_checkpoint(plain)


def test_an_export_with_edited_metadata_is_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(shipped_checkpoint_path(DEFAULT_MODEL, onnx=True)))
    prop = next(p for p in model.metadata_props if p.key == "minewatch.checkpoint")
    meta = json.loads(prop.value)
    meta["bands"] = [meta["bands"][1], meta["bands"][0], *meta["bands"][2:]]
    meta["normalization"]["bands"] = meta["bands"]
    prop.value = json.dumps(meta)
    edited = tmp_path / "edited.onnx"
    onnx.save(model, str(edited))
    with pytest.raises(CheckpointError, match=r"edited\.onnx: metadata edited after saving"):
        load_checkpoint(edited)


def test_not_an_onnx_file_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match=r"junk\.onnx: not a readable ONNX model"):
        load_checkpoint(junk)


def test_an_onnx_checkpoint_runs_as_a_detector_on_the_cpu_only() -> None:
    path = shipped_checkpoint_path(DEFAULT_MODEL, onnx=True)
    detector = load_network_detector(path, device="cpu")
    assert isinstance(detector.checkpoint, OnnxCheckpoint)
    bands = detector.bands
    data = np.full((len(bands), 64, 64), 0.05, dtype=np.float32)
    data[:, :8] = np.nan
    pred = detector.predict(data, bands)
    assert detector.backend == "onnxruntime"
    assert pred.probabilities.shape == (2, 64, 64)
    assert np.isnan(pred.probabilities[:, :8]).all()
    assert np.isfinite(pred.probabilities[:, 8:]).all()
    with pytest.raises(ModelError, match="ONNX checkpoint runs on the CPU with ONNX Runtime"):
        build_engine(detector.checkpoint, "cpu", backend="torch")
