"""``minewatch train``, ``minewatch evaluate`` and ``minewatch dataset build``.

Exported as :data:`train`, :data:`evaluate` and :data:`dataset` for ``minewatch.cli`` to register.
Errors become one line (exit 1) via :class:`click.ClickException`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import click

from minewatch.console import JSON, OUT, OVERWRITE, progress_bar

log = logging.getLogger(__name__)


def _progress_enabled(ctx: click.Context) -> bool:
    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    return bool(obj.get("progress", True))


def _check_out(out_dir: Path, *, overwrite: bool, marker: str) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise click.ClickException(
                f"output folder {out_dir} is not empty; pass --overwrite to replace it or choose "
                "another --out"
            )
        if (out_dir / marker).exists():
            shutil.rmtree(out_dir)


def _known_errors() -> tuple[type[Exception], ...]:
    from models.errors import ModelError
    from tiles.errors import TileError
    from training.errors import TrainingError

    return (TrainingError, ModelError, TileError, OSError)


@click.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path))
@OUT
@OVERWRITE
@JSON
@click.option("--resume", type=click.Path(path_type=Path, dir_okay=False),
              help="Continue from this last.pt (optimiser state, epoch).")
@click.option("--epochs", type=int, help="Epochs (default: the config's optim.epochs).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]),
              help="Device (default: the config's).")
@click.pass_context
def train(
    ctx: click.Context,
    config_path: Path,
    out: Path | None,
    overwrite: bool,
    as_json: bool,
    resume: Path | None,
    epochs: int | None,
    device: str | None,
) -> None:
    """Train a segmentation network on the labelled data of CONFIG; write best.pt, last.pt,
    model.pt, log.csv and MODEL_CARD.md into the output folder."""
    from training.config import load_train_config
    from training.train import train as run_train

    overrides: dict[str, Any] = {}
    if out is not None:
        overrides["output.folder"] = str(out)
    if resume is not None:
        overrides["resume"] = str(resume.resolve())
    if epochs is not None:
        overrides["optim.epochs"] = epochs
    if device is not None:
        overrides["device"] = device
    try:
        config = load_train_config(config_path, overrides=overrides)
        if config.resume is None:
            _check_out(config.output.folder, overwrite=overwrite, marker="log.csv")
        started = time.monotonic()
        with progress_bar(_progress_enabled(ctx)) as progress:
            result = run_train(config, progress=progress)
    except _known_errors() as exc:
        raise click.ClickException(str(exc)) from exc
    summary = {
        "out_dir": str(result.out_dir),
        "model": str(result.model_path),
        "best": str(result.best_checkpoint),
        "last": str(result.last_checkpoint),
        "best_score": round(result.best_score, 4),
        "epochs": result.epochs,
        "chips_per_s": round(result.chips_per_s, 2),
        "seconds": round(time.monotonic() - started, 1),
        "last_epoch": result.history[-1] if result.history else {},
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(
            f"trained {result.epochs} epoch(s) in {summary['seconds']} s "
            f"({summary['chips_per_s']} chips/s); best validation score "
            f"{summary['best_score']} -> {result.model_path}"
        )


@click.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path))
@OUT
@OVERWRITE
@JSON
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False),
              help="Checkpoint to evaluate (default: the config's, else the shipped model).")
@click.option("--no-baseline", is_flag=True, help="Skip the spectral-index baseline.")
@click.pass_context
def evaluate(
    ctx: click.Context,
    config_path: Path,
    out: Path | None,
    overwrite: bool,
    as_json: bool,
    checkpoint: Path | None,
    no_baseline: bool,
) -> None:
    """Score a checkpoint on the labelled data of CONFIG: per-class precision, recall, F1, IoU
    and site-level recall/precision, overall and per region (report.json, report.md, PNGs)."""
    from training.config import load_evaluate_config
    from training.evaluate import evaluate as run_evaluate
    from training.evaluate import report_markdown, write_report

    overrides: dict[str, Any] = {}
    if out is not None:
        overrides["output.folder"] = str(out)
    if checkpoint is not None:
        overrides["checkpoint"] = str(checkpoint.resolve())
    if no_baseline:
        overrides["baseline"] = False
    try:
        config = load_evaluate_config(config_path, overrides=overrides)
        _check_out(config.output.folder, overwrite=overwrite, marker="report.json")
        with progress_bar(_progress_enabled(ctx)) as progress:
            report = run_evaluate(config, progress=progress)
        paths = write_report(report, config.output.folder)
    except _known_errors() as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({**report.as_dict(), "files": {k: str(v) for k, v in paths.items()}},
                              indent=2))
    else:
        text = report_markdown(report)
        click.echo(text.split("## Per region")[0].split("## Per set")[0].rstrip())
        click.echo(f"report written to {config.output.folder}")


@click.group()
def dataset() -> None:
    """Build labelled chip datasets."""


@dataset.command("build")
@click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Output chip folder.")
@OVERWRITE
@JSON
@click.option("--chip-size", "chip_size_px", type=click.IntRange(16, 4096), default=256,
              show_default=True, help="Chip side in pixels.")
@click.option("--min-observed", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Skip chips with a smaller observed, labelled share.")
@click.pass_context
def build(
    ctx: click.Context,
    config_path: Path,
    out: Path,
    overwrite: bool,
    as_json: bool,
    chip_size_px: int,
    min_observed: float,
) -> None:
    """Write the labelled data of a training CONFIG (scenes + labels, or synthetic worlds) as a
    chip folder of image + mask GeoTIFF pairs, split by region (chips.csv)."""
    from training.config import ChipsData, load_train_config
    from training.data import load_labelled_images, write_chip_folder

    try:
        config = load_train_config(config_path)
        if isinstance(config.data, ChipsData):
            raise click.ClickException(
                f"{config_path}: data.kind is 'chips' already; dataset build needs 'scenes' or "
                "'synthetic' data"
            )
        if config.data is None:
            raise click.ClickException(
                f"{config_path}: no data section; dataset build cuts chips of pixel-labelled "
                "data (kind 'scenes' or 'synthetic')"
            )
        _check_out(out, overwrite=overwrite, marker="chips.csv")
        images = load_labelled_images(config.data, bands=config.bands, composite=config.composite)
        splits = {im.region: im.split or "train" for im in images}
        with progress_bar(_progress_enabled(ctx)) as progress:
            counts = write_chip_folder(images, out, splits=splits, chip_size_px=chip_size_px,
                                       min_observed_share=min_observed, progress=progress)
    except _known_errors() as exc:
        raise click.ClickException(str(exc)) from exc
    regions: dict[str, list[str]] = {}
    for region, split in sorted(splits.items()):
        regions.setdefault(split, []).append(region)
    summary = {"out_dir": str(out), "chips": counts, "regions": regions}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"{sum(counts.values())} chip pairs in {out}: " +
                   ", ".join(f"{k} {v} ({len(regions.get(k, []))} region(s))"
                             for k, v in counts.items()))


__all__ = ["dataset", "evaluate", "train"]
