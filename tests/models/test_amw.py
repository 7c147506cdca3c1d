"""Amazon Mining Watch's classifiers converted from Keras: parity with the original, the
converter, the shipped checkpoints' metadata, and the sliding-window detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.amw import (
    AMW_BANDS_12,
    AMW_BANDS_13,
    AmwDetector,
    build_amw_network,
    convert_h5,
    load_amw_detector,
    main,
)
from models.checkpoint import load_checkpoint
from models.errors import BandMismatchError, CheckpointError, ModelError
from models.registry import AMW_MODEL, AMW_V421_MODEL, shipped_checkpoint_path

REFERENCE = Path(__file__).parent / "data" / "amw_reference.npz"
H5 = {
    AMW_V421_MODEL.name: "48px_v4.21-CNN100ka_2026-05-08ep179.h5",
    AMW_MODEL.name: "48px_v3.2-3.7ensemble_2024-02-13.h5",
}
KEYS = {AMW_V421_MODEL.name: "v4_21", AMW_MODEL.name: "v3_ensemble"}


def _reference_inputs() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    ref = dict(np.load(REFERENCE))
    x13 = np.clip(ref["dn"].astype(np.float32) / np.float32(10000), 0, 1)
    x12 = np.delete(x13, AMW_BANDS_13.index("B10"), axis=-1)
    return ref, {AMW_V421_MODEL.name: x13, AMW_MODEL.name: x12}


@pytest.mark.parametrize("model", [AMW_V421_MODEL, AMW_MODEL], ids=lambda m: m.name)
def test_shipped_conversion_matches_the_original_keras_scores(model):
    """Scores of the original (TensorFlow/Keras, tests/models/data/make_amw_reference.py) on
    real and seeded patches; the converted network agrees to 1e-4, member by member."""
    ref, inputs = _reference_inputs()
    key = KEYS[model.name]
    ckpt = load_checkpoint(shipped_checkpoint_path(model), expected_sha256=model.sha256)
    net = build_amw_network(ckpt)
    with torch.inference_mode():
        members = net(torch.from_numpy(inputs[model.name]).permute(0, 3, 1, 2)).numpy()
    assert members.shape == ref[f"{key}_members"].shape
    assert np.abs(members - ref[f"{key}_members"]).max() <= 1e-4
    score = members.mean(axis=1)
    assert np.abs(score - ref[f"{key}_score"]).max() <= 1e-4
    # the detector's CPU engine (ONNX Runtime, exported from the converted network) too
    det = AmwDetector(ckpt, device="cpu", backend="onnxruntime")
    assert det.backend == "onnxruntime"
    fast = det.scores(inputs[model.name].transpose(0, 3, 1, 2))
    assert np.abs(fast - ref[f"{key}_score"]).max() <= 1e-4
    # the fixture spans the range, both sides of the threshold
    assert (ref[f"{key}_score"] > 0.5).sum() >= 3 and (ref[f"{key}_score"] < 0.5).sum() >= 10


def test_detector_scores_one_window_as_the_original():
    """A 48 px composite is one window: its raster holds the patch's reference score."""
    ref, _ = _reference_inputs()
    i = int(np.argmax(ref["v4_21_score"]))
    dn = ref["dn"][i].transpose(2, 0, 1).astype(np.float32)
    det = load_amw_detector(shipped_checkpoint_path(AMW_V421_MODEL), device="cpu")
    pred = det.predict(dn / 10000, AMW_BANDS_13)
    assert pred.classes == ("mining",)
    assert np.allclose(pred.of("mining"), ref["v4_21_score"][i], atol=1e-4)
    # band order comes from the names: the same bands shuffled give the same score
    order = np.random.default_rng(0).permutation(13)
    shuffled = det.predict(dn[order] / 10000, tuple(AMW_BANDS_13[k] for k in order))
    assert np.allclose(shuffled.probabilities, pred.probabilities, atol=1e-6)
    # and the order matters: B08 and B8A named the other way round change the score
    swapped = list(AMW_BANDS_13)
    i8, i8a = swapped.index("B08"), swapped.index("B8A")
    swapped[i8], swapped[i8a] = swapped[i8a], swapped[i8]
    wrong = det.predict(dn / 10000, tuple(swapped)).of("mining")
    assert np.abs(wrong - pred.of("mining")).max() > 1e-3


@pytest.mark.parametrize("model", [AMW_V421_MODEL, AMW_MODEL], ids=lambda m: m.name)
def test_converter_rebuilds_the_shipped_weights(shared_data, tmp_path, model):
    """python -m models.amw reproduces the shipped checkpoint's weights from the .h5 exactly."""
    h5 = shared_data / "amw" / "models" / H5[model.name]
    out = tmp_path / "amw.pt"
    assert main([str(h5), str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.metadata.weights_sha256 == model.weights_sha256
    assert ckpt.metadata.name == model.name


def test_shipped_metadata_states_the_input_convention_and_published_figures():
    meta = load_checkpoint(shipped_checkpoint_path(AMW_V421_MODEL)).metadata
    assert meta.bands == AMW_BANDS_13 and meta.bands.index("B8A") < meta.bands.index("B08")
    assert meta.classes == ("mining",) and meta.patch_size_px == 48
    assert meta.extra["radiometry"] == "l1c_dn_over_10000"
    assert meta.extra["thresholds"] == {"mining": 0.5}
    assert "Copyright (c) 2022 Earth Genome" in meta.extra["attribution"]
    published = meta.metrics["published"]
    assert published["average_precision"]["val"] == pytest.approx(0.9536159881582461)
    mine = published["classification_report_at_0.5"]["test2"]["Mine"]
    assert mine["recall"] == pytest.approx(0.9694656488549618)
    ens = load_checkpoint(shipped_checkpoint_path(AMW_MODEL)).metadata
    assert ens.bands == AMW_BANDS_12 and "B10" not in ens.bands
    assert len(ens.options["members"]) == 6 and ens.options["combine"] == "mean"


def test_missing_band_is_refused_naming_it_and_the_fix():
    det = load_amw_detector(shipped_checkpoint_path(AMW_V421_MODEL), device="cpu")
    bands = tuple(b for b in AMW_BANDS_13 if b != "B10")
    with pytest.raises(BandMismatchError, match=r"lacks \['B10'\].*12-band AMW checkpoint"):
        det.predict(np.zeros((12, 64, 64), np.float32), bands)
    default = load_amw_detector(device="cpu")  # the 12-band ensemble
    assert default.info.sha256 == AMW_MODEL.sha256 and "B10" not in default.bands
    with pytest.raises(BandMismatchError, match=r"lacks \['B01', 'B05'"):
        default.predict(
            np.zeros((6, 64, 64), np.float32), ("B02", "B03", "B04", "B08", "B11", "B12")
        )


def test_stride_sets_the_windows_and_is_checked(monkeypatch):
    ckpt = load_checkpoint(shipped_checkpoint_path(AMW_V421_MODEL))
    data = np.full((13, 96, 120), 0.05, np.float32)
    data[:, :10, :10] = np.nan  # unobserved corner stays NaN
    seen: dict[int, int] = {}
    for stride in (48, 24, 12):
        det = AmwDetector(ckpt, stride_px=stride, device="cpu")
        calls: list[int] = []
        orig = det.scores

        def count(p, orig=orig, calls=calls):
            calls.append(len(p))
            return orig(p)

        monkeypatch.setattr(det, "scores", count)
        prob = det.predict(data, AMW_BANDS_13).of("mining")
        seen[stride] = sum(calls)
        assert np.isnan(prob[:10, :10]).all() and np.isfinite(prob[10:, 10:]).all()
    # rows: 96 px -> starts 0, 48 | 0, 24, 48 | 0, 12, ..., 48; cols: 120 px likewise + the edge
    assert seen == {48: 2 * 3, 24: 3 * 4, 12: 5 * 7}
    assert AmwDetector(ckpt, device="cpu").stride_px == 24  # upstream's default
    for bad in (0, 49):
        with pytest.raises(ModelError, match=f"stride_px {bad}: expected 1..48"):
            AmwDetector(ckpt, stride_px=bad, device="cpu")


def test_a_network_checkpoint_is_not_an_amw_one(tmp_path):
    from models.registry import DEFAULT_MODEL

    with pytest.raises(CheckpointError, match="not an AMW patch classifier"):
        load_amw_detector(shipped_checkpoint_path(DEFAULT_MODEL))


def test_converter_refuses_a_file_that_is_not_keras(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(CheckpointError, match="not an HDF5 file"):
        convert_h5(bad, tmp_path / "x.pt")
    assert main([str(tmp_path / "none.h5"), str(tmp_path / "y.pt")]) == 1
    assert not (tmp_path / "y.pt").exists()


def test_converter_names_a_layer_it_does_not_support(shared_data, tmp_path):
    """The real 13-band file with one layer changed to BatchNormalization: refused by name,
    nothing written."""
    import json
    import shutil

    import h5py

    h5 = tmp_path / "changed.h5"
    shutil.copy(shared_data / "amw" / "models" / H5[AMW_V421_MODEL.name], h5)
    h5.chmod(0o644)
    with h5py.File(h5, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        layer = config["config"]["layers"][2]
        layer["class_name"] = "BatchNormalization"
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(CheckpointError, match=r"Keras layer 'conv2d_10' \(BatchNormalization\)"):
        convert_h5(h5, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_second_opinion_keeps_network_mining_only_where_the_amw_score_agrees():
    """The shipped U-Net beside the 12-band AMW ensemble on a 48 x 96 composite: left a patch
    the ensemble scores ~1 (from the fixture), right a real forest patch it scores ~0. Mining
    stays the network's on the left, is 0 on the right; deforestation is untouched."""
    from models.amw import AmwAgreement
    from models.network import load_network_detector

    ref, _ = _reference_inputs()
    score = ref["v3_ensemble_score"]
    hi, lo = int(np.argmax(score)), int(np.argmin(score))
    assert score[hi] > 0.9 and score[lo] < 0.01
    dn = np.concatenate([ref["dn"][hi], ref["dn"][lo]], axis=1)  # (48, 96, 13)
    data = dn.transpose(2, 0, 1).astype(np.float32) / 10000
    network = load_network_detector(device="cpu", backend="torch")
    amw = load_amw_detector(device="cpu", stride_px=48)
    both = AmwAgreement(network, amw)
    assert both.threshold == 0.5 and set(network.bands) <= set(both.bands)
    assert both.info.name == f"{network.info.name}+{amw.info.name}"
    alone = network.predict(data, AMW_BANDS_13)
    agreed = both.predict(data, AMW_BANDS_13)
    assert agreed.classes == alone.classes
    mining, m0 = agreed.of("mining"), alone.of("mining")
    assert np.array_equal(mining[:, :48], m0[:, :48])
    assert (m0[:, 48:] > 0).all() and (mining[:, 48:] == 0).all()
    assert np.array_equal(agreed.of("deforestation"), alone.of("deforestation"))
    with pytest.raises(BandMismatchError, match="lacks"):
        both.predict(data[:6], AMW_BANDS_13[:6])


def test_reading_l1c_converts_the_network_s_input_and_not_the_classifier_s():
    """For L1C scenes the surface-reflectance U-Net subtracts its checkpoint's top-of-atmosphere
    offsets (a detector of its own, part of a unit's key through ``options``); the AMW ensemble,
    trained on L1C, reads the values as they are; for L2A nothing changes."""
    from models.amw import AmwAgreement
    from models.detector import for_level
    from models.network import load_network_detector
    from tiles.radiometry import toa_to_surface

    ref, _ = _reference_inputs()
    data = ref["dn"][0].transpose(2, 0, 1).astype(np.float32) / 10000  # (13, 48, 48) TOA
    network = load_network_detector(device="cpu", backend="torch")
    amw = load_amw_detector(device="cpu", stride_px=48)
    assert for_level(network, "L2A") is network and for_level(network, None) is network
    assert for_level(amw, "L1C") is amw
    l1c = for_level(network, "L1C")
    assert l1c is not network and network.options == {}
    assert l1c.options == {"toa_offsets": "B02=0.074,B03=0.044,B04=0.03"}
    offsets = network.checkpoint.metadata.extra["toa_offsets"]
    surface = toa_to_surface(data, AMW_BANDS_13, offsets)
    read = l1c.predict(data, AMW_BANDS_13).probabilities
    np.testing.assert_array_equal(read, network.predict(surface, AMW_BANDS_13).probabilities)
    assert not np.array_equal(read, network.predict(data, AMW_BANDS_13).probabilities)
    both = for_level(AmwAgreement(network, amw), "L1C")
    assert both.primary.options == l1c.options and both.amw is amw
    assert both.options["toa_offsets"] == l1c.options["toa_offsets"]
    assert for_level(AmwAgreement(network, amw), "L2A").primary is network
