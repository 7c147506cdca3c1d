"""`minewatch alerts`: import reviewed alerts as labels, compare alert files, export KML."""

from __future__ import annotations

import json
import os
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

    from detection.alerts import read_reviewed_alerts, review_labels, write_labels

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
    from detection.alerts import diff_alerts, read_alerts

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
@JSON
def export(source: Path, fmt: str, out: Path, overwrite: bool, as_json: bool) -> None:
    """Export an alerts GeoJSON for field teams (KML: Google Earth, OsmAnd, Avenza)."""
    from detection.alerts import write_kml

    if out.exists() and not overwrite:
        raise click.UsageError(f"{out} exists; pass --overwrite to replace it")
    try:
        fc = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{source}: not a readable GeoJSON file: {exc}") from exc
    write_kml(out, fc)
    count = len(fc.get("features", []))
    if as_json:
        summary = {"source": str(source), "format": fmt, "out": str(out), "alerts": count}
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{count} alerts -> {out}")


@alerts.command("evidence-pack")
@click.argument("out_dir", metavar="OUT", type=click.Path(path_type=Path, file_okay=False))
@click.argument("site_ids", metavar="SITE_ID...", nargs=-1)
@click.option("--all", "all_sites", is_flag=True, help="A pack for every alert of the run.")
@click.option(
    "--to",
    "dest",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder the packs go into (default: OUT/evidence-packs).",
)
@click.option("--zip", "as_zip", is_flag=True, help="One ZIP per site instead of a folder.")
@click.option(
    "--sign",
    "signing_key",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Ed25519 private key (PEM) to sign each manifest with "
    "(`minewatch alerts keygen KEY` or `openssl genpkey -algorithm ed25519`).",
)
@click.option("--overwrite", is_flag=True, help="Replace packs already there.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes building packs (default: the CPUs, at most 4); the files are the same.",
)
@JSON
@click.pass_context
def evidence_pack(
    ctx: click.Context,
    out_dir: Path,
    site_ids: tuple[str, ...],
    all_sites: bool,
    dest: Path | None,
    as_zip: bool,
    signing_key: Path | None,
    overwrite: bool,
    workers: int | None,
    as_json: bool,
) -> None:
    """Write a tamper-evident evidence pack per site of the scan in OUT.

    Each pack (a folder, or a ZIP with --zip) holds the site's geometry and history,
    before/after chips as GeoTIFF and captioned PNG, the scenes with their dates, source hrefs
    and checksums, the model's and config's sha256, the run id, the software version, a
    one-page case file (case.pdf) and manifest.json with the sha256 of every file, signed with
    --sign. The same run and site always give the same bytes. Check a pack with
    'minewatch alerts verify PACK'.
    """
    from detection.alerts import pack_summary, write_evidence_packs
    from detection.runs import RunStore

    if all_sites == bool(site_ids):
        raise click.UsageError("name the sites (SITE_ID...) or pass --all, not both")
    target = dest if dest is not None else out_dir / "evidence-packs"
    results = write_evidence_packs(
        out_dir,
        None if all_sites else list(site_ids),
        target,
        store=RunStore.open_existing(out_dir),
        as_zip=as_zip,
        signing_key=signing_key,
        overwrite=overwrite,
        workers=workers if workers is not None else min(4, os.cpu_count() or 1),
    )
    if as_json:
        click.echo(json.dumps(pack_summary(results), indent=2))
        return
    if not results:
        click.echo(f"{out_dir} has no alerts: no pack written")
    for r in results:
        click.echo(
            f"{r.site_id}: {r.path} ({len(r.files)} files, {r.size_bytes / 1e6:.2f} MB"
            f"{', signed' if r.signed else ''})"
        )


@alerts.command("verify")
@click.argument("pack", type=click.Path(path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The signer's Ed25519 public key (PEM); without it the key inside the pack is used "
    "and its fingerprint printed, to compare with the signer's.",
)
@JSON
def verify(pack: Path, public_key: Path | None, as_json: bool) -> None:
    """Check an evidence pack: every file against manifest.json, and its signature.

    Exit 0 when every file matches and the signature (if any) is valid; 1 otherwise, naming
    each file changed, missing or added.
    """
    from detection.alerts import verify_pack

    result = verify_pack(pack, public_key=public_key)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        for name in result.changed:
            click.echo(f"changed: {name} (sha256 differs from manifest.json)")
        for name in result.missing:
            click.echo(f"missing: {name}")
        for name in result.added:
            click.echo(f"added: {name} (not in manifest.json)")
        signature = {
            "absent": "not signed",
            "valid": "signature valid",
            "invalid": "signature INVALID: manifest.json or manifest.sig was altered",
            "wrong_key": "signature made by another key than --public-key",
        }[result.signature]
        if result.key_sha256:
            signature += f" (key sha256 {result.key_sha256[:16]}...)"
        verdict = "OK" if result.ok else "FAILED"
        click.echo(
            f"{verdict}: {pack} (site {result.site_id}): {result.files_checked} file(s) checked, "
            f"{signature}"
        )
    if not result.ok:
        raise click.exceptions.Exit(1)


@alerts.command("keygen")
@click.argument("key", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace an existing key.")
@JSON
def keygen(key: Path, overwrite: bool, as_json: bool) -> None:
    """Generate an Ed25519 signing key: KEY (private, keep it safe) and KEY.pub (share it)."""
    from detection.alerts import write_keypair

    pub = write_keypair(key, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps({"private_key": str(key), "public_key": str(pub)}, indent=2))
        return
    click.echo(f"private key {key} (mode 600), public key {pub}")
