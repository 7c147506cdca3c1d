from __future__ import annotations

import numpy as np
import pytest

from models.detector import ModelInfo, Prediction
from training.data import LabelledImage
from training.evaluate import classify, score_detector
from training.metrics import ConfusionMatrix

from .conftest import planted_image


class Oracle:
    """Predicts a given class map as probabilities 0/1."""

    def __init__(self, classes: np.ndarray) -> None:
        self.classes = classes

    @property
    def info(self) -> ModelInfo:
        return ModelInfo("oracle", "1", "0" * 64)

    @property
    def bands(self) -> tuple[str, ...]:
        return ("B02",)

    def predict(self, data: np.ndarray, bands: tuple[str, ...]) -> Prediction:
        p = np.stack([self.classes == 1, self.classes == 2]).astype(np.float32)
        p[:, ~np.isfinite(data).all(axis=0)] = np.nan
        return Prediction(("mining", "deforestation"), p)


def test_confusion_scores_known_values() -> None:
    cm = ConfusionMatrix(("background", "mining", "deforestation"))
    truth = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 255])
    pred = np.array([0, 1, 0, 1, 1, 1, 0, 2, 1, 1])
    cm.update(pred, truth)
    mining = cm.scores("mining")
    assert (mining.tp, mining.fp, mining.fn) == (3, 2, 1)
    assert mining.precision == pytest.approx(0.6)
    assert mining.recall == pytest.approx(0.75)
    assert mining.f1 == pytest.approx(2 * 3 / (6 + 2 + 1))
    assert mining.iou == pytest.approx(0.5)
    d = cm.scores("deforestation")
    assert (d.precision, d.recall, d.iou) == (1.0, 0.5, 0.5)


def test_classify_thresholds_and_nan() -> None:
    p = np.array([[[0.7, 0.2, 0.6, np.nan]], [[0.1, 0.3, 0.8, np.nan]]], dtype=np.float32)
    assert classify(p, 0.5).tolist() == [[1, 0, 2, 255]]


def test_score_detector_on_known_predictions() -> None:
    image = planted_image("a", "r1", seed=2)
    truth = image.label
    pred = truth.copy()
    rows, cols = np.nonzero(truth == 1)
    pred[rows[:36], cols[:36]] = 0  # miss the first 3 rows of the 12x12 mine: recall 0.75
    pred[40:44, 40:43] = 2  # 12 false deforestation pixels away from everything
    pred[pred == 2] = np.where(truth[pred == 2] == 2, 2, pred[pred == 2])
    im = LabelledImage("a", "r1", ("B02",), image.image[:1], truth, image.crs, image.transform)
    scores, kept = score_detector(Oracle(pred), [im], threshold=0.5, min_site_area_ha=0.0,
                                  keep=1)
    mining = scores.confusion.scores("mining")
    assert mining.precision == 1.0
    assert mining.recall == pytest.approx(0.75)
    assert mining.iou == pytest.approx(0.75)
    defo = scores.confusion.scores("deforestation")
    assert defo.recall == 1.0
    overlap = int((truth[40:44, 40:43] == 2).sum())
    assert defo.precision == pytest.approx(144 / (144 + 12 - overlap))
    assert scores.sites["mining"].recall == 1.0
    assert scores.sites["deforestation"].truth_total == 1
    assert set(scores.by_region) == {"r1"}
    assert kept[0].shape == truth.shape
