from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import CheckpointMetadata, load_checkpoint, save_checkpoint
from models.detector import Detector
from models.errors import BandMismatchError
from models.network import NetworkDetector, load_network_detector
from models.normalization import Normalization
from models.registry import DEFAULT_BANDS, build_model

OPTIONS = {"widths": [4, 8, 8], "blocks": [1, 1, 1]}


@pytest.fixture
def detector(tmp_path: Path) -> NetworkDetector:
    torch.manual_seed(0)
    model = build_model("unet-slim", in_channels=6, options=OPTIONS)
    meta = CheckpointMetadata(
        name="tiny", version="0.0.1", architecture="unet-slim", options=OPTIONS,
        bands=DEFAULT_BANDS, normalization=Normalization(DEFAULT_BANDS, (0.05,) * 6, (0.05,) * 6),
        patch_size_px=32,
    )
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model, meta)
    return load_network_detector(path, device="cpu")


def _chip(h: int, w: int, bands: tuple[str, ...] = DEFAULT_BANDS) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0.0, 0.3, (len(bands), h, w)).astype(np.float32)


def test_is_a_detector_with_checkpoint_identity(detector: NetworkDetector) -> None:
    assert isinstance(detector, Detector)
    assert detector.bands == DEFAULT_BANDS
    ckpt = detector.checkpoint
    assert detector.info.sha256 == ckpt.metadata.sha256
    assert detector.info.name == "tiny"


@pytest.mark.parametrize("shape", [(272, 300), (64, 64), (20, 37)])
def test_any_chip_size_gives_probabilities_on_its_grid(
    detector: NetworkDetector, shape: tuple[int, int]
) -> None:
    pred = detector.predict(_chip(*shape), DEFAULT_BANDS)
    assert pred.classes == ("mining", "deforestation")
    assert pred.probabilities.shape == (2, *shape)
    assert pred.probabilities.dtype == np.float32
    p = pred.probabilities
    assert np.all((p >= 0) & (p <= 1))


def test_tiling_matches_whole_chip_prediction(detector: NetworkDetector) -> None:
    chip = _chip(96, 96)
    tiled = NetworkDetector(detector.checkpoint, device="cpu", tile_px=64, overlap_px=32)
    whole = NetworkDetector(detector.checkpoint, device="cpu", tile_px=96)
    a = tiled.predict(chip, DEFAULT_BANDS).probabilities
    b = whole.predict(chip, DEFAULT_BANDS).probabilities
    assert np.abs(a - b).mean() < 0.05


def test_bands_are_reordered_by_name(detector: NetworkDetector) -> None:
    chip = _chip(64, 64)
    order = [5, 3, 0, 1, 4, 2]
    shuffled = (*(DEFAULT_BANDS[i] for i in order), "B05")
    data = np.concatenate([chip[order], chip[:1]], axis=0)
    a = detector.predict(chip, DEFAULT_BANDS).probabilities
    b = detector.predict(data, shuffled).probabilities
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_nan_in_nan_out(detector: NetworkDetector) -> None:
    chip = _chip(64, 64)
    chip[2, 10:20, 5:9] = np.nan
    p = detector.predict(chip, DEFAULT_BANDS).probabilities
    assert np.isnan(p[:, 10:20, 5:9]).all()
    assert np.isfinite(p[:, 30:, 30:]).all()
    empty = np.full((6, 32, 32), np.nan, dtype=np.float32)
    assert np.isnan(detector.predict(empty, DEFAULT_BANDS).probabilities).all()


def test_missing_band_names_bands_and_fix(detector: NetworkDetector) -> None:
    bands = ("B02", "B03", "B04", "B08")
    with pytest.raises(
        BandMismatchError,
        match=r"needs band\(s\) \['B11', 'B12'\].*got bands \['B02', 'B03', 'B04', 'B08'\]"
        r".*composite\.bands",
    ):
        detector.predict(_chip(32, 32, bands), bands)


def test_checkpoint_without_sha_is_refused(tmp_path: Path, detector: NetworkDetector) -> None:
    from models.errors import CheckpointError

    path = detector.checkpoint.path
    assert path is not None
    payload = torch.load(path, weights_only=True)
    payload["metadata"]["weights_sha256"] = "f" * 64
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not match the recorded"):
        load_network_detector(path, device="cpu")
    assert load_checkpoint  # imported API stays public


def _planted_mine(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Forest with a river and an alluvial mine beside it: turbid ponds in bare tailings."""
    from tiles.spectra import SPECTRA, SPECTRAL_BANDS, Surface

    idx = [SPECTRAL_BANDS.index(b) for b in DEFAULT_BANDS]

    def spec(s: Surface, mix: float = 0.5) -> np.ndarray:
        a, b = np.array(SPECTRA[s].a), np.array(SPECTRA[s].b)
        return ((1 - mix) * a + mix * b)[idx].astype(np.float32)

    rng = np.random.default_rng(1)
    image = spec(Surface.FOREST)[:, None, None] * (
        1 + 0.08 * rng.standard_normal((6, size, size))
    ).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    river = np.abs(xx - (60 + 12 * np.sin(yy / 25))) < 6
    image[:, river] = spec(Surface.RIVER)[:, None]
    mine = ((yy - 128) ** 2 / 30**2 + (xx - 110) ** 2 / 40**2) < 1
    image[:, mine] = spec(Surface.MINING_SEDIMENT)[:, None]
    ponds = mine & ((yy // 9) % 2 == 0) & ((xx // 11) % 2 == 0)
    image[:, ponds] = spec(Surface.MINING_POND)[:, None]
    image += 0.003 * rng.standard_normal(image.shape).astype(np.float32)
    return image.astype(np.float32), mine


@pytest.mark.slow
def test_shipped_model_finds_a_planted_mine() -> None:
    det = load_network_detector(None, device="cpu")
    assert det.info.name == "minewatch-unet-slim-real"
    image, mine = _planted_mine()
    p = det.predict(image, DEFAULT_BANDS).of("mining")
    assert np.nanmean(p[mine] >= 0.5) > 0.5
    assert np.nanmean(p[~mine] >= 0.5) < 0.02
