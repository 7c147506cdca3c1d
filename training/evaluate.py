"""Evaluation reports: ``minewatch evaluate CONFIG.yaml``.

Per-class pixel precision, recall, F1 and IoU and site-level recall and precision, overall and
per region, for a checkpoint (and, as the baseline, the spectral-index detector) on labelled
images. A pixel is called ``mining`` or ``deforestation`` under the rule a scan and ``minewatch
predict`` use (:mod:`models.site_rule`, the config's ``sites`` section: the checkpoint's
thresholds unless set, hysteresis, opening and closing, the minimum mapping unit; where both
classes are called, the more probable wins). Pixels the composite did not observe are not scored
(a scan cannot see them either). Sites are the connected patches (8-connected) of at least
``sites.min_area_ha`` in the truth and in the prediction; a predicted site is correct when it
shares area with a truth site of its class.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
from rasterio.features import shapes
from scipy import ndimage
from shapely.geometry import shape

from models.checkpoint import Checkpoint, surface_offsets
from models.detector import ALERT_CLASSES, Detector
from models.indices import IndexDetector
from models.network import load_network_detector
from models.registry import NETWORK_CLASSES
from models.site_rule import SiteRule, checkpoint_thresholds, label_map
from training.config import ChipCsvData, EvaluateConfig, GalleryData
from training.data import IGNORE_INDEX, LabelledImage, load_labelled_images
from training.metrics import ConfusionMatrix, SiteScores, match_sites

if TYPE_CHECKING:  # patch-level evaluation runs PyTorch networks (the torch extra)
    from training.patch_evaluate import PatchReport

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def sites_of(mask: np.ndarray, image: LabelledImage, *, min_area_ha: float) -> gpd.GeoDataFrame:
    """Connected patches of ``mask`` of at least ``min_area_ha``, as polygons in the image CRS."""
    px_ha = abs(image.transform.a * image.transform.e) / 10_000.0
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return gpd.GeoDataFrame(geometry=[], crs=image.crs)
    sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    keep = np.zeros(n + 1, dtype=bool)
    keep[1:] = sizes * px_ha >= min_area_ha
    lab = np.where(keep[lab], lab, 0).astype(np.int32)
    geoms: dict[int, Any] = {}
    for geom, value in shapes(lab, mask=lab > 0, transform=image.transform, connectivity=8):
        g = shape(geom)
        v = int(value)
        geoms[v] = g if v not in geoms else geoms[v].union(g)
    return gpd.GeoDataFrame(geometry=list(geoms.values()), crs=image.crs)


def _add(a: SiteScores, b: SiteScores) -> SiteScores:
    return SiteScores(
        a.truth_total + b.truth_total,
        a.truth_found + b.truth_found,
        a.predicted_total + b.predicted_total,
        a.predicted_correct + b.predicted_correct,
    )


def _site_dict(s: SiteScores) -> dict[str, Any]:
    return {"recall": round(s.recall, 4), "precision": round(s.precision, 4),
            "truth_total": s.truth_total, "truth_found": s.truth_found,
            "predicted_total": s.predicted_total, "predicted_correct": s.predicted_correct}


@dataclass
class DetectorScores:
    """Scores of one detector.

    Attributes:
        detector: ``{"name", "version", "sha256", "thresholds"}`` (the thresholds it was
            scored at).
        confusion: overall pixel confusion matrix.
        by_region: pixel confusion matrix per region.
        sites: site scores per class, overall.
        sites_by_region: site scores per region and class.
    """

    detector: dict[str, Any]
    confusion: ConfusionMatrix
    by_region: dict[str, ConfusionMatrix] = field(default_factory=dict)
    sites: dict[str, SiteScores] = field(default_factory=dict)
    sites_by_region: dict[str, dict[str, SiteScores]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "classes": {c: self.confusion.scores(c).as_dict() for c in ALERT_CLASSES},
            "sites": {c: _site_dict(s) for c, s in self.sites.items()},
            "confusion_matrix": {"classes": list(NETWORK_CLASSES),
                                 "rows_truth_columns_predicted": self.confusion.matrix.tolist()},
            "regions": {
                r: {"classes": {c: cm.scores(c).as_dict() for c in ALERT_CLASSES},
                    "sites": {c: _site_dict(s) for c, s in self.sites_by_region[r].items()}}
                for r, cm in sorted(self.by_region.items())
            },
        }


@dataclass
class EvaluationReport:
    """Scores of the checkpoint (and the baseline) on the evaluated images.

    Attributes:
        scores: one entry per detector, the network first.
        images: names of the images evaluated, with their regions.
        settings: threshold, minimum site area, splits.
        examples: ``(image, truth, {detector: prediction})`` for the figure.
    """

    scores: list[DetectorScores]
    images: list[dict[str, str]]
    settings: dict[str, Any]
    examples: list[tuple[LabelledImage, dict[str, np.ndarray]]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "images": self.images,
                "detectors": [s.as_dict() for s in self.scores]}


def detector_thresholds(detector: Detector, rule: SiteRule) -> dict[str, float]:
    """The thresholds ``detector`` is scored at: the rule's, else its checkpoint's, else 0.5."""
    checkpoint = getattr(detector, "checkpoint", None)
    recorded = checkpoint_thresholds(checkpoint) if isinstance(checkpoint, Checkpoint) else {}
    return rule.resolved(ALERT_CLASSES, recorded)


def classify(
    probabilities: np.ndarray, image: LabelledImage, *, rule: SiteRule,
    thresholds: dict[str, float],
) -> np.ndarray:
    """``(2, H, W)`` mining/deforestation probabilities -> label codes (0/1/2; 255 where NaN)
    under the site rule (:func:`models.site_rule.label_map`)."""
    px_m2 = abs(image.transform.a * image.transform.e)
    return label_map(
        probabilities, ALERT_CLASSES, thresholds=thresholds,
        hysteresis_low={str(k): v for k, v in rule.hysteresis_low.items()},
        opening_px=rule.opening_px, closing_px=rule.closing_px,
        connectivity=rule.connectivity, min_area_px=rule.min_area_ha * 10_000.0 / px_m2,
    )


def score_detector(
    detector: Detector,
    images: list[LabelledImage],
    *,
    rule: SiteRule,
    progress: Progress | None = None,
    keep: int = 0,
) -> tuple[DetectorScores, list[np.ndarray]]:
    """Score ``detector`` on ``images`` under ``rule``; also return its class maps of the first
    ``keep``."""
    thresholds = detector_thresholds(detector, rule)
    info: dict[str, Any] = {**detector.info.as_dict(), "thresholds": thresholds}
    cm = ConfusionMatrix(NETWORK_CLASSES, ignore_index=IGNORE_INDEX)
    out = DetectorScores(info, cm)
    kept: list[np.ndarray] = []
    min_site_area_ha = rule.min_area_ha
    for n, im in enumerate(images, start=1):
        probabilities = detector.predict(im.image, im.bands).probabilities
        pred = classify(probabilities, im, rule=rule, thresholds=thresholds)
        truth = im.label.copy()
        truth[pred == IGNORE_INDEX] = IGNORE_INDEX
        cm.update(np.where(pred == IGNORE_INDEX, 0, pred), truth)
        region_cm = out.by_region.setdefault(
            im.region, ConfusionMatrix(NETWORK_CLASSES, ignore_index=IGNORE_INDEX)
        )
        region_cm.update(np.where(pred == IGNORE_INDEX, 0, pred), truth)
        region_sites = out.sites_by_region.setdefault(im.region, {})
        for code, cls in enumerate(ALERT_CLASSES, start=1):
            s = match_sites(sites_of(pred == code, im, min_area_ha=min_site_area_ha),
                            sites_of(truth == code, im, min_area_ha=min_site_area_ha))
            out.sites[cls] = _add(out.sites.get(cls, SiteScores(0, 0, 0, 0)), s)
            region_sites[cls] = _add(region_sites.get(cls, SiteScores(0, 0, 0, 0)), s)
        if len(kept) < keep:
            kept.append(pred)
        if progress:
            progress(f"evaluating {info['name']}", n, len(images))
    log.info("%s: %s", info["name"], {c: cm.scores(c).as_dict() for c in ALERT_CLASSES})
    return out, kept


def evaluate(
    config: EvaluateConfig, *, progress: Progress | None = None
) -> EvaluationReport | PatchReport:
    """Evaluate a checkpoint (and the index baseline) on the config's labelled images, or on
    its patch-labelled chips (:mod:`training.patch_evaluate`).

    Raises:
        CheckpointError: the checkpoint is missing or corrupt.
        BandMismatchError: the data lacks a band of the checkpoint.
        DatasetError: no image in the chosen splits.
    """
    from training.errors import DatasetError

    if isinstance(config.data, GalleryData | ChipCsvData):
        from training.patch_evaluate import evaluate_patches

        return evaluate_patches(config, progress=progress)
    detector = load_network_detector(config.checkpoint, device=config.device)
    # L1C scenes as the scan reads them for this network (models.checkpoint.surface_offsets)
    l1c = surface_offsets(detector.checkpoint.metadata, "L1C")
    images = load_labelled_images(config.data, bands=detector.bands, composite=config.composite,
                                  splits=tuple(config.splits), l1c_offsets=l1c)
    if not images:
        raise DatasetError(f"no labelled image in split(s) {config.splits}")
    detectors: list[Detector] = [detector]
    if config.baseline:
        detectors.append(IndexDetector())
    results: list[DetectorScores] = []
    maps: dict[str, list[np.ndarray]] = {}
    for det in detectors:
        scores, kept = score_detector(det, images, rule=config.sites, progress=progress,
                                      keep=config.n_examples)
        results.append(scores)
        maps[det.info.name] = kept
    examples = [(im, {name: m[i] for name, m in maps.items()})
                for i, im in enumerate(images[: config.n_examples])]
    return EvaluationReport(
        results,
        [{"name": im.name, "region": im.region, "split": im.split or ""} for im in images],
        {"sites": config.sites.model_dump(mode="json"),
         "min_site_area_ha": config.sites.min_area_ha, "splits": list(config.splits),
         "data": config.data.kind},
        examples,
    )


def write_report(report: EvaluationReport | PatchReport, out_dir: Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``confusion.png`` and ``predictions.png`` (patch
    reports: ``report.json``, ``report.md``, ``chips.png``).

    Returns:
        The paths written, by kind.
    """
    if not isinstance(report, EvaluationReport):
        from training.patch_evaluate import write_patch_report

        return write_patch_report(report, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md",
             "confusion": out_dir / "confusion.png", "predictions": out_dir / "predictions.png"}
    paths["json"].write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(report_markdown(report), encoding="utf-8")
    _plot_confusion(report, paths["confusion"])
    _plot_predictions(report, paths["predictions"])
    return paths


def _rule_words(report: EvaluationReport) -> str:
    rule = report.settings["sites"]
    thresholds = "; ".join(
        f"{d.detector['name']}: "
        + ", ".join(f"{c} {t:.3g}" for c, t in d.detector.get("thresholds", {}).items())
        for d in report.scores
    )
    return (f"thresholds {thresholds}; opening {rule['opening_px']} px, closing "
            f"{rule['closing_px']} px" + (f", hysteresis {rule['hysteresis_low']}"
                                          if rule["hysteresis_low"] else ""))


def report_markdown(report: EvaluationReport | PatchReport) -> str:
    """The report as Markdown tables."""
    if not isinstance(report, EvaluationReport):
        from training.patch_evaluate import patch_markdown

        return patch_markdown(report)
    s = report.settings
    lines = [
        "# Evaluation",
        "",
        f"{len(report.images)} image(s) of region(s) "
        f"{', '.join(sorted({i['region'] for i in report.images}))}; split(s) "
        f"{', '.join(s['splits'])}; sites >= {s['min_site_area_ha']} ha, called by the scan's "
        f"site rule ({_rule_words(report)}).",
        "",
        "## Overall",
        "",
        "| detector | class | precision | recall | F1 | IoU | site recall | site precision |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for sc in report.scores:
        for c in ALERT_CLASSES:
            p = sc.confusion.scores(c)
            st = sc.sites.get(c, SiteScores(0, 0, 0, 0))
            lines.append(
                f"| {sc.detector['name']} | {c} | {p.precision:.3f} | {p.recall:.3f} | "
                f"{p.f1:.3f} | {p.iou:.3f} | {st.recall:.2f} ({st.truth_found}/{st.truth_total})"
                f" | {st.precision:.2f} ({st.predicted_correct}/{st.predicted_total}) |"
            )
    lines += ["", "## Per region", "",
              "| detector | region | class | precision | recall | F1 | IoU | site recall | "
              "site precision |", "|---|---|---|---|---|---|---|---|---|"]
    for sc in report.scores:
        for r, cm in sorted(sc.by_region.items()):
            for c in ALERT_CLASSES:
                p = cm.scores(c)
                st = sc.sites_by_region[r][c]
                lines.append(
                    f"| {sc.detector['name']} | {r} | {c} | {p.precision:.3f} | {p.recall:.3f} | "
                    f"{p.f1:.3f} | {p.iou:.3f} | {st.recall:.2f} | {st.precision:.2f} |"
                )
    return "\n".join(lines) + "\n"


def _plot_confusion(report: EvaluationReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report.scores)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
    for ax, sc in zip(axes[0], report.scores, strict=True):
        m = sc.confusion.matrix.astype(float)
        norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        k = len(NETWORK_CLASSES)
        ax.set_xticks(range(k), NETWORK_CLASSES, rotation=30)
        ax.set_yticks(range(k), NETWORK_CLASSES)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{norm[i, j]:.2f}\n{int(m[i, j])}", ha="center", va="center",
                        fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("truth")
        ax.set_title(sc.detector["name"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_predictions(report: EvaluationReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["#1b5e20", "#ffb300", "#d81b60"])
    rows = max(len(report.examples), 1)
    names = [sc.detector["name"] for sc in report.scores]
    fig, axes = plt.subplots(rows, 2 + len(names), figsize=(3.2 * (2 + len(names)), 3.2 * rows),
                             squeeze=False)
    for row, (im, preds) in zip(axes, report.examples, strict=False):
        rgb_idx = [im.bands.index(b) for b in ("B04", "B03", "B02") if b in im.bands]
        rgb = np.nan_to_num(im.image[rgb_idx]).transpose(1, 2, 0) if len(rgb_idx) == 3 else None
        if rgb is not None:
            row[0].imshow(np.clip(rgb / 0.15, 0, 1))
        row[0].set_title(f"{im.name}", fontsize=8)
        row[1].imshow(np.where(im.label == IGNORE_INDEX, 0, im.label), cmap=cmap, vmin=0, vmax=2,
                      interpolation="nearest")
        row[1].set_title("truth", fontsize=8)
        for ax, name in zip(row[2:], names, strict=True):
            p = preds[name]
            ax.imshow(np.where(p == IGNORE_INDEX, 0, p), cmap=cmap, vmin=0, vmax=2,
                      interpolation="nearest")
            ax.set_title(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
