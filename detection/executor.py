"""Where units of work run: in this process (default), on a local Dask cluster (``workers``), or on
an existing Dask cluster (``scheduler``). The results are the same; only the speed differs.

Every worker must see the output folder (units write their composites there): on one machine that
is given; on a cluster, put the output folder on a shared filesystem.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from detection.errors import DetectionError
from detection.units import UnitResult, UnitSettings, WorkUnit, process_unit
from models.detector import Detector
from tiles.sources import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutorConfig:
    """``workers`` > 0 starts a local Dask cluster of that many worker processes; ``scheduler``
    (``tcp://HOST:PORT``) uses an existing cluster; neither runs in this process. ``gpu`` sends
    units only to workers that declare a ``GPU`` resource (``dask worker --resources GPU=1``)."""

    workers: int = 0
    scheduler: str | None = None
    gpu: bool = False

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise DetectionError(f"--workers {self.workers}: expected 0 or more")
        if self.workers and self.scheduler:
            raise DetectionError("give either --workers or --scheduler, not both")

    @property
    def in_process(self) -> bool:
        return not self.workers and not self.scheduler

    def describe(self) -> str:
        if self.scheduler:
            return f"Dask cluster at {self.scheduler}"
        if self.workers:
            return f"local Dask cluster of {self.workers} worker process(es)"
        return "in process"


def run_units(
    units: Sequence[WorkUnit],
    *,
    source: Source,
    detector: Detector,
    settings: UnitSettings,
    units_dir: Path,
    executor: ExecutorConfig,
) -> Iterator[tuple[WorkUnit, UnitResult]]:
    """Process ``units``, yielding ``(unit, result)`` as each finishes (any order on a cluster).

    Raises:
        DetectionError: the Dask scheduler cannot be reached.
    """
    if executor.in_process:
        for unit in units:
            yield (
                unit,
                process_unit(
                    unit, source=source, detector=detector, settings=settings, units_dir=units_dir
                ),
            )
        return
    if not units:
        return
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    try:
        if executor.scheduler:
            client = Client(executor.scheduler, timeout="20s")
        else:
            cluster = LocalCluster(
                n_workers=executor.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                resources={"GPU": 1} if executor.gpu else None,
            )
            client = Client(cluster)
    except OSError as exc:
        raise DetectionError(
            f"cannot reach the Dask scheduler {executor.scheduler!r}: {exc}; check the address "
            "and that 'dask scheduler' is running"
        ) from exc
    log.info("running %d unit(s) on %s", len(units), executor.describe())
    try:
        source_f, detector_f = client.scatter([source, detector], broadcast=True)
        resources = {"GPU": 1} if executor.gpu else None
        futures = {
            client.submit(
                process_unit,
                unit,
                source=source_f,
                detector=detector_f,
                settings=settings,
                units_dir=units_dir,
                key=f"unit-{unit.cell.tile_id}-{unit.period.label}",
                resources=resources,
                pure=False,
            ): unit
            for unit in units
        }
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
