"""The ``minewatch`` command. It owns the terminal: logs and progress on stderr, data on stdout.

Exit codes: 0 success; 1 error (one line on stderr, ``-vv`` for the traceback); 2 usage error;
3 partial success (some chips failed; the run summary names them).
"""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from aoi.errors import AOIError
from detection.errors import DetectionError
from minewatch.cli_alerts import alerts
from minewatch.cli_aoi import aoi
from minewatch.cli_predict import predict
from minewatch.cli_report import report
from minewatch.cli_runs import runs
from minewatch.cli_tiles import tiles
from minewatch.cli_train import dataset, evaluate, train
from minewatch.console import (
    DETECTOR,
    JSON,
    OUT,
    OVERWRITE,
    add_verbosity_options,
    progress_bar,
    scale_options,
    set_verbosity,
)
from models.errors import ModelError
from tiles.errors import TileError

EXIT_ERROR = 1
EXIT_PARTIAL = 3

log = logging.getLogger("minewatch")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="minewatch")
@click.option("-v", "--verbose", count=True, help="More log output (-vv: debug and tracebacks).")
@click.option("-q", "--quiet", count=True, help="Less log output.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per log line on stderr (for log collectors).",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: int, log_format: str) -> None:
    """Find alluvial gold mining and deforestation in Sentinel-2 imagery over protected areas
    and indigenous lands, and write alerts of what changed since the previous period."""
    ctx.ensure_object(dict)
    set_verbosity(ctx, verbose=verbose, quiet=quiet, log_format=log_format)


# --------------------------------------------------------------------------------------- scan
def _run_config(
    ctx: click.Context,
    config_path: Path,
    *,
    out: Path | None,
    overwrite: bool,
    as_json: bool,
    detector_kind: str | None,
    scale: dict[str, Any],
) -> None:
    from detection.runs import ExecutorConfig, load_config, run_scan

    overrides: dict[str, Any] = {}
    if detector_kind:
        overrides["detector.kind"] = detector_kind
    if scale.get("since"):
        overrides["periods.start"] = scale["since"].date().isoformat()
    if scale.get("until"):
        overrides["periods.end"] = scale["until"].date().isoformat()
    config = load_config(config_path, overrides=overrides)
    out_dir = out or config.output.folder
    detector = _build_detector(config)
    executor = ExecutorConfig(
        workers=scale.get("workers") or 0,
        scheduler=scale.get("scheduler"),
        retries=scale.get("task_retries", 2),
        gpu=getattr(detector, "device", "cpu") == "cuda",
    )
    with progress_bar(ctx.obj["progress"]) as progress:
        result = run_scan(
            config,
            detector=detector,
            out_dir=out_dir,
            overwrite=overwrite,
            executor=executor,
            progress=progress,
        )
    summary = result.summary()
    truth_line = None
    if result.world_dir is not None:
        truth_line, scores = _truth_check(result)
        summary["truth_check"] = scores
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
        if truth_line:
            click.echo(truth_line)
    _report_problems(summary)
    if result.outcome != "success":
        ctx.exit(EXIT_PARTIAL if result.outcome == "partial" else EXIT_ERROR)


def _build_detector(config: Any) -> Any:
    from models.indices import IndexDetector

    if config.detector.kind == "indices":
        return IndexDetector(config.detector.thresholds)
    if config.detector.kind == "network":
        from models.network import load_network_detector

        network = load_network_detector(
            config.detector.checkpoint,
            device=config.detector.device,
            backend=config.detector.backend,
        )
        second = config.detector.second_opinion
        if second is None:
            return network
        from models.amw import AmwAgreement, load_amw_detector

        amw = load_amw_detector(
            second.checkpoint,
            stride_px=second.stride_px,
            device=config.detector.device,
            backend=config.detector.backend,
        )
        return AmwAgreement(network, amw, threshold=second.threshold)
    if config.detector.kind == "amw":
        from models.amw import load_amw_detector

        return load_amw_detector(
            config.detector.checkpoint,
            stride_px=config.detector.stride_px,
            device=config.detector.device,
            backend=config.detector.backend,
        )
    raise click.UsageError(f"detector {config.detector.kind!r} is not available")


def _truth_check(result: Any) -> tuple[str, dict[str, Any]]:
    """Score new/expanding mining alerts against the synthetic world's truth sites."""
    import geopandas as gpd

    from training.metrics import match_sites

    truth = gpd.read_file(result.world_dir / "truth" / "sites.geojson")
    last = result.periods[-1].label
    truth = truth[
        (truth["class"] == "mining")
        & (truth["period"] == last)
        & truth["change"].isin(["new", "expanding"])
    ]
    alerts = result.alerts
    pred = alerts[(alerts["alert_class"] == "mining") & alerts["status"].isin(["new", "expanding"])]
    scores = match_sites(gpd.GeoDataFrame(pred, crs=alerts.crs), truth)
    line = scores.line("truth check, new/expanding mining sites")
    return line, {
        "recall": round(scores.recall, 3),
        "precision": round(scores.precision, 3),
        "truth_total": scores.truth_total,
        "truth_found": scores.truth_found,
        "predicted_total": scores.predicted_total,
        "predicted_correct": scores.predicted_correct,
    }


def _print_summary(s: dict[str, Any]) -> None:
    click.echo(f"run {s['run_id']}: {s['outcome']} in {s['seconds']} s -> {s['out_dir']}")
    click.echo(
        f"period {s['period']['start']}..{s['period']['end']} vs previous "
        f"{s['previous_period']['start']}..{s['previous_period']['end']}"
    )
    click.echo(
        f"chips: {s['chips_with_imagery']} with imagery of {s['chips_total']} over the AOI "
        "and its buffer"
    )
    click.echo(
        "observed (cloud-free) share of the AOI: "
        + ", ".join(f"{k} {_percent(v)}" for k, v in s["aoi_observed_fraction"].items())
        + "; of the chips with imagery: "
        + ", ".join(f"{k} {_percent(v)}" for k, v in s["observed_fraction"].items())
    )
    by = s["alerts_by_class_status"]
    click.echo(
        f"alerts: {s['alerts']}"
        + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(by.items())) + ")" if by else "")
    )
    if s["units_computed"] == 0:
        click.echo(
            f"no new imagery: all {s['units_reused']} chip-period units reused, no model work"
        )
    else:
        click.echo(
            f"units (chip x period): {s['units_computed']} computed, {s['units_reused']} reused"
        )
    if s.get("carried_sites"):
        click.echo(
            f"kept: {s['carried_sites']} site(s) of the previous period whose place was not "
            "observed now (observed_fraction < 0.5)"
        )


def _percent(share: float) -> str:
    """A share as a percentage a reader can trust near 0: 0.7 %, not 1 %; 0 % only when 0."""
    if share == 0 or share >= 0.1:
        return f"{share:.0%}"
    return f"{share:.1%}" if share >= 0.001 else "<0.1%"


def _report_problems(s: dict[str, Any]) -> None:
    """What went wrong, on stderr whatever the output format (cron mails stderr): periods not
    observed, dropped scenes (one line per scene), failed units (one line per reason)."""
    for period in s.get("unobserved_periods", []):
        click.echo(
            f"not observed: {period} (no imagery yet, all cloud, or every unit failed); "
            "earlier sites are kept with their last status, not reported as gone",
            err=True,
        )
    # A scene covers many chips, a dead host every chip: one line per scene or reason.
    dropped: dict[str, list[dict[str, str]]] = {}
    for d in s.get("scenes_dropped", []):
        dropped.setdefault(d["scene_id"], []).append(d)
    for scene_id, rows in dropped.items():
        click.echo(
            f"scene dropped: {scene_id} in {len(rows)} unit(s), the rest composited: "
            f"{rows[0]['reason']}",
            err=True,
        )
    by_reason: dict[str, list[dict[str, str]]] = {}
    for f in s["failures"]:
        by_reason.setdefault(f["reason"], []).append(f)
    for reason, rows in by_reason.items():
        if len(rows) == 1:
            f = rows[0]
            where = "" if f["tile_id"] == "*" else f"chip {f['tile_id']} period {f['period']}: "
            click.echo(f"failed: {where}{reason}", err=True)
        else:
            click.echo(f"failed: {len(rows)} units (chip x period): {reason}", err=True)


@cli.command()
@OUT
@OVERWRITE
@JSON
@DETECTOR
@scale_options
@click.pass_context
def demo(
    ctx: click.Context,
    out: Path | None,
    overwrite: bool,
    as_json: bool,
    detector_kind: str | None,
    **scale: Any,
) -> None:
    """Run the embedded demo (configs/demo.yaml): the real Munduruku territory, a synthetic
    Sentinel-2 world generated offline, alerts in ./minewatch-demo."""
    from detection.runs import default_config_dir

    _run_config(
        ctx,
        default_config_dir() / "demo.yaml",
        out=out,
        overwrite=overwrite,
        as_json=as_json,
        detector_kind=detector_kind,
        scale=scale,
    )


@cli.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path))
@OUT
@OVERWRITE
@JSON
@DETECTOR
@scale_options
@click.pass_context
def scan(
    ctx: click.Context,
    config_path: Path,
    out: Path | None,
    overwrite: bool,
    as_json: bool,
    detector_kind: str | None,
    **scale: Any,
) -> None:
    """Scan the AOIs of CONFIG over its periods and write alerts vs the previous period.

    Re-running into the same output folder updates the scan: units (chip x period) already
    computed from the same imagery are reused, so a run with no new imagery does no model work.
    Exit codes: 0 success, 1 failure, 2 usage error, 3 partial (some chips failed; rerun to retry
    them).
    """
    _run_config(
        ctx,
        config_path,
        out=out,
        overwrite=overwrite,
        as_json=as_json,
        detector_kind=detector_kind,
        scale=scale,
    )


cli.add_command(tiles)
cli.add_command(runs)
cli.add_command(aoi)
cli.add_command(alerts)
cli.add_command(train)
cli.add_command(evaluate)
cli.add_command(dataset)
cli.add_command(report)
cli.add_command(predict)
add_verbosity_options(cli)


# ------------------------------------------------------------------------------------- errors
_KNOWN = (AOIError, TileError, ModelError, DetectionError, OSError)


#: Optional packages and the extra (pyproject.toml) that installs each: a CPU-only install
#: (``pip install minewatch``) scans with the shipped ONNX networks and has none of them.
_EXTRAS = {"torch": "torch", "torchvision": "torch", "onnxscript": "torch", "h5py": "amw"}


def _command(args: Sequence[str]) -> str:
    """``minewatch COMMAND`` (``minewatch GROUP COMMAND``) as typed."""
    words = [a for a in args if not a.startswith("-")]
    command = cli.commands.get(words[0]) if words else None
    n = 2 if isinstance(command, click.Group) and len(words) > 1 else 1
    return " ".join(["minewatch", *words[:n]])


def _explain(exc: BaseException) -> str:
    """The one line of an error; a full disk is named as such, with the fix."""
    text = str(exc)
    full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or any(
        words in text for words in ("disk is full", "No space left", "Free disk space")
    )
    if full:
        return (
            f"no space left on the device ({text}); free space on the output's filesystem (or "
            "pass another --out) and run again: finished units are kept and reused"
        )
    if isinstance(exc, sqlite3.Error):
        return f"the run store could not be written ({type(exc).__name__}: {text})"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the CLI, turn known errors into one line and a non-zero exit."""
    args = list(sys.argv[1:] if argv is None else argv)
    show_traceback = any(a in ("-vv", "-vvv") or a.startswith("-vv") for a in args) or (
        args.count("-v") + args.count("--verbose") >= 2
    )
    try:
        rv = cli.main(args=args, prog_name="minewatch", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("minewatch: aborted", err=True)
        return EXIT_ERROR
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (*_KNOWN, sqlite3.Error) as exc:
        if show_traceback:
            traceback.print_exc()
        click.echo(f"minewatch: error: {_explain(exc)}", err=True)
        return EXIT_ERROR
    except ImportError as exc:
        extra = _EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        if show_traceback:
            traceback.print_exc()
        click.echo(f"minewatch: error: {_command(args)} needs {exc.name}, which this install "
                   f"lacks; pip install 'minewatch[{extra}]'", err=True)
        return EXIT_ERROR
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
