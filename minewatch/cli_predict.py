"""``minewatch predict``: one scene GeoTIFF -> per-class probability COG + site polygons.

Exported as :data:`predict` for ``minewatch.cli`` to register. Errors become one line (exit 1)
via :class:`click.ClickException`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import click

from minewatch.console import JSON, OVERWRITE, progress_bar

log = logging.getLogger(__name__)


@click.command()
@click.argument(
    "scene", metavar="SCENE.tif", type=click.Path(path_type=Path, dir_okay=False, exists=True)
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
@click.option("--min-area-ha", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Minimum mapping unit of a site.")
@click.option("--compile", "compile_model", is_flag=True,
              help="torch.compile the network (pays off on a GPU for whole tiles).")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime"]), default="auto",
              show_default=True,
              help="CPU engine (auto: ONNX Runtime when installed, else PyTorch).")
@OVERWRITE
@JSON
@click.pass_context
def predict(
    ctx: click.Context,
    scene: Path,
    checkpoint: Path | None,
    out: Path,
    device: str,
    window_px: int,
    overlap_px: int,
    batch_size: int | None,
    min_area_ha: float,
    compile_model: bool,
    backend: str,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Predict mining and deforestation over a whole scene: writes OUT/<scene>_probabilities.tif
    (a COG, one band per class) and OUT/<scene>_sites.geojson (RFC 7946)."""
    import rasterio

    from detection.errors import DetectionError
    from detection.inference import InferenceOptions, predict_raster
    from detection.masks import MaskOptions, sites_from_probabilities
    from models.errors import ModelError
    from tiles.errors import TileError
    from tiles.files import write_text_atomic

    prob_path = out / f"{scene.stem}_probabilities.tif"
    sites_path = out / f"{scene.stem}_sites.geojson"
    existing = [p for p in (prob_path, sites_path) if p.exists()]
    if existing and not overwrite:
        raise click.ClickException(
            f"{existing[0]} exists; pass --overwrite to replace it or choose another --out"
        )
    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    started = time.monotonic()
    try:
        options = InferenceOptions(
            window_px=window_px,
            overlap_px=min(overlap_px, window_px // 2),
            batch_size=batch_size,
            device=device,
            compile=compile_model,
            backend=backend,
        )
        # GDAL's block cache defaults to 5 % of RAM; whole-scene streaming needs little of it.
        with rasterio.Env(GDAL_CACHEMAX=256), progress_bar(
            bool(obj.get("progress", True))
        ) as progress:
            result = predict_raster(
                scene, checkpoint, out_path=prob_path, options=options, progress=progress
            )
            sites = sites_from_probabilities(
                str(prob_path),
                options=MaskOptions(min_area_ha=min_area_ha),
                tile_id=scene.stem,
                progress=progress,
            )
        collection = json.loads(sites.to_crs("EPSG:4326").to_json(drop_id=True, to_wgs84=True))
        collection.pop("crs", None)
        write_text_atomic(sites_path, json.dumps(collection))
    except (DetectionError, ModelError, TileError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    counts = sites["alert_class"].value_counts().to_dict() if len(sites) else {}
    summary = {
        "scene": str(scene),
        "probabilities": str(prob_path),
        "sites": str(sites_path),
        "sites_per_class": {str(k): int(v) for k, v in counts.items()},
        "device": result.device,
        "backend": result.backend,
        "width": result.width,
        "height": result.height,
        "windows": result.windows,
        "batch_size": result.batch_size,
        "megapixels_per_s": round(result.megapixels_per_s, 3),
        "model_seconds": round(result.model_seconds, 2),
        "seconds": round(time.monotonic() - started, 2),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(
            f"{scene.name}: {len(sites)} site(s) in {summary['seconds']} s on {result.device} "
            f"with {result.backend} "
            f"({summary['megapixels_per_s']} Mpx/s) -> {prob_path}, {sites_path}"
        )
