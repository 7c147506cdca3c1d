"""`minewatch aoi`: inspect and validate AOI layers."""

from __future__ import annotations

import json
from pathlib import Path

import click

from minewatch.console import JSON


@click.group()
def aoi() -> None:
    """Inspect and validate AOI layers (protected areas, indigenous lands)."""


@aoi.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--layer", default=None, help="Layer of a GeoPackage.")
@click.option("--where", default=None, help="Attribute filter, e.g. \"name_field = 'Munduruku'\".")
@click.option(
    "--kind",
    default=None,
    help="Kind of every area (protected_area, indigenous_land, ...) when the layer does not say.",
)
@click.option("--buffer-m", type=float, default=5000.0, show_default=True)
@click.option("--chip-size-px", type=int, default=512, show_default=True)
@JSON
def aoi_info(
    path: Path,
    layer: str | None,
    where: str | None,
    kind: str | None,
    buffer_m: float,
    chip_size_px: int,
    as_json: bool,
) -> None:
    """List the AOIs of a layer (id, name, kind, area) and the processing chips they need."""
    import shapely
    from pydantic import ValidationError

    from aoi import buffer_aoi, load_aoi, make_grid
    from aoi.config import AOIConfig
    from aoi.geometry import EQUAL_AREA_CRS

    try:
        config = AOIConfig(path=path, layer=layer, where=where, kind=kind, buffer_m=buffer_m)
    except ValidationError as exc:
        first = exc.errors()[0]
        option = "--" + "-".join(str(part) for part in first["loc"]).replace("_", "-")
        raise click.BadParameter(
            f"{first.get('input')!r}: {first['msg']}", param_hint=option
        ) from None
    aois = load_aoi(config)
    areas = aois.to_crs(EQUAL_AREA_CRS).area / 10_000
    buffered = buffer_aoi(aois, buffer_m)
    cells = make_grid(shapely.union_all(buffered.geometry.values), chip_size_px=chip_size_px)
    rows = [
        {
            "aoi_id": r.aoi_id,
            "aoi_name": r.aoi_name,
            "aoi_kind": r.aoi_kind,
            "area_ha": round(float(a), 1),
        }
        for r, a in zip(aois.itertuples(), areas, strict=True)
    ]
    if as_json:
        click.echo(json.dumps({"aois": rows, "chips": len(cells)}, indent=2))
        return
    for r in rows:
        click.echo(f"{r['aoi_id']}\t{r['aoi_name']}\t{r['aoi_kind']}\t{r['area_ha']:.0f} ha")
    click.echo(
        f"{len(rows)} AOI(s); {len(cells)} chip(s) of {chip_size_px} px with a "
        f"{buffer_m:.0f} m buffer"
    )
