"""Labelled-tile datasets, sampling, augmentation, the training loop, metrics and evaluation.

``training`` imports ``aoi``, ``tiles`` and ``models``, never ``detection``.
"""

from training.config import EvaluateConfig, TrainConfig, load_evaluate_config, load_train_config
from training.data import (
    IGNORE_INDEX,
    LabelledImage,
    PatchDataset,
    assign_splits,
    read_chip_folder,
    scene_label_images,
    synthetic_images,
    write_chip_folder,
)
from training.errors import DatasetError, TrainConfigError, TrainingError
from training.evaluate import EvaluationReport, classify, evaluate, write_report
from training.metrics import ClassScores, ConfusionMatrix, SiteScores, match_sites
from training.train import TrainResult, load_labelled_images, train

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
