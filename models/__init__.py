"""Network definitions, the checkpoint format, the registry of shipped weights, normalisation.

The detectors (the segmentation network and the spectral-index baseline) share one protocol,
:class:`Detector`. ``models`` imports only ``tiles`` (band names), never ``detection``/``training``.
"""

from models.checkpoint import (
    Checkpoint,
    CheckpointMetadata,
    band_order,
    build_network,
    checkpoint_sha256,
    load_checkpoint,
    save_checkpoint,
    weights_sha256,
)
from models.detector import ALERT_CLASSES, Detector, ModelInfo, Prediction
from models.errors import BandMismatchError, CheckpointError, ModelError
from models.network import NetworkDetector, load_network_detector, resolve_device
from models.normalization import Normalization, normalization_from_images
from models.registry import (
    ARCHITECTURES,
    DEFAULT_BANDS,
    DEFAULT_MODEL,
    NETWORK_CLASSES,
    Architecture,
    ShippedModel,
    architecture_options,
    build_model,
    load_encoder_weights,
    shipped_checkpoint_path,
)

__all__ = [
    "ALERT_CLASSES",
    "ARCHITECTURES",
    "DEFAULT_BANDS",
    "DEFAULT_MODEL",
    "NETWORK_CLASSES",
    "Architecture",
    "BandMismatchError",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMetadata",
    "Detector",
    "ModelError",
    "ModelInfo",
    "NetworkDetector",
    "Normalization",
    "Prediction",
    "ShippedModel",
    "architecture_options",
    "band_order",
    "build_model",
    "build_network",
    "checkpoint_sha256",
    "load_checkpoint",
    "load_encoder_weights",
    "load_network_detector",
    "normalization_from_images",
    "resolve_device",
    "save_checkpoint",
    "shipped_checkpoint_path",
    "weights_sha256",
]
