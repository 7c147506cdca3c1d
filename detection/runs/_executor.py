"""Where units of work run: in this process (default), on a local Dask cluster (``workers``), or on
an existing Dask cluster (``scheduler``: an address or a scheduler file). The results are the same;
only the speed differs.

A unit lost with its worker (``KilledWorker``, or ``FutureCancelledError`` when the worker held the
only copy of the scattered source and detector) is submitted again, up to ``retries`` times, with
the source and detector scattered again if they were lost; after that it is a ``failed`` unit with
the cause, never a traceback.

Every worker must see the output folder (units write their composites there): on one machine that
is given; on a cluster, put the output folder on a shared filesystem.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detection.errors import (
    ConfigError,
    InputFormatError,
    InputNotFoundError,
    SchedulerUnreachableError,
)
from detection.runs._units import UnitResult, UnitSettings, WorkUnit, process_unit
from models.detector import Detector
from tiles.sources import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutorConfig:
    """``workers`` > 0 starts a local Dask cluster of that many worker processes; ``scheduler``
    (``tcp://HOST:PORT``, or the JSON file ``dask scheduler --scheduler-file FILE`` writes) uses
    an existing cluster; neither runs in this process. ``gpu`` sends units only to workers that
    declare a ``GPU`` resource (``dask worker --resources GPU=1``). ``retries``: how many times a
    unit lost with its worker is submitted again before it counts as failed."""

    workers: int = 0
    scheduler: str | None = None
    gpu: bool = False
    retries: int = 2

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"--workers {self.workers}: expected 0 or more")
        if self.retries < 0:
            raise ConfigError(f"--task-retries {self.retries}: expected 0 or more")
        if self.workers and self.scheduler:
            raise ConfigError("give either --workers or --scheduler, not both")
        if self.scheduler:
            scheduler_address(self.scheduler)  # a bad scheduler file is said before any work

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
        DetectionError: the Dask scheduler cannot be reached, or its scheduler file is missing
            or holds no address.
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
    client, cluster = _connect(executor)
    log.info("running %d unit(s) on %s", len(units), executor.describe())
    try:
        yield from _run_on_cluster(
            client,
            units,
            source=source,
            detector=detector,
            settings=settings,
            units_dir=units_dir,
            executor=executor,
        )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def scheduler_address(value: str) -> str:
    """The address ``--scheduler`` names: the value itself (``tcp://HOST:PORT``), or the
    ``address`` in the scheduler file it names (``dask scheduler --scheduler-file FILE``).

    Raises:
        DetectionError: a scheduler file that is missing or holds no address.
    """
    path = Path(value)
    if "://" in value or not (value.endswith(".json") or path.exists()):
        return value
    expected = (
        f"expected tcp://HOST:PORT or the JSON file 'dask scheduler --scheduler-file {value}' "
        "writes"
    )
    try:
        address = json.loads(path.read_text())["address"]
    except FileNotFoundError:
        raise InputNotFoundError(
            f"--scheduler {value}: no such scheduler file; {expected}"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputFormatError(
            f"--scheduler {value}: not a Dask scheduler file ({type(exc).__name__}: {exc}); "
            f"{expected}"
        ) from None
    return str(address)


def _connect(executor: ExecutorConfig) -> tuple[Any, Any]:
    """A Dask client and the local cluster it started (None for an existing cluster)."""
    from distributed import Client, LocalCluster

    address = scheduler_address(executor.scheduler) if executor.scheduler else None
    try:
        if address:
            return Client(address, timeout="20s"), None
        cluster = LocalCluster(
            n_workers=executor.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            resources={"GPU": 1} if executor.gpu else None,
        )
        return Client(cluster), cluster
    except OSError as exc:
        named = "" if address == executor.scheduler else f" (from {executor.scheduler})"
        raise SchedulerUnreachableError(
            f"cannot reach the Dask scheduler {address!r}{named}: {exc}; check the address "
            "and that 'dask scheduler' is running"
        ) from exc


def _run_on_cluster(
    client: Any,
    units: Sequence[WorkUnit],
    *,
    source: Source,
    detector: Detector,
    settings: UnitSettings,
    units_dir: Path,
    executor: ExecutorConfig,
) -> Iterator[tuple[WorkUnit, UnitResult]]:
    from distributed import KilledWorker, as_completed
    from distributed.client import FutureCancelledError
    from distributed.comm import CommClosedError

    lost_errors = (KilledWorker, FutureCancelledError, CommClosedError)
    shared: list[Any] = []
    resources = {"GPU": 1} if executor.gpu else None

    def submit(unit: WorkUnit, attempt: int) -> Any:
        # The source and detector are scattered to every worker once; a worker that held the
        # only copy takes them along when it dies, so they are scattered again.
        if not shared or any(f.status != "finished" for f in shared):
            shared[:] = client.scatter([source, detector], broadcast=True, hash=False)
        key = f"unit-{unit.cell.tile_id}-{unit.period.label}"
        return client.submit(
            process_unit,
            unit,
            source=shared[0],
            detector=shared[1],
            settings=settings,
            units_dir=units_dir.absolute(),  # workers may have another working directory
            key=f"{key}-retry{attempt}" if attempt else key,
            resources=resources,
            pure=False,
        )

    futures = {submit(unit, 0): (unit, 0) for unit in units}
    pending = as_completed(futures)
    resubmitted: set[tuple[str, str]] = set()
    for future in pending:
        unit, attempt = futures.pop(future)
        try:
            result = future.result()
        except lost_errors as exc:
            if attempt < executor.retries:
                log.info(
                    "chip %s, period %s: lost with its Dask worker (%s); submitting it again "
                    "(%d of %d)",
                    unit.cell.tile_id,
                    unit.period.label,
                    type(exc).__name__,
                    attempt + 1,
                    executor.retries,
                )
                resubmitted.add((unit.cell.tile_id, unit.period.label))
                retry = submit(unit, attempt + 1)
                futures[retry] = (unit, attempt + 1)
                pending.add(retry)
                continue
            result = _lost(unit, settings, exc, tries=attempt + 1)
        yield unit, result
    if resubmitted:
        log.warning(
            "%d unit(s) lost with a Dask worker were submitted again (--task-retries %d)",
            len(resubmitted),
            executor.retries,
        )


def _lost(unit: WorkUnit, settings: UnitSettings, exc: BaseException, *, tries: int) -> UnitResult:
    """A unit whose worker died on each try: failed (not saved, so the next scan retries it)."""
    reason = (
        f"lost with its Dask worker on each of {tries} tries ({type(exc).__name__}); the "
        "workers' logs say why (memory limit, killed process); raise --task-retries"
    )
    log.error("chip %s, period %s failed: %s", unit.cell.tile_id, unit.period.label, reason)
    return UnitResult(
        unit.cell.tile_id,
        unit.period.label,
        unit.key(settings),
        "failed",
        scenes=len(unit.scenes),
        reason=reason,
    )
