"""Patch-level evaluation: ``minewatch evaluate`` on patch-labelled chips (gallery, labels.csv).

Each chip gets one score per detector: its mining probability pooled over the chip as in
training (:mod:`training.patchlevel`, the pooling and ``k`` a checkpoint records), and is called
mining when the score reaches the threshold the checkpoint stores (``extra.thresholds.mining``;
0.5 for a checkpoint without one). Reported in ``report.json`` under ``patch_level``: sensitivity,
specificity, ROC AUC, threshold, counts and false alarms per kind of negative, for the
checkpoint, the index baseline and (``compare``) a second checkpoint, on the same chips.

Top-of-atmosphere chips are brought to surface-like reflectance with the checkpoint's offsets
(:data:`tiles.radiometry.TOA_OFFSETS`); the report also gives each network's figures without that
conversion, which measures what the level gap costs.

The baseline is the index detector where chips have its bands. Where they have only the visible
bands (the galleries), it is their visible part: a pixel's "redness" ``(B04 - B03) / (B04 + B03)``
(sediment, turbid water and bare soil are redder than green than vegetation is), as a logistic
centred on 0.05 with softness 0.03, pooled like the network.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.checkpoint import Checkpoint, build_network, load_checkpoint
from models.network import resolve_device
from models.registry import DEFAULT_MODEL, shipped_checkpoint_path
from training.chips import TOA_OFFSETS, ChipArrays, chip_arrays, chip_probabilities, chip_scores
from training.config import ChipCsvData, EvaluateConfig, GalleryData
from training.errors import DatasetError
from training.patches import ChipGroup
from training.patchlevel import DEFAULT_POOL_K, PatchScores, patch_scores, pool_scores_np

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

#: Bands of the index detector; chips with all of them are scored by it.
INDEX_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
VISIBLE_CENTRE, VISIBLE_SOFTNESS = 0.05, 0.03


def checkpoint_patch_settings(ckpt: Checkpoint) -> tuple[float, int]:
    """(threshold, pooled pixels) a checkpoint stores (0.5 and 16 when it stores none)."""
    extra = ckpt.metadata.extra
    thr = (extra.get("thresholds") or {}).get("mining", 0.5)
    k = (extra.get("patch_pooling") or {}).get("k", DEFAULT_POOL_K)
    return float(thr), int(k)


@dataclass
class PatchDetectorResult:
    """One detector's chip scores and figures."""

    name: str
    info: dict[str, Any]
    scores: np.ndarray
    figures: PatchScores
    notes: list[str] = field(default_factory=list)
    without_toa_conversion: PatchScores | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"detector": self.info, **self.figures.as_dict(), "notes": self.notes}
        if self.without_toa_conversion is not None:
            w = self.without_toa_conversion.as_dict()
            out["without_toa_conversion"] = {k: w[k] for k in ("sensitivity", "specificity",
                                                               "roc_auc", "counts")}
        return out


@dataclass
class PatchReport:
    """Patch-level figures of each detector on the same chips."""

    results: dict[str, PatchDetectorResult]
    chips: ChipArrays
    settings: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        labels = self.chips.labels
        return {
            "settings": self.settings,
            "patch_level": {
                "chips": {"total": len(labels), "mining": int(labels.sum()),
                          "not_mining": int((labels == 0).sum()),
                          "sets": sorted(set(self.chips.sets))},
                **{k: r.as_dict() for k, r in self.results.items()},
            },
        }


def _groups(config: EvaluateConfig) -> list[ChipGroup]:
    from training.train import load_chip_groups

    assert isinstance(config.data, GalleryData | ChipCsvData)
    groups = load_chip_groups(config.data, splits=tuple(config.splits))
    if not groups:
        raise DatasetError(
            f"no chip in split(s) {config.splits}; name other splits or drop data.split to "
            "evaluate every chip"
        )
    return groups


def _network(
    ckpt: Checkpoint, groups: list[ChipGroup], device: str, name: str, *, progress: Progress | None
) -> PatchDetectorResult:
    meta = ckpt.metadata
    threshold, k = checkpoint_patch_settings(ckpt)
    offsets = meta.extra.get("toa_offsets") or TOA_OFFSETS
    model = build_network(ckpt)
    dev = resolve_device(device)
    model.to(dev)
    optional_idx = [meta.bands.index(b) for b in meta.optional_bands]
    notes = []
    have = set().union(*(g.bands for g in groups))
    missing = [b for b in meta.bands if b not in have]
    if missing and not set(missing) <= set(meta.optional_bands):
        notes.append(f"bands {missing} absent from the chips; this network does not know a "
                     "band can be missing: they were set to its training mean")

    def run(convert: bool) -> tuple[np.ndarray, ChipArrays]:
        chips = chip_arrays(groups, meta.bands, toa_offsets=offsets, convert_toa=convert)
        prob = chip_probabilities(model, chips, normalization=meta.normalization,
                                  optional_idx=optional_idx, device=dev)
        return chip_scores(prob, k), chips

    scores, chips = run(True)
    if progress:
        progress(f"scoring {meta.name}", 1, 2)
    figures = patch_scores(scores, chips.labels, threshold, kinds=chips.kinds, sets=chips.sets)
    without = None
    if chips.toa.any():
        raw, _ = run(False)
        without = patch_scores(raw, chips.labels, threshold, kinds=chips.kinds)
    if progress:
        progress(f"scoring {meta.name}", 2, 2)
    info = {"name": meta.name, "version": meta.version, "sha256": meta.sha256,
            "pooling": f"mean of the {k} most probable mining pixels",
            "threshold_source": "checkpoint" if "thresholds" in meta.extra else "default 0.5"}
    return PatchDetectorResult(name, info, scores, figures, notes, without)


def _baseline(groups: list[ChipGroup], k: int) -> PatchDetectorResult:
    from models.indices import IndexDetector

    chips = chip_arrays(groups, INDEX_BANDS)
    full = chips.present.all(axis=1)
    prob = np.full(chips.images.shape[:1] + chips.images.shape[2:], np.nan, dtype=np.float32)
    det = IndexDetector()
    for i in np.flatnonzero(full):
        prob[i] = det.predict(chips.images[i], INDEX_BANDS).of("mining")
    vis = ~full
    if vis.any():
        g, r = chips.images[vis, 1], chips.images[vis, 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            redness = (r - g) / (r + g)
        prob[vis] = 1.0 / (1.0 + np.exp(-(redness - VISIBLE_CENTRE) / VISIBLE_SOFTNESS))
    scores = pool_scores_np(prob, k)
    figures = patch_scores(scores, chips.labels, 0.5, kinds=chips.kinds, sets=chips.sets)
    notes = []
    if vis.any():
        notes.append(f"{int(vis.sum())} chip(s) lack NIR/SWIR: scored by the visible redness "
                     "rule, not the full index detector")
    info = {"name": "indices", "version": "visible" if vis.all() else "full",
            "pooling": f"mean of the {k} most probable mining pixels", "threshold_source": "0.5"}
    return PatchDetectorResult("index_baseline", info, scores, figures, notes)


def evaluate_patches(config: EvaluateConfig, *, progress: Progress | None = None) -> PatchReport:
    """Score the checkpoint, the baseline and ``compare`` on the config's chips.

    Raises:
        CheckpointError: a checkpoint is missing or corrupt.
        DatasetError: no chip in the chosen splits, or unreadable chips.
    """
    groups = _groups(config)
    if config.checkpoint is None:
        ckpt = load_checkpoint(shipped_checkpoint_path(),
                               expected_sha256=DEFAULT_MODEL.sha256)
    else:
        ckpt = load_checkpoint(config.checkpoint)
    results = {"checkpoint": _network(ckpt, groups, config.device, "checkpoint",
                                      progress=progress)}
    if config.compare is not None:
        results["second_checkpoint"] = _network(load_checkpoint(config.compare), groups,
                                                config.device, "second_checkpoint",
                                                progress=progress)
    if config.baseline:
        results["index_baseline"] = _baseline(groups, checkpoint_patch_settings(ckpt)[1])
    chips = chip_arrays(groups, ckpt.metadata.bands)
    data = config.data
    assert isinstance(data, GalleryData | ChipCsvData)
    settings = {"data": data.kind, "folder": str(data.folder),
                "splits": list(config.splits) if data.split is not None else ["all"],
                "split_by": data.split.by if data.split is not None else None}
    return PatchReport(results, chips, settings)


def patch_markdown(report: PatchReport) -> str:
    """The patch-level figures as Markdown."""
    d = report.as_dict()["patch_level"]
    c = d["chips"]
    lines = [
        "# Patch-level evaluation", "",
        f"{c['total']} chips ({c['mining']} mining, {c['not_mining']} not) of "
        f"{len(c['sets'])} set(s); splits {', '.join(report.settings['splits'])}.", "",
        "| detector | sensitivity | specificity | ROC AUC | threshold | TP | FN | TN | FP |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.results.values():
        f = r.figures
        lines.append(
            f"| {r.info['name']} {r.info.get('version', '')} | {f.sensitivity:.3f} | "
            f"{f.specificity:.3f} | {f.roc_auc:.3f} | {f.threshold:.3g} | {f.tp} | {f.fn} | "
            f"{f.tn} | {f.fp} |"
        )
    lines += ["", "## False alarms per kind of negative", "",
              "| detector | kind | chips | false alarms | rate |", "|---|---|---|---|---|"]
    for r in report.results.values():
        for kind, v in r.figures.false_alarms_by_kind.items():
            lines.append(f"| {r.info['name']} | {kind} | {v['chips']} | {v['false_alarms']} | "
                         f"{v['rate']:.3f} |")
    gaps = [r for r in report.results.values() if r.without_toa_conversion is not None]
    if gaps:
        lines += ["", "## Top of atmosphere fed as surface reflectance (no conversion)", "",
                  "| detector | sensitivity | specificity | ROC AUC |", "|---|---|---|---|"]
        for r in gaps:
            w = r.without_toa_conversion
            assert w is not None
            lines.append(f"| {r.info['name']} | {w.sensitivity:.3f} | {w.specificity:.3f} | "
                         f"{w.roc_auc:.3f} |")
    lines += ["", "## Per set (share called mining)", "",
              "| set | label | chips | " + " | ".join(r.info["name"] for r in
                                                      report.results.values()) + " |",
              "|---|---|---|" + "---|" * len(report.results)]
    first = next(iter(report.results.values())).figures.by_set
    for s, v in first.items():
        rates = " | ".join(f"{r.figures.by_set[s]['rate']:.3f}" for r in report.results.values())
        lines.append(f"| {s} | {v['label']} | {v['chips']} | {rates} |")
    notes = [n for r in report.results.values() for n in r.notes]
    if notes:
        lines += ["", "Notes:", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def write_patch_report(report: PatchReport, out_dir: Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``chips.png`` (the checkpoint's worst misses
    and false alarms beside its surest hits)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md",
             "chips": out_dir / "chips.png"}
    paths["json"].write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(patch_markdown(report), encoding="utf-8")
    _plot_chips(report, paths["chips"])
    return paths


def chip_rows(
    labels: np.ndarray, scores: np.ndarray, threshold: float, per_row: int = 8
) -> dict[str, np.ndarray]:
    """Indices of the chips ``chips.png`` shows, row by row: the surest mining chips, the
    mining chips missed (lowest scores first), the false alarms (highest first) and the surest
    negatives. A row holds only chips of its kind, so it is shorter when there are fewer."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)

    def pick(mask: np.ndarray, key: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        return idx[np.argsort(key[idx], kind="stable")][:per_row]

    return {
        "mining, surest": pick(y, -s),
        "mining, missed": pick(y & (s < threshold), s),
        "not mining, false alarms": pick(~y & (s >= threshold), -s),
        "not mining, surest": pick(~y, s),
    }


def _plot_chips(report: PatchReport, path: Path, per_row: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = report.results["checkpoint"]
    chips, s, t = report.chips, res.scores, res.figures.threshold
    rows = chip_rows(chips.labels, s, t, per_row)
    fig, axes = plt.subplots(len(rows), per_row, figsize=(1.6 * per_row, 1.9 * len(rows)),
                             squeeze=False)
    for ax_row, (title, idx) in zip(axes, rows.items(), strict=True):
        ax_row[0].set_ylabel(title, fontsize=7)
        for ax, i in zip(ax_row, idx, strict=False):
            rgb = np.nan_to_num(chips.images[i, [2, 1, 0]]).transpose(1, 2, 0)
            ax.imshow(np.clip(rgb / 0.2, 0, 1))
            ax.set_title(f"{s[i]:.2f} {chips.kinds[i][:10]}", fontsize=6)
        for ax in ax_row:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in ax_row[len(idx):]:  # fewer chips of this kind than panels
            ax.set_frame_on(False)
        if not len(idx):
            ax_row[0].text(0.5, 0.5, "none", ha="center", va="center", fontsize=7)
    fig.suptitle(f"{res.info['name']}: pooled mining score (threshold {t:.3g})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
