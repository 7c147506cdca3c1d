from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from detection.runs import SitesConfig
from detection.sites import class_mask, resolve_thresholds
from models.detector import ALERT_CLASSES, ModelInfo, Prediction
from models.site_rule import SiteRule
from training.config import load_evaluate_config
from training.data import LabelledImage
from training.errors import TrainConfigError
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


def test_classify_is_the_scans_rule() -> None:
    """Evaluation calls pixels as a scan does: per-class thresholds (the rule's, else the
    checkpoint's), the opening that removes specks, the minimum mapping unit, the more probable
    class where both are called, and NaN unscored."""
    image = planted_image("a", "r1", seed=2)  # 10 m pixels: 0.5 ha = 50 px
    p = np.zeros((2, *image.label.shape), dtype=np.float32)
    p[0, 10:20, 10:20] = 0.7  # a 100 px mine: called at 0.6, not at 0.8
    p[0, 40, 40] = 0.99  # a one-pixel speck: removed by the opening
    p[1, 30:36, 30:36] = 0.9  # 36 px of deforestation: below the 0.5 ha unit
    p[1, 12:20, 10:20] = 0.8  # deforestation overlapping the mine, more probable there
    p[:, 0, 0] = np.nan
    rule = SiteRule(thresholds={"mining": 0.6, "deforestation": 0.5})
    codes = classify(p, image, rule=rule, thresholds=rule.resolved(ALERT_CLASSES))
    assert (codes[10:12, 10:20] == 1).all() and (codes[12:20, 10:20] == 2).all()
    assert codes[40, 40] == 0 and not codes[30:36, 30:36].any() and codes[0, 0] == 255
    strict = SiteRule(thresholds={"mining": 0.8})
    assert not (classify(p, image, rule=strict, thresholds=strict.resolved(ALERT_CLASSES)) == 1
                ).any()
    # the same masks as the scan's detection.sites.class_mask with the scan's own options
    options = SitesConfig(thresholds={"mining": 0.6, "deforestation": 0.5}).mask_options()
    thresholds = resolve_thresholds(options)
    scan_mining, _ = class_mask(p[0], "mining", thresholds=thresholds, options=options)
    evaluated = classify(p, image, rule=SiteRule(thresholds={"mining": 0.6, "deforestation": 0.5},
                                                 min_area_ha=0.0),
                         thresholds=thresholds)
    assert np.array_equal(scan_mining[10:12], evaluated[10:12] == 1)


def test_score_detector_on_known_predictions() -> None:
    image = planted_image("a", "r1", seed=2)
    truth = image.label
    pred = truth.copy()
    rows, cols = np.nonzero(truth == 1)
    pred[rows[:36], cols[:36]] = 0  # miss the first 3 rows of the 12x12 mine: recall 0.75
    pred[40:44, 40:43] = 2  # 12 false deforestation pixels away from everything
    pred[pred == 2] = np.where(truth[pred == 2] == 2, 2, pred[pred == 2])
    im = LabelledImage("a", "r1", ("B02",), image.image[:1], truth, image.crs, image.transform)
    rule = SiteRule(min_area_ha=0.0, opening_px=0, closing_px=0)
    scores, kept = score_detector(Oracle(pred), [im], rule=rule, keep=1)
    assert scores.detector["thresholds"] == {"mining": 0.5, "deforestation": 0.5}
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


def test_evaluate_config_reads_the_scan_sites_section_and_the_moved_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def config(extra: dict[str, Any]) -> Path:
        path = tmp_path / "eval.yaml"
        data = {"data": {"kind": "chips", "folder": str(tmp_path)}, **extra}
        path.write_text(yaml.safe_dump(data))
        return path

    rule = load_evaluate_config(config({"sites": {"thresholds": {"mining": 0.7},
                                                  "opening_px": 0}})).sites
    assert rule.resolved(ALERT_CLASSES, {"deforestation": 0.6}) == {
        "mining": 0.7, "deforestation": 0.6}
    assert rule.opening_px == 0 and rule.closing_px == 1
    old = load_evaluate_config(config({"probability_threshold": 0.4, "min_site_area_ha": 2}))
    assert dict(old.sites.thresholds) == {"mining": 0.4, "deforestation": 0.4}
    assert old.sites.min_area_ha == 2
    assert "probability_threshold is deprecated" in caplog.text
    with pytest.raises(TrainConfigError, match=r"min_site_area_ha and sites\.min_area_ha"):
        load_evaluate_config(config({"min_site_area_ha": 1, "sites": {"min_area_ha": 2}}))
    with pytest.raises(TrainConfigError, match=r"hysteresis low 0\.9 of mining is above"):
        load_evaluate_config(config({"sites": {"thresholds": {"mining": 0.5},
                                               "hysteresis_low": {"mining": 0.9}}}))
