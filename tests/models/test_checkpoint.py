from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import (
    CheckpointMetadata,
    build_network,
    checkpoint_sha256,
    load_checkpoint,
    save_checkpoint,
    weights_sha256,
)
from models.errors import CheckpointError
from models.normalization import Normalization
from models.registry import build_model

BANDS = ("B02", "B03", "B04")
OPTIONS = {"widths": [4, 8], "blocks": [1, 1], "decoder_channels": None}


def _meta() -> CheckpointMetadata:
    return CheckpointMetadata(
        name="tiny", version="0.0.1", architecture="unet-slim", options=OPTIONS, bands=BANDS,
        normalization=Normalization(BANDS, (0.05, 0.06, 0.07), (0.02, 0.02, 0.03)),
        patch_size_px=32, training_data={"kind": "test"}, metrics={"mining": {"iou": 0.5}},
    )


@pytest.fixture
def saved(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = build_model("unet-slim", in_channels=3, options=OPTIONS).eval()
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model, _meta())
    return model, path


def test_round_trip_gives_same_outputs(saved: tuple[torch.nn.Module, Path]) -> None:
    model, path = saved
    ckpt = load_checkpoint(path)
    assert ckpt.metadata.bands == BANDS
    assert ckpt.metadata.metrics == {"mining": {"iou": 0.5}}
    assert ckpt.metadata.weights_sha256 == weights_sha256(model.state_dict())
    again = build_network(ckpt)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(model(x), again(x))


def test_half_checkpoint_is_close(saved: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    model, _ = saved
    path = save_checkpoint(tmp_path / "half.pt", model, _meta(), half=True).path
    assert path is not None
    ckpt = load_checkpoint(path)
    assert ckpt.state_dict["head.weight"].dtype == torch.float16
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        np.testing.assert_allclose(build_network(ckpt)(x), model(x), atol=2e-2)


def test_corrupt_file_names_path_and_fix(saved: tuple[torch.nn.Module, Path]) -> None:
    _, path = saved
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match=r"tiny.pt: corrupt .*retrain"):
        load_checkpoint(path)


def test_altered_weights_fail_the_sha256(saved: tuple[torch.nn.Module, Path]) -> None:
    _, path = saved
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["head.bias"] += 1.0
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not match the recorded"):
        load_checkpoint(path)


def test_expected_sha256_mismatch(saved: tuple[torch.nn.Module, Path]) -> None:
    _, path = saved
    with pytest.raises(CheckpointError, match="is not the expected"):
        load_checkpoint(path, expected_sha256="0" * 64)


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    foreign = tmp_path / "state.pt"
    torch.save({"conv.weight": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="not a minewatch checkpoint"):
        load_checkpoint(foreign)


def test_shape_mismatch_is_named(saved: tuple[torch.nn.Module, Path]) -> None:
    _, path = saved
    payload = torch.load(path, weights_only=True)
    payload["metadata"]["options"]["widths"] = [4, 12]
    # Sealed again: a consistent checkpoint whose weights do not fit its architecture.
    payload["metadata"]["sha256"] = checkpoint_sha256(
        CheckpointMetadata.from_dict(payload["metadata"])
    )
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"shape mismatch .*file \(8,"):
        build_network(load_checkpoint(path))


def test_metadata_bands_must_match_normalization() -> None:
    with pytest.raises(CheckpointError, match="normalization bands"):
        CheckpointMetadata(
            name="x", version="1", architecture="unet-slim", options={}, bands=("B02",),
            normalization=Normalization(("B03",), (0.0,), (1.0,)),
        )
