"""Raster -> probability COG: scenes through a network or the AMW classifier."""

from __future__ import annotations

from detection.inference._amw import STRIP_ROWS, AmwScenePrediction, predict_scene_amw
from detection.inference._cog import read_probabilities
from detection.inference._common import (
    TAG_THRESHOLDS,
    UINT8_NODATA,
    UINT8_SCALE,
    Device,
    InferenceOptions,
    ProgressFn,
    RasterPrediction,
    RowsFn,
)
from detection.inference._predictor import ScenePredictor, predict_raster
from detection.inference._reading import (
    BlockReader,
    SceneRadiometry,
    WindowSpec,
    read_into,
    scene_grid,
    scene_radiometry,
    valid_pixels,
)
from models.site_rule import checkpoint_thresholds

__all__ = [
    "STRIP_ROWS",
    "TAG_THRESHOLDS",
    "UINT8_NODATA",
    "UINT8_SCALE",
    "AmwScenePrediction",
    "BlockReader",
    "Device",
    "InferenceOptions",
    "ProgressFn",
    "RasterPrediction",
    "RowsFn",
    "ScenePredictor",
    "SceneRadiometry",
    "WindowSpec",
    "checkpoint_thresholds",
    "predict_raster",
    "predict_scene_amw",
    "read_into",
    "read_probabilities",
    "scene_grid",
    "scene_radiometry",
    "valid_pixels",
]
