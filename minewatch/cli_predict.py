"""``minewatch predict``: scene GeoTIFFs -> per-class probability COGs + site polygons, merged.

Exported as :data:`predict` for ``minewatch.cli`` to register. Errors become one line (exit 1)
via :class:`click.ClickException`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
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
    import rasterio

    from detection.errors import DetectionError
    from detection.inference import (
        UINT8_NODATA,
        InferenceOptions,
        ScenePredictor,
        checkpoint_thresholds,
        scene_grid,
    )
    from detection.sites import SiteStream, finish_sites, merge_tile_sites, sites_from_probabilities
    from models.detector import ALERT_CLASSES
    from models.errors import ModelError
    from tiles.errors import TileError

    if resume and overwrite:
        raise click.UsageError("pass --resume (keep finished scenes) or --overwrite (redo them), "
                               "not both")
    scenes = tuple(dict.fromkeys(scenes))  # a scene named twice is predicted once
    by_name: dict[str, Path] = {}
    for scene in scenes:
        other = by_name.setdefault(scene.stem, scene)
        if other != scene:
            raise click.UsageError(
                f"scenes {other} and {scene} would both write {scene.stem}_probabilities.tif "
                "into --out; rename one, or predict them into separate --out folders"
            )
    several = len(scenes) > 1
    merged_path = out / "sites.geojson"
    outputs = [
        (out / f"{s.stem}_probabilities.tif", out / f"{s.stem}_sites.geojson") for s in scenes
    ]
    derived = [sites for _, sites in outputs] + ([merged_path] if several else [])
    existing = [p for p in [prob for prob, _ in outputs] + derived if p.exists()]
    if existing and not (overwrite or resume):
        raise click.ClickException(
            f"{existing[0]} exists; pass --resume to keep the finished scenes, --overwrite to "
            "replace them, or choose another --out"
        )
    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    started = time.monotonic()
    done: list[dict[str, Any]] = []
    frames = []
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
    checkpoint = checkpoint or config_checkpoint
    mask_options = sites_config.mask_options()
    # Per scene: whole sites (hysteresis decided), the minimum mapping unit and simplification
    # after any merge across scenes, so a mine cut by a tile edge is measured whole.
    whole_options = replace(mask_options, min_area_ha=0.0, simplify_m=None)
    final_options = replace(mask_options, hysteresis_low={})
    min_area_ha = mask_options.min_area_ha
    try:
        options = InferenceOptions(
            window_px=window_px,
            overlap_px=min(overlap_px, window_px // 2),
            batch_size=batch_size,
            device=device,
            compile=compile_model,
            backend=backend,
        )
        amw = _amw_detector(checkpoint, stride_px=stride_px, device=device, backend=backend)
        predictor: Any = amw or ScenePredictor(checkpoint, options)
        # GDAL's block cache defaults to 5 % of RAM; whole-scene streaming needs little of it.
        with rasterio.Env(GDAL_CACHEMAX=256), progress_bar(
            bool(obj.get("progress", True))
        ) as progress:
            for scene, (prob_path, sites_path) in zip(scenes, outputs, strict=True):
                scene_started = time.monotonic()
                try:
                    summary: dict[str, Any] = {"scene": str(scene)}
                    if resume and prob_path.exists():
                        _check_model(prob_path, predictor.checkpoint.metadata.sha256)
                        summary["reused"] = True
                        log.info("%s: keeping %s (--resume)", scene.name, prob_path)
                        # Sites whole, before the minimum mapping unit: a mine cut by a tile
                        # edge is measured after the merge.
                        whole = sites_from_probabilities(
                            str(prob_path), options=whole_options, tile_id=scene.stem,
                            progress=progress,
                        )
                    elif amw is not None:
                        from detection.inference import predict_scene_amw

                        amw_result = predict_scene_amw(
                            scene, amw, out_path=prob_path, progress=progress
                        )
                        whole = sites_from_probabilities(
                            str(prob_path), options=whole_options, tile_id=scene.stem,
                            progress=progress,
                        )
                        summary |= _run_summary(amw_result) | {"stride_px": amw.stride_px}
                    else:
                        # The sites are traced from the rows as they are written, while the
                        # network runs on the next ones.
                        crs, transform, height, width = scene_grid(scene)
                        with SiteStream(
                            crs=crs, transform=transform, height=height, width=width,
                            bands=ALERT_CLASSES, nodata=UINT8_NODATA, options=whole_options,
                            recorded_thresholds=checkpoint_thresholds(predictor.checkpoint),
                            tile_id=scene.stem, progress=progress, name=str(prob_path),
                        ) as stream:
                            result = predictor.predict(
                                scene, out_path=prob_path, progress=progress, on_rows=stream.add
                            )
                            whole = stream.finish()
                        summary |= _run_summary(result)
                    sites = finish_sites(whole, options=final_options)
                    _write_geojson(sites_path, sites)
                except (DetectionError, ModelError, TileError, OSError) as exc:
                    if not done:
                        raise
                    raise click.ClickException(
                        f"{exc}\n{len(done)} scene(s) before {scene.name} are written to {out}; "
                        "fix this one (or leave it out) and rerun with --resume to go on"
                    ) from exc
                frames.append(whole)
                summary["seconds"] = round(time.monotonic() - scene_started, 2)
                done.append(summary | _site_summary(prob_path, sites_path, sites))
            if several:
                merged = merge_tile_sites(
                    frames, min_area_ha=min_area_ha, simplify_m=mask_options.simplify_m
                )
                _write_geojson(merged_path, merged)
    except (DetectionError, ModelError, TileError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    seconds = round(time.monotonic() - started, 2)
    report: dict[str, Any]
    if several:
        report = {"scenes": done, "sites": str(merged_path), "seconds": seconds,
                  "sites_per_class": _per_class(merged)}
    else:
        report = done[0] | {"seconds": seconds}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for item in done:
        ran = (
            "kept (--resume)"
            if item.get("reused")
            else f"on {item['device']} with {item['backend']} ({item['megapixels_per_s']} Mpx/s)"
        )
        click.echo(
            f"{Path(item['scene']).name}: {item['site_count']} site(s), probabilities {ran} "
            f"-> {item['probabilities']}, {item['sites']}"
        )
    if several:
        click.echo(
            f"{len(done)} scenes: {len(merged)} site(s) merged across their edges in {seconds} s "
            f"-> {merged_path}"
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


def _amw_detector(
    checkpoint: Path | None, *, stride_px: int | None, device: str, backend: str
) -> Any:
    """The AMW detector when ``checkpoint`` is an AMW classifier, else None.

    Raises:
        click.UsageError: ``--stride-px`` with a checkpoint that is not an AMW classifier.
    """
    from models.checkpoint import PATCH_CLASSIFIERS, load_checkpoint

    ckpt = load_checkpoint(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.metadata.architecture in PATCH_CLASSIFIERS:
        from models.amw import AmwDetector

        return AmwDetector(ckpt, stride_px=stride_px, device=device, backend=backend)
    if stride_px is not None:
        raise click.UsageError(
            f"--stride-px {stride_px} applies to Amazon Mining Watch checkpoints "
            "(models/weights/amw-*.pt) only; the network predicts every pixel"
        )
    return None


def _run_summary(result: Any) -> dict[str, Any]:
    return {
        "device": result.device,
        "backend": result.backend,
        "width": result.width,
        "height": result.height,
        "windows": result.windows,
        "batch_size": result.batch_size,
        "megapixels_per_s": round(result.megapixels_per_s, 3),
        "model_seconds": round(result.model_seconds, 2),
    }


def _site_summary(prob_path: Path, sites_path: Path, sites: Any) -> dict[str, Any]:
    return {
        "probabilities": str(prob_path),
        "sites": str(sites_path),
        "site_count": len(sites),
        "sites_per_class": _per_class(sites),
    }


def _per_class(sites: Any) -> dict[str, int]:
    counts = sites["alert_class"].value_counts().to_dict() if len(sites) else {}
    return {str(k): int(v) for k, v in counts.items()}


def _write_geojson(path: Path, sites: Any) -> None:
    """RFC 7946: WGS 84, no ``crs`` member; written atomically."""
    from tiles.files import write_text_atomic

    collection = json.loads(sites.to_crs("EPSG:4326").to_json(drop_id=True, to_wgs84=True))
    collection.pop("crs", None)
    write_text_atomic(path, json.dumps(collection))


def _check_model(prob_path: Path, sha256: str) -> None:
    """--resume keeps only what this model wrote."""
    import rasterio

    from detection.errors import DetectionError

    try:
        with rasterio.open(prob_path) as src:
            tags = src.tags()
    except rasterio.errors.RasterioIOError as exc:
        raise DetectionError(f"{prob_path}: cannot read it to resume ({exc})") from exc
    written_by = tags.get("MODEL_SHA256")
    if written_by != sha256:
        raise DetectionError(
            f"{prob_path}: written by model {tags.get('MODEL_NAME', '?')} (sha256 "
            f"{written_by or 'unknown'}), not the one asked for ({sha256}); pass --overwrite "
            "to predict it again, or choose another --out"
        )
