"""One-off: the reference scores of Amazon Mining Watch's original Keras classifiers.

Runs the two ``.h5`` files of ``$MINEWATCH_SHARED_DATA/amw/models/`` with the original framework
(TensorFlow + tf_keras, NOT a minewatch dependency) on fixed inputs and writes
``amw_reference.npz`` beside this script; ``tests/models/test_amw.py`` checks the PyTorch
conversion against it to 1e-4. Run once, in a throw-away virtual environment::

    python3 -m venv /tmp/amw-tf && /tmp/amw-tf/bin/pip install tensorflow-cpu tf-keras h5py
    /tmp/amw-tf/bin/python tests/models/data/make_amw_reference.py

(made with tensorflow-cpu 2.21.0 and tf-keras 2.21.0 on CPU.)

Inputs, stored as L1C digital numbers (uint16) in AMW's 13-band order, B01 B02 B03 B04 B05 B06
B07 B8A B08 B09 B10 B11 B12; the models see ``clip(DN / 10000, 0, 1)`` in float32 (the
12-band model the same without B10):

* 16 real patches: the four 48 px corners of the first four scenes of
  ``eolearn_s2_l1c/REFERENCE_SCENES.npy`` (real Sentinel-2 L1C over Slovenia, eo-learn's band
  order B01..B08 B8A B09..B12 reordered to AMW's);
* 8 seeded random patches (seed 20261204): 4 uniform DN 0..12000 (some clip at 1), 4 smooth
  (per-band constants plus a gentle gradient);
* 8 patches pushed towards mining: real patches (the first two corners of scenes 0..3) moved
  by signed-gradient steps of 50 DN on the original model until its score passes 0.2, 0.5,
  0.8 or 0.97 (alternately for the 13-band model and the 12-band ensemble), so that the
  comparison covers the whole score range and the threshold, not only scores near 0.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("MINEWATCH_SHARED_DATA", "/work/shared/data"))
MODELS = {
    "v4_21": "48px_v4.21-CNN100ka_2026-05-08ep179.h5",
    "v3_ensemble": "48px_v3.2-3.7ensemble_2024-02-13.h5",
}
EOLEARN_ORDER = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                 "B11", "B12"]
AMW_ORDER = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B08", "B09", "B10",
             "B11", "B12"]


def inputs() -> np.ndarray:
    scenes = np.load(SHARED / "eolearn_s2_l1c" / "REFERENCE_SCENES.npy")  # (5, 101, 100, 13)
    order = [EOLEARN_ORDER.index(b) for b in AMW_ORDER]
    patches = []
    for s in range(4):
        img = scenes[s][..., order]
        h, w = img.shape[:2]
        for r, c in ((0, 0), (0, w - 48), (h - 48, 0), (h - 48, w - 48)):
            patches.append(np.round(img[r : r + 48, c : c + 48] * 10000))
    rng = np.random.default_rng(20261204)
    for _ in range(4):
        patches.append(rng.integers(0, 12000, size=(48, 48, 13)))
    yy, xx = np.mgrid[0:48, 0:48] / 47.0
    for _ in range(4):
        base = rng.uniform(200, 4000, size=13)
        slope = rng.uniform(-1500, 1500, size=(2, 13))
        patches.append(base + yy[..., None] * slope[0] + xx[..., None] * slope[1])
    return np.clip(np.stack(patches), 0, 65535).astype(np.uint16)  # (N, 48, 48, 13)


def pushed(models: list, dn: np.ndarray) -> np.ndarray:
    """Real patches moved up each model's score by signed-gradient steps (see the doc)."""
    import tensorflow as tf

    b10 = AMW_ORDER.index("B10")
    keep12 = [i for i in range(13) if i != b10]
    import tf_keras

    def last_dense(model: object) -> list:
        layers = getattr(model, "layers", [])
        subs = [m for m in layers if hasattr(m, "layers")]
        return [m.layers[-1] for m in subs] if subs else [layers[-1]]

    out = []
    for i, target in enumerate((0.2, 0.5, 0.8, 0.97) * 2):
        model = models[i % 2]
        # Ascend the logits (a saturated sigmoid has no gradient), stop on the score.
        heads = last_dense(model)
        for head in heads:
            head.activation = tf_keras.activations.linear
        x = tf.Variable(np.clip(dn[2 * (i // 2) + i % 2 : 2 * (i // 2) + i % 2 + 1]
                                .astype(np.float32) / 10000, 0, 1))
        for _ in range(400):
            with tf.GradientTape() as tape:
                inp = x if model.input_shape[-1] == 13 else tf.gather(x, keep12, axis=-1)
                logits = model(inp, training=False)
                loss = -tf.reduce_mean(logits)
            if float(tf.reduce_mean(tf.sigmoid(logits))) >= target:
                break
            x.assign(tf.clip_by_value(x - 0.005 * tf.sign(tape.gradient(loss, x)), 0, 1))
        for head in heads:
            head.activation = tf_keras.activations.sigmoid
        out.append(np.round(x.numpy()[0] * 10000))
    return np.clip(np.stack(out), 0, 65535).astype(np.uint16)


def main() -> int:
    import tensorflow as tf
    import tf_keras

    dn = inputs()
    models = [
        tf_keras.models.load_model(str(SHARED / "amw" / "models" / name), compile=False)
        for name in MODELS.values()
    ]
    dn = np.concatenate([dn, pushed(models, dn)])
    x13 = np.clip(dn.astype(np.float32) / np.float32(10000), 0, 1)
    x12 = np.delete(x13, AMW_ORDER.index("B10"), axis=-1)
    out: dict[str, np.ndarray] = {"dn": dn}
    for (key, name), model in zip(MODELS.items(), models, strict=True):
        x = x13 if model.input_shape[-1] == 13 else x12
        members = np.asarray(model.predict(x, verbose=0), dtype=np.float32).reshape(len(x), -1)
        out[f"{key}_members"] = members
        out[f"{key}_score"] = members.mean(axis=1)  # upstream's ensemble score
        print(f"{name}: scores {np.round(out[f'{key}_score'], 4)}")
    out["versions"] = np.array([f"tensorflow {tf.__version__}", f"tf_keras {tf_keras.__version__}"])
    np.savez_compressed(HERE / "amw_reference.npz", **out)
    print(f"wrote {HERE / 'amw_reference.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
