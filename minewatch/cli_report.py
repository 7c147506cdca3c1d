"""``minewatch report``: per-reserve statistics of an output folder, as HTML, CSV and PDF.

Exported as :data:`report` for ``minewatch.cli`` to register. Errors become one line (exit 1)
via :class:`click.ClickException`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from minewatch.console import JSON, OVERWRITE

log = logging.getLogger(__name__)


@click.command()
@click.argument("run_output", metavar="RUN_OUTPUT", type=click.Path(path_type=Path))
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Report only the periods ending on or after this day (YYYY-MM-DD).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Report folder (default: RUN_OUTPUT/report).",
)
@click.option("--pdf", is_flag=True, help="Also write report.pdf (for e-mail and print).")
@click.option(
    "--top",
    "top_n",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Sites in the fastest-growing table.",
)
@OVERWRITE
@JSON
def report(
    run_output: Path,
    since: object,
    out: Path | None,
    pdf: bool,
    top_n: int,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Write a per-reserve report of the scans in RUN_OUTPUT (a scan's output folder).

    Reads its run store (runs.sqlite) and alerts.gpkg, and writes report.html (self-contained,
    opens offline), reserve_periods.csv, top_sites.csv and figures/*.png: per reserve and
    period, hectares of mining and forest clearing, new vs expanding sites, the observed share,
    the trend, the fastest-growing sites and a map of hot spots. Nothing in RUN_OUTPUT changes.
    """
    import datetime as dt

    from detection.errors import DetectionError
    from detection.report import write_report

    since_day = since.date() if isinstance(since, dt.datetime) else None
    try:
        result = write_report(
            run_output,
            out,
            since=since_day,
            pdf=pdf,
            overwrite=overwrite,
            top_n=top_n,
        )
    except (DetectionError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    summary = result.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    periods = summary["periods"]
    click.echo(
        f"report: {len(periods)} period(s) {periods[0]}..{periods[-1]}, "
        f"{summary['reserves']} reserve(s), {summary['sites']} site(s) in "
        f"{summary['seconds']:.1f} s -> {result.files[0]}"
    )
    latest = summary["latest"]
    for entry in latest[:-1] if len(latest) == 2 else latest:  # one reserve: "all" repeats it
        if entry["observation"] == "not_observed":
            click.echo(f"{summary['latest_period']} {entry['aoi_name']}: not observed")
            continue
        click.echo(
            f"{summary['latest_period']} {entry['aoi_name']}: mining {entry['mining_ha']:.1f} ha,"
            f" forest clearing {entry['deforestation_ha']:.1f} ha, observed "
            f"{entry['observed_share']:.0%} of the imaged area"
        )
    click.echo("files: " + ", ".join(str(p.relative_to(result.report_dir)) for p in result.files))
