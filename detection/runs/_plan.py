"""The plan of a scan: which chip x period units exist and which scenes each reads.

One rule, used by the scan and by ``minewatch tiles composite``: a unit (chip x period) exists
when a scene of the period covers the chip itself; it reads every scene of the period over the
chip grown by its halo (a scene may cover only the halo). A chip-period no scene covers is
``no_imagery``: not observed, never "no change".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aoi.grid import GridCell
from detection.runs._units import WorkUnit
from tiles.periods import Period
from tiles.scene import SceneInfo
from tiles.sources import scene_footprint_intersects


@dataclass(frozen=True)
class Plan:
    """The units of a scan, in chip then period order, and the chip-periods without imagery."""

    cells: tuple[GridCell, ...]
    periods: tuple[Period, ...]
    #: the scenes inside the periods, in the order the source listed them
    scenes: tuple[SceneInfo, ...]
    #: chips covered by a scene in at least one period
    active: tuple[GridCell, ...]
    units: tuple[WorkUnit, ...]
    #: chip x period with no scene over the chip (coverage ``no_imagery``)
    no_imagery: tuple[tuple[GridCell, Period], ...]

    def periods_without_units(self) -> list[str]:
        """Labels of the periods in which no chip has a scene."""
        with_units = {u.period.label for u in self.units}
        return [p.label for p in self.periods if p.label not in with_units]


def plan_units(
    cells: Sequence[GridCell],
    periods: Sequence[Period],
    scenes: Iterable[SceneInfo],
    *,
    halo_px: int = 0,
) -> Plan:
    """The units (chip x period) a scan computes over ``cells`` and ``periods``.

    Args:
        cells: the processing grid.
        periods: the periods, oldest first.
        scenes: what the source's search found; those outside every period are left out.
        halo_px: context read around each chip (``grid.halo_px``).
    """
    in_periods = tuple(s for s in scenes if any(p.contains(s.datetime) for p in periods))
    over_chip = {
        c.tile_id: [s for s in in_periods if scene_footprint_intersects(s, c)] for c in cells
    }
    active = tuple(c for c in cells if over_chip[c.tile_id])
    over_read = {
        c.tile_id: [s for s in in_periods if scene_footprint_intersects(s, c.with_halo(halo_px))]
        if halo_px
        else over_chip[c.tile_id]
        for c in active
    }
    units: list[WorkUnit] = []
    no_imagery: list[tuple[GridCell, Period]] = []
    for cell in cells:
        for period in periods:
            if not any(period.contains(s.datetime) for s in over_chip[cell.tile_id]):
                no_imagery.append((cell, period))
                continue
            infos = tuple(s for s in over_read[cell.tile_id] if period.contains(s.datetime))
            units.append(WorkUnit(cell, period, infos))
    return Plan(tuple(cells), tuple(periods), in_periods, active, tuple(units), tuple(no_imagery))
