"""`minewatch tiles`: imagery without a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from minewatch.console import JSON, OVERWRITE, progress_bar


@click.group()
def tiles() -> None:
    """Imagery without a model: the synthetic world (search/fetch/composite come with sources)."""


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
