"""`minewatch runs`: read the run store of an output folder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from detection.runs import RunStore
from minewatch.console import JSON


@click.group()
def runs() -> None:
    """What past scans of an output folder did: outcome, units, failures with reasons."""


def _store(out: Path) -> RunStore:
    from detection.errors import InputNotFoundError
    from detection.runs import STORE_NAME

    if not (out / STORE_NAME).is_file():
        raise InputNotFoundError(
            f"{str(out)!r} holds no run store ({STORE_NAME}); pass the output folder of a scan"
        )
    return RunStore(out)


@runs.command("list")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@JSON
def runs_list(out: Path, as_json: bool) -> None:
    """List the runs recorded in the output folder OUT."""
    store = _store(out)
    rows = store.list_runs()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo("run_id\tstarted_at\toutcome\tperiod\tcomputed\treused\tfailed")
    for r in rows:
        click.echo(
            f"{r['run_id']}\t{r['started_at']}\t{r['outcome']}\t"
            f"{r['period_start']}..{r['period_end']}\t{r['units_computed'] or 0}\t"
            f"{r['units_reused'] or 0}\t{r['units_failed'] or 0}"
        )


@runs.command("show")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.argument("run_id", default="latest")
@JSON
def runs_show(out: Path, run_id: str, as_json: bool) -> None:
    """Show one run of OUT (default: the latest): summary, then every failed unit and why."""
    store = _store(out)
    run = store.get_run(run_id)
    if as_json:
        click.echo(json.dumps(run, indent=2))
        return
    summary = run.get("summary") or {}
    click.echo(
        f"run {run['run_id']}: {run['outcome']}, {run['started_at']} -> {run['ended_at']}, "
        f"period {run['period_start']}..{run['period_end']}"
    )
    click.echo(
        f"config {run['config_name']} (sha256 {run['config_sha256'][:12]}), "
        f"model sha256 {run['model_sha256'][:12]}, minewatch {run['software_version']}"
    )
    if "error" in summary:
        click.echo(f"error: {summary['error']}")
    units = run["units"]
    failed = [u for u in units if u["status"] == "failed"]
    computed = sum(1 for u in units if not u["reused"])
    click.echo(
        f"units: {len(units)} ({computed} computed, {len(units) - computed} reused, "
        f"{len(failed)} failed)"
    )
    if summary.get("alerts_by_class_status"):
        click.echo(
            "alerts: "
            + ", ".join(f"{k} {v}" for k, v in sorted(summary["alerts_by_class_status"].items()))
        )
    for u in failed:
        click.echo(f"failed: chip {u['tile_id']} period {u['period']}: {u['reason']}")
    for f in summary.get("failures", []):
        if f["tile_id"] == "*":
            click.echo(f"failed: {f['reason']}")
