"""Labelled-tile datasets, sampling, augmentation, the training loop, metrics and evaluation.

``training`` imports ``aoi``, ``tiles`` and ``models``, never ``detection``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names are imported on first use: ``training.metrics`` (the scan's truth check) and the
# evaluation of the shipped ONNX networks run in a CPU-only install, without the PyTorch that the
# training loop and its datasets import.
_HOME = {
    "config": ("EvaluateConfig", "TrainConfig", "load_evaluate_config", "load_train_config"),
    "dataset": ("PatchDataset",),
    "data": (
        "IGNORE_INDEX",
        "LabelledImage",
        "assign_splits",
        "load_labelled_images",
        "read_chip_folder",
        "scene_label_images",
        "synthetic_images",
        "write_chip_folder",
    ),
    "errors": ("DatasetError", "TrainConfigError", "TrainingError"),
    "evaluate": ("EvaluationReport", "classify", "evaluate", "write_report"),
    "metrics": ("ClassScores", "ConfusionMatrix", "SiteScores", "match_sites"),
    "train": ("TrainResult", "train"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'training' has no attribute {name!r}")
    return getattr(importlib.import_module(f"training.{module}"), name)


__all__ = [
    "IGNORE_INDEX",
    "ClassScores",
    "ConfusionMatrix",
    "DatasetError",
    "EvaluateConfig",
    "EvaluationReport",
    "LabelledImage",
    "PatchDataset",
    "SiteScores",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "TrainingError",
    "assign_splits",
    "classify",
    "evaluate",
    "load_evaluate_config",
    "load_labelled_images",
    "load_train_config",
    "match_sites",
    "read_chip_folder",
    "scene_label_images",
    "synthetic_images",
    "train",
    "write_chip_folder",
    "write_report",
]
