"""Engines (models.runtime): every engine agrees with the plain network; ONNX exports are
cached and rebuilt when corrupt; a missing onnxruntime falls back to PyTorch (auto) or says how
to fix it."""

from __future__ import annotations

import logging
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import (
    Checkpoint,
    CheckpointMetadata,
    build_network,
    load_checkpoint,
    save_checkpoint,
)
from models.errors import ModelError
from models.network import NetworkDetector
from models.normalization import Normalization
from models.registry import DEFAULT_BANDS, build_model, shipped_checkpoint_path
from models.runtime import OnnxEngine, TorchEngine, build_engine, fold_batchnorm

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    torch.manual_seed(0)
    options = {"widths": [4, 8, 8], "blocks": [1, 1, 1]}
    model = build_model("unet-slim", in_channels=6, options=options)
    # Non-trivial batch-norm statistics, so folding them has something to get wrong.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    meta = CheckpointMetadata(
        name="tiny", version="0.0.1", architecture="unet-slim", options=options,
        bands=DEFAULT_BANDS, normalization=Normalization(DEFAULT_BANDS, (0.05,) * 6, (0.05,) * 6),
        patch_size_px=32,
    )
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    save_checkpoint(path, model, meta)
    return load_checkpoint(path)


def _plain(checkpoint: Checkpoint, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return build_network(checkpoint)(x)


def test_folding_removes_every_batch_norm_and_keeps_the_output(tiny: Checkpoint) -> None:
    x = torch.randn(2, 6, 64, 96)
    folded = fold_batchnorm(build_network(tiny))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.inference_mode():
        np.testing.assert_allclose(folded(x), _plain(tiny, x), atol=1e-4)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_engines_agree_with_the_plain_network_on_any_shape(
    tiny: Checkpoint, backend: str, tmp_path: Path
) -> None:
    engine = build_engine(tiny, CPU, backend=backend, cache_dir=tmp_path)
    assert engine.backend == backend
    # Shapes the export never saw: batch 3, height != width (dynamic dimensions).
    x = torch.randn(3, 6, 96, 160)
    out = engine(x)
    assert out.shape == (3, 3, 96, 160) and out.dtype == torch.float32
    np.testing.assert_allclose(out, _plain(tiny, x), atol=1e-4)


def test_shipped_network_through_onnx_runtime_matches_pytorch(tmp_path: Path) -> None:
    checkpoint = load_checkpoint(shipped_checkpoint_path())
    x = torch.randn(1, checkpoint.metadata.input_channels, 128, 192)
    onnx = build_engine(checkpoint, CPU, backend="onnxruntime", cache_dir=tmp_path)
    np.testing.assert_allclose(onnx(x), _plain(checkpoint, x), atol=1e-3)


def test_auto_picks_onnx_runtime_on_the_cpu_and_torch_when_compiling(
    tiny: Checkpoint, tmp_path: Path
) -> None:
    assert isinstance(build_engine(tiny, CPU, cache_dir=tmp_path), OnnxEngine)
    assert isinstance(build_engine(tiny, CPU, backend="torch"), TorchEngine)


def test_export_is_cached_and_a_corrupt_cache_is_rebuilt(
    tiny: Checkpoint, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build_engine(tiny, CPU, backend="onnxruntime", cache_dir=tmp_path)
    (cached,) = (tmp_path / "onnx").glob("tiny-*.onnx")
    assert cached.stat().st_size > 1000
    cached.write_bytes(b"<html>proxy error</html>")
    with caplog.at_level(logging.WARNING, logger="models.runtime"):
        engine = build_engine(tiny, CPU, backend="onnxruntime", cache_dir=tmp_path)
    assert "unreadable" in caplog.text
    assert cached.read_bytes()[:4] != b"<htm"  # written again
    x = torch.randn(1, 6, 64, 64)
    np.testing.assert_allclose(engine(x), _plain(tiny, x), atol=1e-4)


def test_an_unwritable_cache_only_costs_the_export(tiny: Checkpoint, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    engine = build_engine(tiny, CPU, backend="onnxruntime", cache_dir=blocker)
    assert engine.backend == "onnxruntime"


def test_missing_onnxruntime(
    tiny: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    assert build_engine(tiny, CPU, cache_dir=tmp_path).backend == "torch"
    with pytest.raises(ModelError, match="pip install onnxruntime"):
        build_engine(tiny, CPU, backend="onnxruntime", cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "tensorrt"}, "backend 'tensorrt': expected one of auto, torch, onnxruntime"),
        ({"backend": "onnxruntime", "compile_model": True}, "use device 'cpu' without --compile"),
    ],
)
def test_bad_backend_requests_say_what_to_do(
    tiny: Checkpoint, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        build_engine(tiny, CPU, **kwargs)  # type: ignore[arg-type]


def test_onnx_runtime_is_refused_on_cuda(tiny: Checkpoint) -> None:
    with pytest.raises(ModelError, match="runs the network on the CPU"):
        build_engine(tiny, torch.device("cuda"), backend="onnxruntime")


def test_a_used_detector_pickles_and_rebuilds_its_engine(tiny: Checkpoint) -> None:
    """Dask sends the detector to its workers: the ONNX session must not travel."""
    detector = NetworkDetector(tiny, device="cpu")
    chip = np.random.default_rng(0).uniform(0, 0.3, (6, 80, 80)).astype(np.float32)
    before = detector.predict(chip, DEFAULT_BANDS).probabilities
    assert detector.backend == "onnxruntime"
    copy = pickle.loads(pickle.dumps(detector))
    np.testing.assert_allclose(copy.predict(chip, DEFAULT_BANDS).probabilities, before, atol=1e-6)


def test_detector_backends_give_the_same_probabilities(tiny: Checkpoint) -> None:
    chip = np.random.default_rng(1).uniform(0, 0.3, (6, 100, 140)).astype(np.float32)
    chip[:, 5:9, 7:30] = np.nan
    a = NetworkDetector(tiny, device="cpu", backend="torch").predict(chip, DEFAULT_BANDS)
    b = NetworkDetector(tiny, device="cpu", backend="onnxruntime").predict(chip, DEFAULT_BANDS)
    np.testing.assert_array_equal(np.isnan(a.probabilities), np.isnan(b.probabilities))
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
