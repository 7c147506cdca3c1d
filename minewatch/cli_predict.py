"""``minewatch predict``: scene GeoTIFFs -> per-class probability COGs + site polygons, merged.

The command parses its flags into a `detection.runs.SitesConfig` and `PredictOptions`, calls
`detection.runs.predict_scenes` (the whole-scene batch) and prints its result. Exported as
:data:`predict` for ``minewatch.cli`` to register. Errors become one line (exit 1; flags that
contradict each other: exit 2) via :class:`click.ClickException`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from minewatch.console import JSON, OVERWRITE, progress_bar

log = logging.getLogger(__name__)


@click.command()
@click.argument(
    "scenes",
    metavar="SCENE.tif...",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
)
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False),
              help="Checkpoint (.pt) to run (default: the shipped model).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("."),
              show_default=True, help="Output folder.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Where the network runs (auto: CUDA when available).")
@click.option("--window-px", type=click.IntRange(min=32), default=768, show_default=True,
              help="Inference window side in pixels.")
@click.option("--overlap-px", type=click.IntRange(min=0), default=64, show_default=True,
              help="Overlap of neighbouring windows (blended smoothly).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Windows per forward pass (default: from free GPU memory; 1 on the CPU).")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="A scan config whose `sites` section (and network checkpoint) to use, so "
                   "the sites are those its scan finds; the flags below override its keys.")
@click.option("--threshold", "thresholds", multiple=True, metavar="CLASS=P",
              help="sites.thresholds: probability a pixel is called CLASS at (mining, "
                   "deforestation; default: the checkpoint's, else 0.5). Repeatable.")
@click.option("--hysteresis-low", "hysteresis_low", multiple=True, metavar="CLASS=P",
              help="sites.hysteresis_low: CLASS pixels from P up form its sites, kept when they "
                   "hold a pixel at the threshold. Repeatable.")
@click.option("--opening-px", type=click.IntRange(min=0), default=None,
              help="sites.opening_px: radius of the opening that removes specks [default: 1].")
@click.option("--closing-px", type=click.IntRange(min=0), default=None,
              help="sites.closing_px: radius of the closing that fills pinholes [default: 1].")
@click.option("--min-area-ha", type=click.FloatRange(min=0), default=None,
              help="sites.min_area_ha: minimum mapping unit of a site (of the merged site where "
                   "it spans scenes) [default: 0.5].")
@click.option("--simplify-m", type=click.FloatRange(min=0), default=None,
              help="sites.simplify_m: outline simplification in metres, 0 for pixel outlines "
                   "[default: 5].")
@click.option("--compile", "compile_model", is_flag=True,
              help="torch.compile the network (pays off on a GPU for whole tiles).")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime"]), default="auto",
              show_default=True,
              help="CPU engine (auto: ONNX Runtime when installed, else PyTorch).")
@click.option("--stride-px", type=click.IntRange(min=1), default=None,
              help="AMW checkpoints only: step of the 48 px window (default: the checkpoint's, "
                   "24).")
@click.option("--resume", is_flag=True,
              help="Keep the probability COGs in --out that this model wrote (a batch cut short "
                   "goes on where it stopped); their sites are made again.")
@OVERWRITE
@JSON
@click.pass_context
def predict(
    ctx: click.Context,
    scenes: tuple[Path, ...],
    checkpoint: Path | None,
    out: Path,
    device: str,
    window_px: int,
    overlap_px: int,
    batch_size: int | None,
    config_path: Path | None,
    thresholds: tuple[str, ...],
    hysteresis_low: tuple[str, ...],
    opening_px: int | None,
    closing_px: int | None,
    min_area_ha: float | None,
    simplify_m: float | None,
    compile_model: bool,
    backend: str,
    stride_px: int | None,
    resume: bool,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Predict mining and deforestation over whole scenes.

    With an Amazon Mining Watch checkpoint (models/weights/amw-*.pt) the scenes must hold the
    13 (or 12) L1C bands it names, and the output has one band, mining: each pixel the highest
    score of the 48 px windows (every --stride-px pixels) that cover it.

    Writes OUT/<scene>_probabilities.tif (a COG, one band per class) and
    OUT/<scene>_sites.geojson (RFC 7946) per scene, by the rule a scan uses (its `sites`
    section: thresholds, opening and closing, minimum mapping unit, simplification); with
    several scenes (adjacent or overlapping tiles, even in different UTM zones) also
    OUT/sites.geojson, their sites merged: a mine
    straddling two tiles is one site, measured whole. The network is loaded once for all.
    """
    from detection.errors import ConfigError, DetectionError
    from detection.runs import PredictOptions, predict_scenes
    from models.errors import ModelError
    from tiles.errors import TileError

    sites_config, config_checkpoint = _sites_config(
        config_path,
        {
            "thresholds": _class_values("--threshold", thresholds),
            "hysteresis_low": _class_values("--hysteresis-low", hysteresis_low),
            "opening_px": opening_px,
            "closing_px": closing_px,
            "min_area_ha": min_area_ha,
            "simplify_m": simplify_m,
        },
    )
    options = PredictOptions(
        checkpoint=checkpoint or config_checkpoint,
        device=device,
        window_px=window_px,
        overlap_px=overlap_px,
        batch_size=batch_size,
        compile=compile_model,
        backend=backend,
        stride_px=stride_px,
    )
    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    try:
        with progress_bar(bool(obj.get("progress", True))) as progress:
            batch = predict_scenes(
                scenes, out=out, sites=sites_config, options=options, overwrite=overwrite,
                resume=resume, progress=progress,
            )
    except ConfigError as exc:  # flags that contradict each other or the checkpoint
        raise click.UsageError(str(exc)) from exc
    except (DetectionError, ModelError, TileError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    if batch.failure is not None:
        raise click.ClickException(batch.failure_message()) from batch.failure.error
    if as_json:
        click.echo(json.dumps(batch.report(), indent=2))
        return
    for item in batch.scenes:
        ran = (
            "kept (--resume)"
            if item.reused
            else f"on {item.run['device']} with {item.run['backend']} "
            f"({item.run['megapixels_per_s']} Mpx/s)"
        )
        click.echo(
            f"{item.scene.name}: {len(item.sites)} site(s), probabilities {ran} "
            f"-> {item.probabilities}, {item.sites_path}"
        )
    if batch.merged is not None:
        click.echo(
            f"{len(batch.scenes)} scenes: {len(batch.merged)} site(s) merged across their edges "
            f"in {round(batch.seconds, 2)} s -> {batch.merged_path}"
        )


def _class_values(flag: str, values: tuple[str, ...]) -> dict[str, float] | None:
    """``CLASS=P`` flags as a mapping (None when none is given).

    Raises:
        click.BadParameter: a value is not ``CLASS=P`` with P a number.
    """
    if not values:
        return None
    out: dict[str, float] = {}
    for value in values:
        name, _, number = value.partition("=")
        try:
            out[name.strip()] = float(number)
        except ValueError:
            raise click.BadParameter(
                f"{value!r}: expected CLASS=P, e.g. mining=0.4", param_hint=flag
            ) from None
    return out


def _sites_config(path: Path | None, flags: dict[str, Any]) -> tuple[Any, Path | None]:
    """The ``sites`` rule: defaults < the ``--config`` file's section < the flags; and the
    config's network checkpoint.

    Raises:
        click.ClickException: the config cannot be read, or the rule does not validate (one
            line naming the key, as a scan config's error would).
    """
    from pydantic import ValidationError

    from detection.errors import ConfigError
    from detection.runs import SitesConfig, load_config

    base: dict[str, Any] = {}
    checkpoint = None
    if path is not None:
        try:
            config = load_config(path)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        base = config.sites.model_dump(exclude_unset=True)
        if config.detector.kind == "network":
            checkpoint = config.detector.checkpoint
    values = dict(base)
    for key, value in flags.items():
        if isinstance(value, dict):  # per class: a flag replaces the config's class only
            values[key] = {**values.get(key, {}), **value}
        elif value is not None:
            values[key] = value
    if values.get("simplify_m") == 0:
        values["simplify_m"] = None
    try:
        return SitesConfig(**values), checkpoint
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"] if p != "[key]")
        key = f"sites.{where}" if where else "sites"
        raise click.ClickException(
            f"{key}: {err['msg']} (got {err.get('input')!r}); see minewatch predict --help"
        ) from exc
