"""`minewatch alerts`: import reviewed alerts as labels, compare alert files, export KML."""

from __future__ import annotations

import json
from pathlib import Path

import click

from minewatch.console import JSON, OVERWRITE


@click.group()
def alerts() -> None:
    """Import reviewed alerts as training labels, compare two alert files, export for the
    field."""


@alerts.command("import-review")
@click.argument(
    "sources", metavar="REVIEWED...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Label file to write: .gpkg (layer 'labels') or .geojson.",
)
@click.option("--layer", default=None, help="Layer of a GeoPackage source (default: alerts).")
@click.option(
    "--merge",
    is_flag=True,
    help="Add to the labels already in --out (same site and period: the new decision wins).",
)
@OVERWRITE
@JSON
def import_review(
    sources: tuple[Path, ...],
    out: Path,
    layer: str | None,
    merge: bool,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Turn reviewed alerts into labelled polygons for training.

    REVIEWED is the review page's export (GeoJSON) or an alerts.gpkg whose review_status was
    edited in QGIS. Confirmed alerts become their class (mining / deforestation), rejected ones
    'background'; unreviewed ones are left out.
    """
    import geopandas as gpd
    import pandas as pd

    from detection.reviews import read_reviewed_alerts, review_labels, write_labels

    if out.exists() and not (overwrite or merge):
        raise click.UsageError(
            f"{out} exists; pass --merge to add to it or --overwrite to replace it"
        )
    frames = [review_labels(read_reviewed_alerts(src, layer=layer)) for src in sources]
    labels = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs="EPSG:4326")
    dupes = labels[labels.duplicated(["site_id", "period_end"], keep="last")]
    if len(dupes):
        # The same site reviewed in several files: the last file named wins.
        labels = labels.drop(index=dupes.index).reset_index(drop=True)
    written = write_labels(out, labels, merge=merge)
    counts = {str(k): int(v) for k, v in sorted(labels["class"].value_counts().items())}
    summary = {
        "out": str(out),
        "labels_added": len(labels),
        "labels_total": len(written),
        "by_class": counts,
        "sources": [str(s) for s in sources],
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        by = ", ".join(f"{k} {v}" for k, v in counts.items()) or "none reviewed"
        click.echo(f"{len(labels)} labels ({by}) -> {out} ({len(written)} in total)")


@alerts.command("diff")
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@JSON
def diff(a: Path, b: Path, as_json: bool) -> None:
    """Compare two alert files (GeoJSON or GeoPackage) site by site: new, removed, changed."""
    from detection.reviews import diff_alerts, read_alerts

    result = diff_alerts(read_alerts(a), read_alerts(b))
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, default=str))
        return
    click.echo(
        f"{len(result.new)} new, {len(result.removed)} removed, {len(result.changed)} changed, "
        f"{result.unchanged} unchanged"
    )
    for sid in result.new:
        click.echo(f"+ {sid}")
    for sid in result.removed:
        click.echo(f"- {sid}")
    for sid, changes in result.changed.items():
        what = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items())
        click.echo(f"~ {sid}: {what}")


@alerts.command("export")
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["kml"]),
    default="kml",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="File to write (e.g. alerts.kml).",
)
@OVERWRITE
def export(source: Path, fmt: str, out: Path, overwrite: bool) -> None:
    """Export an alerts GeoJSON for field teams (KML: Google Earth, OsmAnd, Avenza)."""
    from detection.exports import write_kml

    if out.exists() and not overwrite:
        raise click.UsageError(f"{out} exists; pass --overwrite to replace it")
    try:
        fc = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{source}: not a readable GeoJSON file: {exc}") from exc
    write_kml(out, fc)
    click.echo(f"{len(fc.get('features', []))} alerts -> {out}")
