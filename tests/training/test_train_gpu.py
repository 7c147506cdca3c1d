"""The GPU training script (``benchmarks/train_gpu.py``), run on the CPU: the bank made here
and the variants run on it as a GPU machine would (a GPU session has minutes; a script broken
at import would waste them)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml

from models.checkpoint import load_checkpoint

from .test_patches import AQUA, DREDGE, NEG, POS

RIVERBANK = "riverbank_negatives_bolivia_v2025-08_S2L1C_clear0.05_2024-08-01_2024-11-01.png"

REPO = Path(__file__).resolve().parents[2]


def set_of(mosaic: str) -> str:
    return mosaic.split("_S2L1C")[0]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_gpu", REPO / "benchmarks" /
                                                  "train_gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bank_and_variants_run_on_the_cpu(shared_data: Path, chip_folder: Path,
                                          tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for name in (POS, NEG, AQUA, DREDGE, RIVERBANK):
        shutil.copy(shared_data / "amw" / "training_gallery" / name, gallery / name)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"name": "tiny", "version": "0.0.1", "architecture": "unet-slim",
                  "options": {"widths": [4, 8], "blocks": [1, 1]}},
        "bands": ["B02", "B03", "B04", "B08", "B11", "B12"],
        "optional_bands": ["B08", "B11", "B12"],
        "data": {"kind": "chips", "folder": str(chip_folder)},
        "patches": {"data": {"kind": "gallery", "folder": str(gallery),
                             "split": {"by": "set", "val": [set_of(NEG), set_of(DREDGE)],
                                       "test": [set_of(RIVERBANK)]}},
                    "weight": 4.0, "pixel_weight": 0.5, "pool_k": 4, "chip_batch_size": 8,
                    "min_specificity": 0.97, "toa_offset_sigma": 0.01},
        "sampling": {"patch_size_px": 16},
        "augment": {"gain_sigma": 0.05, "band_gain_sigma": 0.02, "offset_sigma": 0.005,
                    "noise_sigma": 0.003, "contrast_sigma": 0.1},
        "optim": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "lr": 0.01,
                  "weight_decay": 0.0001, "schedule": "onecycle"},
        "loss": {"kind": "dice_ce"},
        "output": {"folder": str(tmp_path / "unused")},
    }), encoding="utf-8")
    script = _script()
    bank, out = tmp_path / "bank", tmp_path / "out"
    script.make_bank(config, bank, n_train=6, n_val=2)
    arrays = np.load(bank / "synthetic.npz")
    assert arrays["train_x"].shape == (6, 6, 16, 16) and arrays["val_x"].shape == (2, 6, 32, 32)
    # the test set's mosaic stays behind: the GPU machine never sees it
    assert sorted(p.name for p in (bank / "gallery").iterdir()) == sorted([POS, NEG, AQUA,
                                                                           DREDGE])

    script.run(config, bank, out, ["plain:mil_weight=2",
                                   "wider:widths=4-16,epochs=2,aug_contrast_sigma=0",
                                   "clear:skip=clear0.05,steps_per_epoch=1"])
    summary = json.loads((out / "summary.json").read_text())
    assert [row["variant"].split(":")[0] for row in summary] == ["plain", "wider", "clear"]
    # the clear0.05 variant of the aquaculture negatives is left out of training
    assert summary[0]["train_chips"] > summary[2]["train_chips"] > 0
    plain = load_checkpoint(out / "plain" / "model.pt")
    wider = load_checkpoint(out / "wider" / "model.pt")
    assert plain.metadata.options["widths"] == [4, 8]
    assert wider.metadata.options["widths"] == [4, 16]
    assert 0 <= plain.metadata.extra["thresholds"]["mining"] <= 1
    assert len((out / "wider" / "log.csv").read_text().splitlines()) == 3  # header + 2 epochs

    with pytest.raises(SystemExit, match="unknown key 'epochz'"):
        script.run(config, bank, tmp_path / "out2", ["typo:epochz=3"])


def test_deeper_variant_starts_as_the_checkpoint_it_grows_from() -> None:
    """``blocks=1-1-2-2-2`` from the shipped default (``init_from_checkpoint(grow=True)``): its
    weights fill the first block of each stage and the added blocks start as identities, so the
    deeper network gives the default's logits before training; its extra blocks are there to
    learn. Without ``grow`` the missing blocks are refused."""
    import torch

    from models.checkpoint import build_network
    from models.errors import CheckpointError
    from models.registry import build_model, shipped_checkpoint_path
    from training.mixed import init_from_checkpoint

    path = shipped_checkpoint_path()
    default = build_network(load_checkpoint(path)).eval()
    options = {"widths": [12, 24, 48, 64, 96], "blocks": [1, 1, 2, 2, 2]}
    deeper = build_model("unet-slim", in_channels=9, num_classes=3, options=options)
    with pytest.raises(CheckpointError, match=r"has no weight encoder\.stages\.2\.1\."):
        init_from_checkpoint(deeper, path, optional_channels=3)
    init_from_checkpoint(deeper, path, optional_channels=3, grow=True)
    deeper.eval()
    n_default = sum(p.numel() for p in default.parameters())
    assert sum(p.numel() for p in deeper.parameters()) > 1.5 * n_default
    x = torch.randn(2, 9, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(deeper(x), default(x), atol=1e-5, rtol=1e-5)
        assert deeper.encoder.stages[4][1].bn2.weight.abs().max() == 0
        # without the zeroed scale the added block changes the output: the test can fail
        deeper.encoder.stages[4][1].bn2.weight.fill_(1.0)
        assert (deeper(x) - default(x)).abs().max() > 1e-3


def test_a_checkpoint_deeper_than_the_network_is_refused(tmp_path: Path) -> None:
    """A checkpoint with blocks the network lacks is refused by name, not cut to fit (before,
    its extra weights were dropped without a word)."""
    import dataclasses

    from models.checkpoint import save_checkpoint
    from models.errors import CheckpointError
    from models.registry import build_model, shipped_checkpoint_path
    from training.mixed import init_from_checkpoint

    meta = load_checkpoint(shipped_checkpoint_path()).metadata
    deep_options = {"widths": [12, 24, 48, 64, 96], "blocks": [1, 1, 2, 2, 2]}
    deep = build_model("unet-slim", in_channels=9, num_classes=3, options=deep_options)
    path = tmp_path / "deep.pt"
    save_checkpoint(path, deep, dataclasses.replace(meta, options=deep_options))
    shallow = build_model("unet-slim", in_channels=9, num_classes=3,
                          options={"widths": [12, 24, 48, 64, 96], "blocks": [1, 1, 1, 1, 1]})
    for grow in (False, True):
        with pytest.raises(CheckpointError, match=r"deep.pt: has weights this network lacks "
                           r"\(encoder.stages.2.1.conv1.weight, 36 in all\)"):
            init_from_checkpoint(shallow, path, optional_channels=3, grow=grow)


def test_the_recipe_starts_as_the_synthetic_model_it_grows_from() -> None:
    """configs/train-real.yaml starts its nine-channel network from the six-band synthetic
    model: the availability flags' weights start at zero, so whatever the flags say, the new
    network gives the synthetic model's logits."""
    import torch

    from models.checkpoint import build_network
    from models.registry import SYNTHETIC_MODEL, build_model, shipped_checkpoint_path
    from training.mixed import init_from_checkpoint

    path = shipped_checkpoint_path(SYNTHETIC_MODEL)
    synthetic = build_network(load_checkpoint(path)).eval()
    options = {"widths": [12, 24, 48, 64, 96], "blocks": [1, 1, 1, 1, 1]}
    net = build_model("unet-slim", in_channels=9, num_classes=3, options=options)
    init_from_checkpoint(net, path, optional_channels=3)
    net.eval()
    x = torch.randn(2, 6, 32, 32, generator=torch.Generator().manual_seed(1))
    flags = torch.ones(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(torch.cat([x, flags], 1)), synthetic(x), atol=1e-5,
                                   rtol=1e-5)
