"""`minewatch tiles`: imagery without a model: the synthetic world, and search/fetch/composite
through the source a scan config names (``local``, ``synthetic``, ``stac``, ``sentinelhub``)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from minewatch.console import JSON, OVERWRITE, progress_bar

if TYPE_CHECKING:
    from aoi.grid import GridCell
    from detection.runs import WorkUnit
    from tiles.periods import Period

log = logging.getLogger(__name__)

CONFIG = click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
START = click.option(
    "--start", type=click.DateTime(["%Y-%m-%d"]), help="First day (default: the config's periods)."
)
END = click.option(
    "--end", type=click.DateTime(["%Y-%m-%d"]), help="Last day (default: the config's periods)."
)
TILES_OUT = click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder; the cache goes to OUT/cache (default: the config's output.folder).",
)


@click.group()
def tiles() -> None:
    """Imagery without a model: search, fetch and composite scenes of a scan config's source;
    write a synthetic world."""


@tiles.command("synth")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--size-px", type=int, default=None, help="Side of the square world in 10 m pixels.")
@click.option("--seed", type=int, default=None, help="Random seed (same seed, same world).")
@click.option("--periods", default=None, help="Comma-separated quarters, e.g. 2024Q2,2024Q3.")
@click.option("--acquisitions", type=int, default=None, help="Acquisitions per period.")
@click.option("--center", default=None, help="LON,LAT of the world's centre (WGS 84).")
@OVERWRITE
@JSON
@click.pass_context
def tiles_synth(
    ctx: click.Context,
    out: Path,
    size_px: int | None,
    seed: int | None,
    periods: str | None,
    acquisitions: int | None,
    center: str | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Write a synthetic Sentinel-2 L2A world (COG scenes, truth masks, truth sites) to OUT."""
    from pydantic import ValidationError

    from tiles.synthetic import WorldSpec, generate_world

    if (out / "world.json").exists() and not overwrite:
        raise click.UsageError(
            f"{str(out)!r} already holds a world; pass --overwrite to replace it"
        )
    fields: dict[str, Any] = {}
    if size_px is not None:
        fields["size_px"] = size_px
    if seed is not None:
        fields["seed"] = seed
    if periods:
        fields["periods"] = [p.strip() for p in periods.split(",") if p.strip()]
    if acquisitions is not None:
        fields["acquisitions_per_period"] = acquisitions
    if center:
        try:
            lon, lat = (float(v) for v in center.split(","))
        except ValueError:
            raise click.BadParameter(
                f"{center!r}: expected LON,LAT such as -57.55,-6.62", param_hint="--center"
            ) from None
        fields["center_lon"], fields["center_lat"] = lon, lat
    try:
        spec = WorldSpec(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise click.BadParameter(f"{key}: {first['msg']} (got {first.get('input')!r})") from None
    with progress_bar(ctx.obj["progress"]) as progress:
        world = generate_world(
            out, spec, progress=(lambda d, t: progress("synthesising", d, t)) if progress else None
        )
    info = {
        "out": str(out),
        "scenes": len(world.scene_ids),
        "periods": spec.periods,
        "crs": str(world.crs),
    }
    click.echo(
        json.dumps(info, indent=2)
        if as_json
        else f"wrote {info['scenes']} scenes over {', '.join(spec.periods)} ({info['crs']}) "
        f"to {out}"
    )


# ---------------------------------------------------------------------------------- shared


class _Job:
    """What search/fetch/composite share: the config, the area, the grid, the source."""

    def __init__(
        self,
        config_path: Path,
        *,
        out: Path | None,
        start: dt.datetime | None,
        end: dt.datetime | None,
        progress: Callable[[str, int, int], None] | None,
    ) -> None:
        import shapely

        from aoi import buffer_aoi, load_aoi, make_grid
        from detection.runs import load_config
        from tiles.sources import open_source

        self.config = load_config(config_path)
        self.periods = self.config.periods.resolve()
        self.start = start.date() if start else self.periods[0].start
        self.end = end.date() if end else self.periods[-1].end
        if self.end < self.start:
            raise click.BadParameter(f"--end {self.end} is before --start {self.start}")
        self.out = out or self.config.output.folder
        aois = load_aoi(self.config.aoi)
        area = buffer_aoi(aois, self.config.aoi.buffer_m)
        self.area = shapely.union_all(area.geometry.values)
        self.cells = make_grid(
            self.area,
            chip_size_px=self.config.grid.chip_size_px,
            resolution_m=self.config.grid.resolution_m,
        )

        def synth(done: int, total: int) -> None:
            if progress:
                progress("preparing the source", done, total)

        self.source = open_source(self.config.source, workdir=self.out, progress=synth)

    def search(self) -> list[Any]:
        from tiles.errors import EmptySearchError

        scenes = self.source.search(self.area, self.start, self.end)
        if not scenes:
            explain = getattr(self.source, "explain_empty", None)
            raise EmptySearchError(
                explain(self.area, self.start, self.end)
                if explain
                else f"{self.source.description}: no scene over the AOI in {self.start}..{self.end}"
            )
        return scenes

    def pairs(self, scenes: list[Any]) -> list[tuple[Any, Any]]:
        """``(chip, scene)`` for every scene a scan of the config would read (the scan's
        planner: scenes over a chip, read with its halo), over ``--start``..``--end`` when they
        are given, else over the config's periods."""
        from detection.runs import plan_units
        from tiles.periods import Period

        given = (self.start, self.end) != (self.periods[0].start, self.periods[-1].end)
        periods = [Period(self.start, self.end, "fetch")] if given else self.periods
        plan = plan_units(self.cells, periods, scenes, halo_px=self.halo_px)
        return [(u.cell, s) for u in plan.units for s in u.scenes]

    @property
    def halo_px(self) -> int:
        return self.config.grid.halo_px

    @property
    def bands(self) -> tuple[str, ...]:
        from tiles.bands import CORE_BANDS

        return CORE_BANDS


def _scene_row(info: Any) -> dict[str, Any]:
    props = dict(info.properties)
    cloud = props.get("eo:cloud_cover")
    return {
        "scene_id": info.scene_id,
        "datetime": info.datetime.isoformat().replace("+00:00", "Z"),
        "cloud_cover_pct": None if cloud is None else round(float(cloud), 2),
        "processing_baseline": info.processing_baseline,
        "processing_level": info.processing_level,
        "boa_offset_applied": props.get("earthsearch:boa_offset_applied"),
        "crs": info.crs.to_string(),
        "bands": list(info.bands) + (["SCL"] if info.has_scl else []),
    }


# ---------------------------------------------------------------------------------- search


@tiles.command("search")
@CONFIG
@START
@END
@TILES_OUT
@JSON
@click.pass_context
def tiles_search(
    ctx: click.Context,
    config: Path,
    start: dt.datetime | None,
    end: dt.datetime | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """List the scenes the source of CONFIG offers over its AOI (cloud cover, baseline)."""
    with progress_bar(ctx.obj["progress"]) as progress:
        job = _Job(config, out=out, start=start, end=end, progress=progress)
        scenes = job.search()
    rows = [_scene_row(s) for s in scenes]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "source": job.source.description,
                    "start": job.start.isoformat(),
                    "end": job.end.isoformat(),
                    "scenes": rows,
                },
                indent=2,
            )
        )
        return
    width = max(len(r["scene_id"]) for r in rows)
    click.echo(f"{'scene':<{width}}  {'acquired (UTC)':<20}  {'cloud %':>7}  baseline  level")
    for r in rows:
        cloud = "-" if r["cloud_cover_pct"] is None else f"{r['cloud_cover_pct']:.1f}"
        click.echo(
            f"{r['scene_id']:<{width}}  {r['datetime'][:19]:<20}  {cloud:>7}  "
            f"{r['processing_baseline']:<8}  {r['processing_level']}"
        )
    click.echo(f"{len(rows)} scene(s) from {job.source.description}", err=True)


# ----------------------------------------------------------------------------------- fetch


@tiles.command("fetch")
@CONFIG
@START
@END
@TILES_OUT
@JSON
@click.pass_context
def tiles_fetch(
    ctx: click.Context,
    config: Path,
    start: dt.datetime | None,
    end: dt.datetime | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """Download the windows of every scene over every chip of CONFIG's AOI into the cache
    (OUT/cache), so that a scan or a composite reads nothing from the network. A scene that fails
    is reported with its reason; the others go on."""
    from tiles.errors import TileError

    failures: list[dict[str, str]] = []
    read = cached = 0
    with progress_bar(ctx.obj["progress"]) as progress:
        job = _Job(config, out=out, start=start, end=end, progress=progress)
        pairs = job.pairs(job.search())
        for i, (cell, info) in enumerate(pairs, start=1):
            fetch = getattr(job.source, "fetch", None)
            grown = cell.with_halo(job.halo_px)  # the scan reads each chip with its halo
            try:
                if fetch is None:
                    job.source.read(info, grown, bands=job.bands)
                    cached += 1
                else:
                    n = fetch(info, grown, bands=job.bands)
                    read += int(n > 0)
                    cached += int(n == 0)
            except TileError as exc:
                failures.append(
                    {"tile_id": cell.tile_id, "scene_id": info.scene_id, "reason": str(exc)}
                )
                log.warning("%s %s: %s", cell.tile_id, info.scene_id, exc)
            if progress:
                progress("fetching", i, len(pairs))
    summary = {
        "source": job.source.description,
        "cache": str(Path(job.out) / "cache"),
        "chip_scenes": len(pairs),
        "read": read,
        "already_cached": cached,
        "failed": failures,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(
            f"{len(pairs)} chip-scene pair(s): {read} read, {cached} already cached, "
            f"{len(failures)} failed -> {summary['cache']}"
        )
        for f in failures:
            click.echo(f"failed: chip {f['tile_id']} scene {f['scene_id']}: {f['reason']}")
    if failures and len(failures) == len(pairs):
        ctx.exit(1)


# ------------------------------------------------------------------------------- composite


@tiles.command("composite")
@CONFIG
@TILES_OUT
@OVERWRITE
@JSON
@click.pass_context
def tiles_composite(
    ctx: click.Context, config: Path, out: Path | None, overwrite: bool, as_json: bool
) -> None:
    """Write a cloud-masked composite (COG) and a clear-observation count (COG) per chip and
    period of CONFIG, plus OUT/composites/coverage.csv. The chips and scenes are those a scan
    of CONFIG plans. A chip-period without any clear observation is "not_observed" (with
    imagery) or "no_imagery" (without), never "no change"; a period in which no chip was
    observed is named on stderr and in --json's "unobserved_periods"."""
    from detection.runs import plan_units
    from tiles.clouds import require_detector
    from tiles.files import atomic_path
    from tiles.radiometry import check_one_level

    rows: list[dict[str, Any]] = []
    with progress_bar(ctx.obj["progress"]) as progress:
        job = _Job(config, out=out, start=None, end=None, progress=progress)
        folder = Path(job.out) / "composites"
        coverage = folder / "coverage.csv"
        if coverage.exists() and not overwrite:
            raise click.UsageError(
                f"{str(folder)!r} already holds composites; pass --overwrite to replace them"
            )
        scenes = job.search()
        check_one_level(scenes)
        require_detector(job.config.composite.cloud_mask, scenes)
        plan = plan_units(job.cells, job.periods, scenes, halo_px=job.halo_px)
        units = {(u.cell.tile_id, u.period.label): u for u in plan.units}
        todo = [(c, p) for c in job.cells for p in job.periods]
        for i, (cell, period) in enumerate(todo, start=1):
            unit = units.get((cell.tile_id, period.label))
            rows.append(_composite_row(job, cell, period, unit, folder))
            if progress:
                progress("compositing", i, len(todo))
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(coverage) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["tile_id"])
            writer.writeheader()
            writer.writerows(rows)
    seen = {r["period"] for r in rows if r["status"] in ("observed", "partly_observed")}
    unobserved = [p.label for p in job.periods if p.label not in seen]
    summary = {
        "out": str(folder),
        "coverage": str(coverage),
        "units": rows,
        "unobserved_periods": unobserved,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        for r in rows:
            click.echo(
                f"{r['tile_id']} {r['period']}: {r['status']}, {r['scenes']} scene(s), "
                f"{r['observed_fraction']:.0%} observed"
                + (f" ({r['reason']})" if r["reason"] else "")
            )
        click.echo(f"coverage: {coverage}")
    for label in unobserved:
        click.echo(
            f"not observed: {label} (no imagery, all cloud, or every chip failed); its "
            "composites show no ground, which is not 'no change'",
            err=True,
        )
    if rows and all(r["status"] == "failed" for r in rows):
        ctx.exit(1)


def _composite_row(
    job: _Job, cell: GridCell, period: Period, unit: WorkUnit | None, folder: Path
) -> dict[str, Any]:
    """One chip-period of ``tiles composite``: its composite written (when the plan has a unit
    for it) and its coverage row, with the statuses of a scan's coverage layer."""
    import warnings

    from detection.runs import coverage_status
    from tiles.clouds import bands_to_read
    from tiles.composite import composite_period, crop_composite, write_composite
    from tiles.errors import CloudyPeriodWarning, TileError

    row: dict[str, Any] = {
        "tile_id": cell.tile_id,
        "period": period.label,
        "scenes": len(unit.scenes) if unit else 0,
        "observed_fraction": 0.0,
        "status": "no_imagery",
        "reason": "" if unit else "no scene",
        "composite": "",
    }
    if unit is None:
        return row
    # Read with the halo, as a scan does (the cache `tiles fetch` fills), and keep the chip:
    # the composite is the one a scan writes.
    grown = cell.with_halo(job.halo_px)
    comp = job.config.composite
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CloudyPeriodWarning)
            result = composite_period(
                (
                    job.source.read(s, grown, bands=bands_to_read(job.bands, s, comp.cloud_mask))
                    for s in unit.scenes
                ),
                cell=grown,
                period=period,
                bands=job.bands,
                method=comp.method,
                masked_scl=comp.masked_scl,
                dilation_px=comp.dilation_px,
                core=cell,
                cloud_mask=comp.cloud_mask,
            )
        result = crop_composite(result, cell)
        paths = write_composite(result, folder)
    except TileError as exc:
        log.warning("%s %s: %s", cell.tile_id, period.label, exc)
        return row | {"status": "failed", "reason": str(exc)}
    fraction = round(result.observed_fraction, 4)
    status = coverage_status(result.observed_fraction)
    return row | {
        "observed_fraction": fraction,
        "status": status,
        "reason": "no clear observation" if status == "not_observed" else "",
        "composite": str(paths["composite"]),
    }
