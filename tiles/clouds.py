"""Clouds and cloud shadows of scenes that have no scene classification layer (SCL).

L1C products, a user's own GeoTIFFs, older or clipped files carry no SCL. Without a mask their
clouds count as clear, and a cloudy first period that clears later looks like new bare ground: a
false mining alert. This module masks them with a trained detector that ships its weights in its
PyPI package and runs offline: ``ukis-csmask`` (DLR, Apache-2.0), a U-Net (EfficientNet-B4
encoder) exported to ONNX, one network for L1C and one for L2A, run by ONNX Runtime. It was chosen
over ``s2cloudless`` by measurement (``benchmarks/cloud_detectors.py``, docs/imagery.md):
on the real reference chip it scores Cohen's kappa 0.81 over {clear, cloud, shadow}, cloud recall
0.986, shadow recall 0.963, in 1.7 CPU seconds per 1024 px chip (2 threads); s2cloudless needs
five bands that chip lacks (B01, B05, B8A, B09, B10) and has no shadow class.

The networks were trained on about 30 m pixels. `detect_clouds` averages the scene's bands onto a
grid of about 30 m, classifies it and brings the classes back to the scene's grid (nearest).

``composite.cloud_mask`` chooses, per scan:

- ``scl``: the SCL only (a scene without one is used unmasked, with a warning);
- ``ukis-csmask``: the detector on every scene, SCL or not;
- ``auto`` (default): the SCL when the scene has one, else the detector. When the detector is
  not installed a scene without SCL is refused (`CloudDetectorMissingError`), never counted clear.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tiles.errors import CloudDetectorMissingError, MissingBandError
from tiles.scene import Scene, SceneInfo

log = logging.getLogger(__name__)

#: The trained detector behind ``cloud_mask: ukis-csmask`` (PyPI name, import name).
DETECTOR = "ukis-csmask"
DETECTOR_MODULE = "ukis_csmask"

CloudMask = Literal["scl", "ukis-csmask", "auto"]
CLOUD_MASKS: tuple[str, ...] = ("scl", DETECTOR, "auto")

#: Classes of `detect_clouds`.
CLEAR, CLOUD, SHADOW = 0, 1, 2

#: Bands of the detector's six-band networks (blue, green, red, NIR, SWIR 1, SWIR 2), and of the
#: four-band ones used when a scene lacks the SWIR bands.
DETECTOR_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B11", "B12")
DETECTOR_BANDS_4: tuple[str, ...] = ("B02", "B03", "B04", "B08")
_BAND_ORDER = {
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B08": "nir",
    "B11": "swir16",
    "B12": "swir22",
}

#: Pixel size (m) the networks were trained on.
DETECTOR_RESOLUTION_M = 30.0

#: What to do when the detector is missing.
INSTALL_FIX = (
    f"install it with 'pip install {DETECTOR}' (its networks are inside the package; it runs "
    "offline), or set 'composite: cloud_mask: scl' to accept that clouds in scenes without SCL "
    "count as clear"
)


def detector_available() -> bool:
    """Whether the cloud detector's package can be imported."""
    try:
        return importlib.util.find_spec(DETECTOR_MODULE) is not None
    except (ImportError, ValueError):
        return False


def uses_detector(cloud_mask: str, *, has_scl: bool) -> bool:
    """Whether a scene is masked by the detector (rather than its SCL) under ``cloud_mask``.

    Raises:
        ValueError: ``cloud_mask`` is not one of `CLOUD_MASKS`.
    """
    check_cloud_mask(cloud_mask)
    return cloud_mask == DETECTOR or (cloud_mask == "auto" and not has_scl)


def check_cloud_mask(cloud_mask: str) -> str:
    """``cloud_mask`` when it is one of `CLOUD_MASKS`.

    Raises:
        ValueError: it is not.
    """
    if cloud_mask not in CLOUD_MASKS:
        raise ValueError(f"cloud_mask {cloud_mask!r}: expected one of {list(CLOUD_MASKS)}")
    return cloud_mask


def require_detector(cloud_mask: str, scenes: Iterable[SceneInfo]) -> None:
    """Refuse, before anything is read, scenes that need the detector when it is not installed.

    Raises:
        CloudDetectorMissingError: ``cloud_mask`` is ``ukis-csmask``, or ``auto`` with a scene
            without SCL, and the detector's package cannot be imported; the message names the
            scenes and the fix.
        ValueError: an unknown ``cloud_mask``.
    """
    needing = [s.scene_id for s in scenes if uses_detector(cloud_mask, has_scl=s.has_scl)]
    if not needing or detector_available():
        return
    shown = ", ".join(needing[:3]) + (f" and {len(needing) - 3} more" if len(needing) > 3 else "")
    why = (
        "they have no SCL band (scene classification)"
        if cloud_mask == "auto"
        else "cloud_mask is 'ukis-csmask'"
    )
    raise CloudDetectorMissingError(
        f"cloud_mask {cloud_mask!r}: {len(needing)} scene(s) ({shown}) need the cloud and shadow "
        f"detector {DETECTOR!r} because {why}, but the Python package {DETECTOR_MODULE!r} is not "
        f"installed; {INSTALL_FIX}"
    )


def mask_bands(bands: Sequence[str], available: Sequence[str]) -> tuple[str, ...]:
    """``bands`` plus the detector bands the scene offers and ``bands`` lacks (what to read so
    the detector can run on the scene)."""
    need = DETECTOR_BANDS if all(b in available for b in DETECTOR_BANDS) else DETECTOR_BANDS_4
    return tuple(bands) + tuple(b for b in need if b not in bands and b in available)


def bands_to_read(bands: Sequence[str], info: SceneInfo, cloud_mask: str) -> tuple[str, ...]:
    """The bands to read of a scene so it can be composited from ``bands`` and masked under
    ``cloud_mask``: ``bands``, plus the detector's when the scene is masked by it."""
    if uses_detector(cloud_mask, has_scl=info.has_scl):
        return mask_bands(bands, info.bands)
    return tuple(bands)


def detect_clouds(scene: Scene, *, threads: int = 0) -> np.ndarray:
    """Clear / cloud / shadow per pixel of ``scene``, by the ``ukis-csmask`` networks.

    The six-band network (B02 B03 B04 B08 B11 B12) is used when the scene has those bands, else
    the four-band one (B02 B03 B04 B08); the L1C or L2A network per ``scene.info.processing_level``.
    The bands are averaged onto a grid of about 30 m (3 x 3 pixels at 10 m), classified, and the
    classes brought back to the scene's grid.

    Args:
        scene: the scene in reflectance (top of atmosphere for L1C, surface for L2A).
        threads: ONNX Runtime threads (0: its own choice).

    Returns:
        ``(row, col)`` uint8: `CLEAR` 0, `CLOUD` 1, `SHADOW` 2; `CLEAR` where the scene is not
        valid (the valid-data mask removes those pixels anyway).

    Raises:
        CloudDetectorMissingError: ``ukis-csmask`` is not installed.
        MissingBandError: the scene lacks B02, B03, B04 or B08.
    """
    names = DETECTOR_BANDS if all(b in scene.bands for b in DETECTOR_BANDS) else DETECTOR_BANDS_4
    missing = [b for b in names if b not in scene.bands]
    if missing:
        raise MissingBandError(
            f"scene {scene.info.scene_id}: the cloud detector needs band(s) {missing} (it uses "
            f"{list(DETECTOR_BANDS)}, or at least {list(DETECTOR_BANDS_4)}); the scene was read "
            f"with {list(scene.bands)}"
        )
    height, width = scene.valid.shape
    if not scene.valid.any():
        return np.zeros((height, width), dtype=np.uint8)
    factor = max(1, round(DETECTOR_RESOLUTION_M / abs(float(scene.transform.a))))
    stack = np.stack([scene.band(b) for b in names]).astype(np.float32)
    coarse, coarse_valid = _block_mean(stack, scene.valid, factor)
    image = np.moveaxis(coarse, 0, -1).copy()  # (row, col, band)
    level = scene.info.processing_level.lower()
    classes = classify(image, [_BAND_ORDER[b] for b in names], level=level, threads=threads)
    classes[~coarse_valid] = CLEAR
    if factor > 1:
        classes = np.repeat(np.repeat(classes, factor, axis=0), factor, axis=1)
    return np.ascontiguousarray(classes[:height, :width])


def classify(
    image: np.ndarray, band_order: Sequence[str], *, level: str, threads: int = 0
) -> np.ndarray:
    """The ``ukis-csmask`` classes (0 clear, 1 cloud, 2 shadow) of ``image`` ``(row, col, band)``
    in reflectance, band names as ``ukis-csmask`` spells them (``blue``, ..., ``swir22``).

    The same as ``CSmask(image, band_order, product_level=level).csm``, but the ONNX Runtime
    session of each network is made once per process and reused (`CSmask` loads the 40 MB
    network for every image, 0.9 s on the benchmark machine): the package's own normalisation,
    tiling, blending and network do the work. ``tests/tiles/test_l1c_clouds.py`` checks the
    two agree pixel for pixel.

    Raises:
        CloudDetectorMissingError: ``ukis-csmask`` (or ONNX Runtime) cannot be imported.
    """
    try:
        from ukis_csmask import mask as csmask
    except ImportError as exc:
        raise CloudDetectorMissingError(
            f"the cloud and shadow detector {DETECTOR!r} cannot be imported ({exc}); {INSTALL_FIX}"
        ) from exc
    CSmask = csmask.CSmask
    names = [b.lower() for b in band_order]
    bands = "6b" if all(b in names for b in ("swir16", "swir22")) else "4b"
    # the networks lie beside the module, as CSmask finds them
    model_file = Path(csmask.__file__).parent / f"model_{bands}_{level.lower()}.onnx"
    meta = json.loads(model_file.with_suffix(".json").read_text(encoding="utf-8"))
    stats = meta["data"]["dataset_statistics"]
    net = CSmask.__new__(CSmask)  # its __init__ would load the network again
    net.session = _session(str(model_file), threads)
    net.input_names = net.session.get_inputs()[0].name
    net.target_size = meta["data"]["target_size"]
    net.batch_size = 1
    ordered = CSmask.adjust_band_order(image, names, stats["band_names"])
    net.img = CSmask.normalize(
        ordered.astype(np.float32), mean=stats["img"][0], std=stats["img"][1]
    )
    return np.asarray(net._csm()[..., 0], dtype=np.uint8)


@functools.lru_cache(maxsize=8)
def _session(model_file: str, threads: int) -> Any:
    """One ONNX Runtime session per network and thread count, for the life of the process."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        model_file, sess_options=options, providers=["CPUExecutionProvider"]
    )


def _block_mean(stack: np.ndarray, valid: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Average ``(band, row, col)`` over ``factor`` x ``factor`` blocks, valid pixels only.

    Returns the coarse stack (invalid blocks filled with the mean of the valid ones, so the
    network sees no NaN) and the coarse valid mask.
    """
    bands, height, width = stack.shape
    rows, cols = -(-height // factor), -(-width // factor)
    padded = np.zeros((bands, rows * factor, cols * factor), dtype=np.float32)
    weight = np.zeros((rows * factor, cols * factor), dtype=np.float32)
    ok = valid & np.all(np.isfinite(stack), axis=0)
    padded[:, :height, :width] = np.where(ok, stack, np.float32(0.0))
    weight[:height, :width] = ok
    sums = padded.reshape(bands, rows, factor, cols, factor).sum(axis=(2, 4))
    counts = weight.reshape(rows, factor, cols, factor).sum(axis=(1, 3))
    coarse_valid = counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        coarse = sums / np.maximum(counts, 1.0)
    fill = coarse[:, coarse_valid].mean(axis=1) if coarse_valid.any() else np.zeros(bands)
    coarse[:, ~coarse_valid] = fill[:, None]
    return coarse.astype(np.float32), coarse_valid


__all__ = [
    "CLEAR",
    "CLOUD",
    "CLOUD_MASKS",
    "DETECTOR",
    "DETECTOR_BANDS",
    "SHADOW",
    "CloudMask",
    "bands_to_read",
    "check_cloud_mask",
    "classify",
    "detect_clouds",
    "detector_available",
    "mask_bands",
    "require_detector",
    "uses_detector",
]
