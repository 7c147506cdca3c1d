"""The run store: an SQLite file under the output folder that records every run, the status of
every (chip, period) unit with the reason of any failure, the watermarks of imagery already
processed, and the site history.

It is what ``minewatch runs list/show`` reads, and what an operator inspects after a night's scan.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd

from detection.errors import DetectionError, InputFormatError, InputNotFoundError, InputReadError

log = logging.getLogger(__name__)

STORE_NAME = "runs.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT NOT NULL DEFAULT 'running',
    config_name TEXT,
    config_sha256 TEXT NOT NULL,
    scan_identity TEXT NOT NULL DEFAULT '',
    model_sha256 TEXT NOT NULL,
    software_version TEXT NOT NULL,
    period_start TEXT,
    period_end TEXT,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS units (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    tile_id TEXT NOT NULL,
    period TEXT NOT NULL,
    status TEXT NOT NULL,
    reused INTEGER NOT NULL,
    observed_fraction REAL,
    scenes INTEGER,
    reason TEXT,
    unit_key TEXT,
    PRIMARY KEY (run_id, tile_id, period)
);
CREATE TABLE IF NOT EXISTS watermarks (
    tile_id TEXT NOT NULL,
    period TEXT NOT NULL,
    scene_ids TEXT NOT NULL,
    newest_acquisition TEXT,
    unit_key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (tile_id, period)
);
CREATE TABLE IF NOT EXISTS site_history (
    site_id TEXT NOT NULL,
    period TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (site_id, period)
);
"""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RunStore:
    """The run store of one output folder."""

    def __init__(self, out_dir: Path, *, readonly: bool = False) -> None:
        self.path = Path(out_dir) / STORE_NAME
        self.readonly = readonly
        if readonly:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.executescript(_SCHEMA)

    @classmethod
    def open_existing(cls, out_dir: Path) -> RunStore:
        """The run store of a finished scan's folder, read-only (readers never modify it: the
        report, evidence packs). Each read raises :class:`InputNotFoundError` while the folder
        holds no store, :class:`InputFormatError` when the file is not one."""
        return cls(out_dir, readonly=True)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self.readonly and not self.path.is_file():
            raise InputNotFoundError(
                f"{str(self.path.parent)!r} holds no run store ({STORE_NAME}); pass the output "
                "folder of a scan ('minewatch scan CONFIG --out OUT')"
            )
        try:
            if self.readonly:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                con = sqlite3.connect(uri, uri=True, timeout=30)
            else:
                con = sqlite3.connect(self.path, timeout=30)
        except sqlite3.Error as exc:
            raise InputReadError(f"{self.path}: cannot open the run store: {exc}") from exc
        con.row_factory = sqlite3.Row
        try:
            with con:  # one transaction: committed on success, rolled back on error
                yield con
        except sqlite3.DatabaseError as exc:
            if not self.readonly:
                raise
            raise InputFormatError(
                f"{self.path}: not a readable minewatch run store ({exc}); pass the output "
                "folder of a scan"
            ) from exc
        finally:
            con.close()

    # ------------------------------------------------------------------ runs
    def start_run(
        self,
        run_id: str,
        *,
        config_name: str,
        config_sha256: str,
        model_sha256: str,
        software_version: str,
        period: dict[str, str],
        scan_identity: str = "",
    ) -> None:
        """Record a new run. Runs still marked ``running`` are closed as ``interrupted``: the
        caller holds the output folder's lock, so no other scan is writing it, and such a run was
        killed (``kill -9``, a power cut) or could not record its end (a full disk)."""
        with self._connect() as con:
            stale = con.execute(
                "UPDATE runs SET outcome='interrupted', ended_at=? WHERE outcome='running'",
                (_now(),),
            ).rowcount
            if stale:
                log.warning(
                    "%d earlier run(s) in %s never recorded their end (killed, or the disk was "
                    "full); marked 'interrupted'",
                    stale,
                    self.path.parent,
                )
            con.execute(
                "INSERT INTO runs (run_id, started_at, config_name, config_sha256, scan_identity,"
                " model_sha256, software_version, period_start, period_end)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    _now(),
                    config_name,
                    config_sha256,
                    scan_identity,
                    model_sha256,
                    software_version,
                    period["start"],
                    period["end"],
                ),
            )

    def finish_run(self, run_id: str, *, outcome: str, summary: dict[str, Any]) -> None:
        with self._connect() as con:
            con.execute(
                "UPDATE runs SET ended_at=?, outcome=?, summary=? WHERE run_id=?",
                (_now(), outcome, json.dumps(summary, default=str), run_id),
            )

    def last_run(self) -> dict[str, Any] | None:
        """The most recent run that finished (any outcome but ``running``)."""
        with self._connect() as con:
            row = con.execute(
                "SELECT * FROM runs WHERE outcome != 'running' ORDER BY started_at DESC, rowid DESC"
                " LIMIT 1"
            ).fetchone()
        return dict(row) if row else None

    def list_runs(self) -> list[dict[str, Any]]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT r.run_id, r.started_at, r.ended_at, r.outcome, r.config_name,"
                " r.period_start, r.period_end,"
                " SUM(u.reused = 0) AS units_computed, SUM(u.reused = 1) AS units_reused,"
                " SUM(u.status = 'failed') AS units_failed"
                " FROM runs r LEFT JOIN units u ON u.run_id = r.run_id"
                " GROUP BY r.run_id ORDER BY r.started_at, r.rowid"
            ).fetchall()
        return [dict(r) for r in rows]

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run with its units. ``run_id`` may be ``latest`` or a unique prefix.

        Raises:
            DetectionError: no run matches.
        """
        with self._connect() as con:
            if run_id == "latest":
                row = con.execute(
                    "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1"
                ).fetchone()
            else:
                rows = con.execute(
                    "SELECT * FROM runs WHERE run_id LIKE ?", (run_id + "%",)
                ).fetchall()
                if len(rows) > 1:
                    raise DetectionError(
                        f"run id {run_id!r} matches {len(rows)} runs; give more characters"
                    )
                row = rows[0] if rows else None
            if row is None:
                raise DetectionError(
                    f"no run {run_id!r} in {self.path}; "
                    f"see 'minewatch runs list {self.path.parent}'"
                )
            units = con.execute(
                "SELECT tile_id, period, status, reused, observed_fraction, scenes, reason"
                " FROM units WHERE run_id=? ORDER BY period, tile_id",
                (row["run_id"],),
            ).fetchall()
        run = dict(row)
        run["summary"] = json.loads(run["summary"]) if run.get("summary") else None
        run["units"] = [dict(u) for u in units]
        return run

    # ----------------------------------------------------------------- units
    def record_unit(
        self,
        run_id: str,
        *,
        tile_id: str,
        period: str,
        status: str,
        reused: bool,
        observed_fraction: float,
        scenes: int,
        reason: str,
        unit_key: str,
        scene_ids: tuple[str, ...],
        newest_acquisition: str | None,
    ) -> None:
        with self._connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO units VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    tile_id,
                    period,
                    status,
                    int(reused),
                    observed_fraction,
                    scenes,
                    reason,
                    unit_key,
                ),
            )
            if status != "failed":
                con.execute(
                    "INSERT OR REPLACE INTO watermarks VALUES (?,?,?,?,?,?)",
                    (
                        tile_id,
                        period,
                        json.dumps(sorted(scene_ids)),
                        newest_acquisition,
                        unit_key,
                        run_id,
                    ),
                )

    def watermarks(self) -> list[dict[str, Any]]:
        with self._connect() as con:
            rows = con.execute("SELECT * FROM watermarks ORDER BY period, tile_id").fetchall()
        return [dict(r) for r in rows]

    def software_version(self, run_id: str) -> str | None:
        """The minewatch version that made run ``run_id`` (None: no such run)."""
        with self._connect() as con:
            row = con.execute(
                "SELECT software_version FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return str(row[0]) if row else None

    # --------------------------------------------------------------- history
    def site_history(self) -> list[dict[str, Any]]:
        """The site history as GeoJSON features (lon/lat), one per site and period."""
        with self._connect() as con:
            records = [r[0] for r in con.execute("SELECT record FROM site_history")]
        return [json.loads(r) for r in records]

    def save_history(self, history: gpd.GeoDataFrame) -> None:
        """Replace the site history with ``history`` (one row per site and period)."""
        records = json.loads(history.to_json(drop_id=True))["features"] if len(history) else []
        with self._connect() as con:
            con.execute("DELETE FROM site_history")
            con.executemany(
                "INSERT OR REPLACE INTO site_history VALUES (?,?,?)",
                [
                    (
                        f["properties"]["site_id"],
                        f["properties"]["period_label"],
                        json.dumps(f, sort_keys=True),
                    )
                    for f in records
                ],
            )
