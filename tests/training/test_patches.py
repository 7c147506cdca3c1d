"""Patch-labelled real chips: the gallery reader, the multiple-instance loss, patch metrics, the
band-availability input and ``minewatch evaluate`` on a gallery folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from models.checkpoint import CheckpointMetadata, network_input
from models.errors import BandMismatchError
from models.network import NetworkDetector, load_network_detector
from training.errors import DatasetError
from training.patches import gallery_label, read_chip_csv, read_gallery, split_groups
from training.patchlevel import mil_loss, patch_scores, pool_scores, roc_auc

AQUA = "aquaculture-faziendas-negatives2025-08_S2L1C_clear0.05_2024-01-01_2025-01-01.png"
POS = "v3.6_2023_positives_S2L1C_clear0.75_2023-01-01_2024-01-01.png"
NEG = "v2.6_amazon_negatives_v2_S2L1C_clear0.75_2019-01-01_2020-01-01.png"


@pytest.fixture(scope="module")
def gallery(shared_data: Path) -> Path:
    return shared_data / "amw" / "training_gallery"


def test_gallery_reader_on_a_real_mosaic(gallery: Path, tmp_path: Path) -> None:
    shutil.copy(gallery / AQUA, tmp_path / AQUA)
    (group,) = read_gallery(tmp_path)
    # 240 x 240 px = 5 x 5 cells of 48 px; the last 4 cells are black (unused) and dropped.
    assert len(group) == 21 and group.images.shape == (21, 3, 48, 48)
    assert group.labels.tolist() == [0] * 21 and set(group.kinds) == {"aquaculture"}
    assert group.bands == ("B02", "B03", "B04")
    assert group.sources[-1].endswith("#20")
    # TOA reflectance = value / 255 * 0.3: every value on that grid, at most 0.3.
    dn = group.images / (0.3 / 255)
    assert np.allclose(dn, np.round(dn), atol=1e-3) and group.images.max() <= 0.3 + 1e-6
    assert group.set == "aquaculture-faziendas-negatives2025-08" and group.radiometry == "toa"


def test_gallery_labels_and_errors(tmp_path: Path) -> None:
    assert gallery_label("riverbank_negatives_v2025-08_S2L1C.png") == (0, "riverbank")
    assert gallery_label("v4.10_Q125_cloud_remnant_negatives.png") == (0, "cloud_remnant")
    assert gallery_label("MinesPos2018-2020Sentinel_points_S2L1C.png") == (1, "mining")
    with pytest.raises(DatasetError, match="neither 'positives' nor 'negatives'"):
        gallery_label("scene.png")
    with pytest.raises(DatasetError, match="not found"):
        read_gallery(tmp_path / "nowhere")


def test_splits_keep_sets_and_regions_whole(gallery: Path, tmp_path: Path) -> None:
    for name in (AQUA, AQUA.replace("clear0.05", "clear0.75"), POS, NEG):
        shutil.copy(gallery / name, tmp_path / name)
    groups = read_gallery(tmp_path, regions={"amazon": "amazon-wide"})
    out = split_groups(groups, by="set", val=["v3.6_2023_positives"], test=[])
    by_set = {g.name: g.split for g in out}
    # the clear0.05 and clear0.75 mosaics of one set show the same places: one split
    assert by_set[AQUA[:-4]] == by_set[AQUA.replace("clear0.05", "clear0.75")[:-4]] == "train"
    assert by_set[POS[:-4]] == "val"
    with pytest.raises(DatasetError, match="unknown region"):
        split_groups(groups, by="region", val=["atlantis"], test=[])


def test_chip_csv_form(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = ["file,label,kind,set"]
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            tmp_path / f"c{i}.png")
        rows.append(f"c{i}.png,{'mining' if i == 0 else 0},{'' if i == 0 else 'pond'},mine")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (group,) = read_chip_csv(tmp_path, radiometry="toa")
    assert group.labels.tolist() == [1, 0, 0] and group.kinds == ("mining", "pond", "pond")
    (tmp_path / "labels.csv").write_text("file,label\nc0.png,maybe\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="label 'maybe'"):
        read_chip_csv(tmp_path)


def test_mil_loss_wants_mining_pixels_in_positive_chips() -> None:
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    background = torch.zeros(1, 3, 8, 8)
    background[:, 0] = 4.0  # every pixel background
    with_mine = background.clone()
    with_mine[:, 1, :4, :4] = 8.0  # 16 mining pixels
    positive = torch.tensor([1])
    assert mil_loss(background, positive, valid) > mil_loss(with_mine, positive, valid) + 1.0
    # a negative chip: the reverse
    negative = torch.tensor([0])
    assert mil_loss(with_mine, negative, valid) > mil_loss(background, negative, valid) + 1.0
    # the loss reaches the logits of the pooled pixels
    logits = background.clone().requires_grad_(True)
    mil_loss(logits, positive, valid).backward()
    assert logits.grad is not None and logits.grad[:, 1].abs().sum() > 0


def test_pooling_ignores_unobserved_pixels() -> None:
    prob = torch.zeros(1, 4, 4)
    prob[0, 0, 0] = 1.0
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    assert float(pool_scores(prob, valid, k=2)) == pytest.approx(0.5)
    valid[0, 0, 0] = False
    assert float(pool_scores(prob, valid, k=2)) == pytest.approx(0.0)


def test_patch_metrics_against_hand_computed_values() -> None:
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.6])
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    kinds = ["mining"] * 3 + ["riverbank", "riverbank", "random", "random"]
    s = patch_scores(scores, labels, 0.65, kinds=kinds)
    assert (s.tp, s.fn, s.tn, s.fp) == (2, 1, 3, 1)
    assert s.sensitivity == pytest.approx(2 / 3) and s.specificity == pytest.approx(3 / 4)
    # pairs (pos, neg) ranked right: 0.9 and 0.8 beat all 4; 0.3 beats 0.2 and 0.1 -> 10 / 12
    assert roc_auc(scores, labels) == pytest.approx(10 / 12)
    assert s.false_alarms_by_kind == {
        "random": {"chips": 2, "false_alarms": 0, "rate": 0.0},
        "riverbank": {"chips": 2, "false_alarms": 1, "rate": 0.5},
    }


def test_shipped_default_takes_rgb_only_and_uses_nir_swir() -> None:
    det = load_network_detector(device="cpu", backend="torch")
    meta = det.checkpoint.metadata
    assert meta.optional_bands == ("B08", "B11", "B12") and meta.input_channels == 9
    assert 0 < meta.extra["thresholds"]["mining"] < 1
    rng = np.random.default_rng(1)
    six = (rng.random((6, 64, 64)) * 0.1 + 0.02).astype(np.float32)
    bands6 = ("B02", "B03", "B04", "B08", "B11", "B12")
    rgb = det.predict(six[:3], bands6[:3]).probabilities
    assert rgb.shape == (2, 64, 64) and np.isfinite(rgb).all()
    x, _ = network_input(meta, six[:3], bands6[:3])
    assert x[6:].max() == 0  # NIR/SWIR flagged absent
    full = det.predict(six, bands6).probabilities
    brighter = six.copy()
    brighter[3] += 0.3  # much more NIR: vegetation, not mining
    assert not np.allclose(full, det.predict(brighter, bands6).probabilities, atol=1e-4)
    assert not np.allclose(full, rgb, atol=1e-4)
    with pytest.raises(BandMismatchError, match=r"\['B04'\]"):
        det.predict(six[:2], bands6[:2])


def test_checkpoint_without_optional_bands_still_needs_them() -> None:
    from models.checkpoint import load_checkpoint
    from models.registry import SYNTHETIC_MODEL, shipped_checkpoint_path

    ckpt = load_checkpoint(shipped_checkpoint_path(SYNTHETIC_MODEL))
    assert isinstance(ckpt.metadata, CheckpointMetadata) and ckpt.metadata.optional_bands == ()
    det = NetworkDetector(ckpt, device="cpu", backend="torch")
    with pytest.raises(BandMismatchError, match="B08"):
        det.predict(np.zeros((3, 32, 32), np.float32), ("B02", "B03", "B04"))


@pytest.mark.slow
def test_evaluate_a_gallery_folder_end_to_end(gallery: Path, tmp_path: Path) -> None:
    from .test_cli import cli as main

    folder = tmp_path / "gallery"
    folder.mkdir()
    for name in (POS, NEG, AQUA):
        shutil.copy(gallery / name, folder / name)
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({"data": {"kind": "gallery", "folder": str(folder)},
                                      "output": {"folder": str(tmp_path / "out")},
                                      "device": "cpu"}), encoding="utf-8")
    result = CliRunner().invoke(main, ["evaluate", str(config), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    level = report["patch_level"]
    assert level["chips"] == {"total": 25 + 19 + 21, "mining": 25, "not_mining": 40,
                              "sets": sorted(["v3.6_2023_positives", "v2.6_amazon_negatives_v2",
                                              "aquaculture-faziendas-negatives2025-08"])}
    net = level["checkpoint"]
    assert net["detector"]["name"] == "minewatch-unet-slim-real"
    from models.checkpoint import load_checkpoint
    from models.registry import shipped_checkpoint_path

    stored = load_checkpoint(shipped_checkpoint_path()).metadata.extra["thresholds"]["mining"]
    assert 0.5 < stored < 1 and net["threshold"] == pytest.approx(stored, abs=1e-6)
    c = net["counts"]
    assert c["true_positives"] + c["false_negatives"] == 25
    assert c["true_negatives"] + c["false_positives"] == 40
    assert net["sensitivity"] == pytest.approx(c["true_positives"] / 25, abs=1e-4)
    assert set(net["false_alarm_rate_by_kind"]) == {"other", "aquaculture"}
    assert 0 <= net["roc_auc"] <= 1 and "without_toa_conversion" in net
    assert level["index_baseline"]["detector"]["name"] == "indices"
    assert (tmp_path / "out" / "chips.png").stat().st_size > 10_000

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"kind": "gallery", "folder": str(tmp_path / "no")},
                                   "output": {"folder": str(tmp_path / "o2")}}), encoding="utf-8")
    result = CliRunner().invoke(main, ["evaluate", str(bad)])
    assert result.exit_code == 1 and "gallery folder not found" in result.output


def test_chips_png_rows_hold_only_their_kind() -> None:
    """With one false alarm, the false-alarm row shows that chip alone: missed mines scoring
    just under the threshold stay in their own row (they once filled the false alarms' row)."""
    from training.patch_evaluate import chip_rows

    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.99, 0.50, 0.95, 0.97, 0.10, 0.20, 0.96])
    rows = chip_rows(labels, scores, threshold=0.964, per_row=4)
    assert rows["mining, surest"].tolist() == [0, 2, 1]
    assert rows["mining, missed"].tolist() == [1, 2]
    assert rows["not mining, false alarms"].tolist() == [3]
    assert rows["not mining, surest"].tolist() == [4, 5, 6, 3]
    assert chip_rows(labels, scores, threshold=0.999)["not mining, false alarms"].size == 0


DREDGE = "dredge_mining_positives2025-08_S2L1C_clear0.75_2024-08-01_2024-11-01.png"


def test_contrast_jitter_keeps_each_chips_band_means() -> None:
    from training.mixed import ChipAugment

    x = 0.1 + torch.rand(3, 3, 8, 8) * 0.02  # stays above 0 (clamped) at any contrast
    aug = ChipAugment(flips=False, rot90=False, gain_sigma=0, band_gain_sigma=0, offset_sigma=0,
                      toa_offset_sigma=0, noise_sigma=0, contrast_sigma=0.3)
    y = aug(x, torch.zeros(3, dtype=torch.bool), torch.Generator().manual_seed(1))
    assert torch.allclose(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-5)
    ratio = y.std(dim=(2, 3)) / x.std(dim=(2, 3))
    assert not torch.allclose(ratio, torch.ones_like(ratio), atol=1e-3)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4)  # one factor a chip


@pytest.mark.slow
def test_train_mixes_gallery_chips_keeps_the_weight_average_and_resumes(
    gallery: Path, chip_folder: Path, tmp_path: Path
) -> None:
    """``minewatch train`` with pixel chips and gallery mosaics: the chip validation is logged,
    the threshold stored, the kept weights are the moving average (not the last step's), and a
    resumed run continues the average."""
    from models.checkpoint import load_checkpoint
    from training.config import TrainConfig
    from training.train import train

    from .conftest import TINY_OPTIONS

    folder = tmp_path / "gallery"
    folder.mkdir()
    for name in (POS, NEG, AQUA, DREDGE):
        shutil.copy(gallery / name, folder / name)
    out = tmp_path / "run"

    def config(epochs: int, **kw: object) -> TrainConfig:
        return TrainConfig.model_validate({
            "model": {"name": "tiny", "architecture": "unet-slim", "options": TINY_OPTIONS},
            "bands": ["B02", "B03", "B04", "B08", "B11", "B12"],
            "optional_bands": ["B08", "B11", "B12"],
            "data": {"kind": "chips", "folder": str(chip_folder)},
            "patches": {"data": {"kind": "gallery", "folder": str(folder),
                                 "split": {"by": "set", "test": [],
                                           "val": ["v3.6_2023_positives",
                                                   "aquaculture-faziendas-negatives2025-08"]}},
                        "weight": 4.0, "chip_batch_size": 8},
            "sampling": {"patch_size_px": 32, "patches_per_epoch": 8},
            "augment": {"contrast_sigma": 0.15},
            "optim": {"epochs": epochs, "steps_per_epoch": 3, "batch_size": 4, "lr": 0.01,
                      "ema_decay": 0.9},
            "device": "cpu", "output": {"folder": str(out)}, **kw})

    train(config(2))
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and "val_chip_auc" in rows[0] and rows[1].split(",")[10] != ""
    best = load_checkpoint(out / "best.pt")
    last = load_checkpoint(out / "last.pt")
    assert 0 <= best.metadata.extra["thresholds"]["mining"] <= 1
    assert last.training_state is not None and "ema" in last.training_state
    raw = last.state_dict
    averaged = {k[len("module."):]: v for k, v in last.training_state["ema"].items()
                if k.startswith("module.")}
    assert averaged.keys() == raw.keys()
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw if raw[k].is_floating_point())

    train(config(3, resume=str(out / "last.pt")))
    assert len((out / "log.csv").read_text().splitlines()) == 4
    assert int(load_checkpoint(out / "last.pt").training_state["ema"]["n_averaged"]) == 9
