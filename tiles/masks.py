"""Cloud and shadow masks: from the L2A scene classification layer (SCL), or from the trained
detector of `tiles.clouds` for scenes without one (``cloud_mask``: ``scl``, ``ukis-csmask`` or
``auto``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from tiles.bands import DEFAULT_MASKED_SCL, SCL_NAMES
from tiles.clouds import CLEAR, check_cloud_mask, detect_clouds, uses_detector
from tiles.scene import Scene

log = logging.getLogger(__name__)

#: SCL classes whose edges are grown by ``dilation_px``: cloud shadow, medium and high
#: probability cloud, thin cirrus. Sen2Cor under-draws their edges; the other masked classes
#: (no data, saturated) are exact and are not grown.
CLOUD_SHADOW_SCL: tuple[int, ...] = (3, 8, 9, 10)

__all__ = ["CLOUD_SHADOW_SCL", "DEFAULT_MASKED_SCL", "check_mask_options", "clear_mask", "disk"]


def disk(radius_px: int) -> np.ndarray:
    """A disk-shaped structuring element of radius ``radius_px`` pixels (bool, ``2r+1`` wide).

    Raises:
        ValueError: ``radius_px`` is negative.
    """
    if radius_px < 0:
        raise ValueError(f"disk radius {radius_px} must be >= 0")
    yy, xx = np.mgrid[-radius_px : radius_px + 1, -radius_px : radius_px + 1]
    return np.asarray(xx * xx + yy * yy <= radius_px * radius_px)


def check_mask_options(masked_scl: Sequence[int], dilation_px: int) -> tuple[int, ...]:
    """Validate the mask options; return ``masked_scl`` as a tuple of ints.

    Raises:
        ValueError: an unknown SCL class, or a negative or non-integer ``dilation_px``.
    """
    classes = tuple(int(c) for c in masked_scl)
    unknown = [c for c in classes if c not in SCL_NAMES]
    if unknown:
        raise ValueError(
            f"masked_scl {list(masked_scl)}: unknown SCL class(es) {unknown}; expected values in "
            f"{sorted(SCL_NAMES)} ({', '.join(f'{k} {v}' for k, v in SCL_NAMES.items())})"
        )
    if isinstance(dilation_px, bool) or not isinstance(dilation_px, (int, np.integer)):
        raise ValueError(f"dilation_px {dilation_px!r} must be an integer number of pixels")
    if dilation_px < 0:
        raise ValueError(f"dilation_px {dilation_px} must be >= 0")
    return classes


def clear_mask(
    scene: Scene,
    *,
    masked_scl: Sequence[int] = DEFAULT_MASKED_SCL,
    dilation_px: int = 0,
    log_missing_scl: bool = True,
    cloud_mask: str = "auto",
) -> np.ndarray:
    """Where a scene saw the ground clearly: valid data that the cloud mask does not mask.

    With the SCL (``cloud_mask`` ``scl``, or ``auto`` on a scene that has one): pixels of the
    classes in ``masked_scl`` are not clear. The cloud and shadow classes among them
    (`CLOUD_SHADOW_SCL`) are also grown by a disk of ``dilation_px`` pixels, to catch the thin
    cloud and shadow edges Sen2Cor misses. Under ``scl`` a scene without an SCL gets its
    valid-data mask only; this is logged (once per call, i.e. once per scene) since clouds then
    count as clear.

    With the detector (``ukis-csmask``, or ``auto`` on a scene without SCL): the pixels
    `tiles.clouds.detect_clouds` calls cloud or shadow are not clear, grown by ``dilation_px``.
    The scene must then hold the detector's bands (`tiles.clouds.mask_bands`).

    Args:
        scene: the scene (its ``valid`` mask and, when present, its ``scl``).
        masked_scl: SCL classes that are not clear (default: no data, saturated, cloud shadow,
            medium and high probability cloud, thin cirrus).
        dilation_px: radius in pixels by which cloud and shadow classes are grown.
        log_missing_scl: log when the scene has no SCL (callers that summarise it set False).
        cloud_mask: ``scl``, ``ukis-csmask`` or ``auto`` (see `tiles.clouds`).

    Returns:
        ``(row, col)`` bool, True where the pixel is valid and clear.

    Raises:
        ValueError: an unknown SCL class or ``cloud_mask``, or a negative or non-integer
            ``dilation_px``.
        CloudDetectorMissingError: the detector is needed but not installed.
        MissingBandError: the detector is needed but the scene lacks its bands.
    """
    classes = check_mask_options(masked_scl, dilation_px)
    check_cloud_mask(cloud_mask)
    clear = np.array(scene.valid, dtype=bool, copy=True)
    if uses_detector(cloud_mask, has_scl=scene.scl is not None):
        cloudy = detect_clouds(scene) != CLEAR
        if dilation_px > 0 and cloudy.any():
            cloudy = ndimage.binary_dilation(cloudy, structure=disk(dilation_px))
        clear &= ~cloudy
        return clear
    if scene.scl is None:
        if log_missing_scl:
            log.warning(
                "scene %s has no SCL band: no cloud mask applied, only the valid-data mask",
                scene.info.scene_id,
            )
        return clear
    scl = scene.scl
    clear &= ~np.isin(scl, classes)
    if dilation_px > 0:
        grown = [c for c in classes if c in CLOUD_SHADOW_SCL]
        if grown:
            cloudy = np.isin(scl, grown)
            if cloudy.any():
                cloudy = ndimage.binary_dilation(cloudy, structure=disk(dilation_px))
                clear &= ~cloudy
    return clear
