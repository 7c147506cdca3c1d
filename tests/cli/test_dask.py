"""A scan on a real Dask cluster: a `dask scheduler` and `dask worker` processes on loopback, as an
operator starts them, with a worker killed (SIGKILL) mid-run (issue 18 item 7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import features, minewatch, small_config

ENV = os.environ | {"HF_HUB_OFFLINE": "1"}


@contextmanager
def dask_cluster(folder: Path, *, workers: int) -> Iterator[tuple[Path, Any]]:
    """`dask scheduler --scheduler-file` and ``workers`` `dask worker` processes (one thread each,
    under their nanny, the default), on 127.0.0.1; yields the scheduler file and a client that
    watches the cluster. Their logs go to ``folder/dask-*.log``."""
    from distributed import Client

    scheduler_file = folder / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]
    commands = [
        [*dask, "scheduler", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1",
         "--port", "0", "--no-dashboard"],
        *(
            [*dask, "worker", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1",
             "--nthreads", "1", "--name", f"w{i}", "--no-dashboard"]
            for i in range(workers)
        ),
    ]
    with ExitStack() as stack:
        procs = []
        for i, command in enumerate(commands):
            log = stack.enter_context(open(folder / f"dask-{i}.log", "w"))
            procs.append(subprocess.Popen(command, cwd=folder, env=ENV, stdout=log, stderr=log))
            if i == 0:  # the workers read the scheduler's address from its file
                deadline = time.monotonic() + 60
                while not scheduler_file.is_file() and time.monotonic() < deadline:
                    time.sleep(0.1)
        try:
            with Client(scheduler_file=str(scheduler_file), timeout="60s") as client:
                client.wait_for_workers(workers, timeout=120)
                yield scheduler_file, client
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def scan_killing_a_worker(
    cfg: Path, folder: Path, client: Any, *options: str
) -> subprocess.CompletedProcess[str]:
    """Run ``minewatch scan`` and SIGKILL one worker process once a unit of this run is done."""
    units = folder / "out" / "units"
    done_before = len(list(units.glob("*/*.json")))
    proc = subprocess.Popen(
        [sys.executable, "-m", "minewatch", "scan", str(cfg), "--out", "out", "--json", *options],
        cwd=folder,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while len(list(units.glob("*/*.json"))) < done_before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the scan ended before a worker could be killed"
    pid = sorted(client.run(os.getpid).values())[0]  # a worker process (its nanny lives on)
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_a_worker_killed_mid_run_costs_nothing(
    reference: Path, small_world: Path, tmp_path: Path
) -> None:
    """Two workers, one killed with SIGKILL mid-run; --scheduler takes the scheduler file."""
    cfg = small_config(tmp_path, world=small_world)
    with dask_cluster(tmp_path, workers=2) as (scheduler_file, client):
        proc = scan_killing_a_worker(cfg, tmp_path, client, "--scheduler", str(scheduler_file))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["failures"] == [] and summary["units_computed"] > 0
    assert json.dumps(features(tmp_path / "out")) == json.dumps(features(reference))


def test_a_lost_unit_is_retried_or_recorded_failed(
    reference: Path, small_world: Path, tmp_path: Path
) -> None:
    """One worker, killed: it held the only copy of the scattered source and detector, so the
    units in flight are cancelled (a FutureCancelledError traceback before issue 18). With
    ``--task-retries 0`` they fail with their cause (exit 3 or 1, no traceback); the next run,
    with the default retries, survives the same kill and gives the clean run's alerts."""
    cfg = small_config(tmp_path, world=small_world)
    with dask_cluster(tmp_path, workers=1) as (_, client):
        address = client.scheduler.address
        failed = scan_killing_a_worker(
            cfg, tmp_path, client, "--scheduler", address, "--task-retries", "0"
        )
        # exit 3 (partial); 1 (failed) when the kill also took the first unit's result, still
        # held in the worker's memory (Dask keeps results on the worker until gathered)
        assert failed.returncode in (1, 3), failed.stderr[-3000:]
        assert "Traceback" not in failed.stderr
        reasons = {f["reason"] for f in json.loads(failed.stdout)["failures"]}
        assert reasons == {
            "lost with its Dask worker on each of 1 tries (FutureCancelledError); the workers' "
            "logs say why (memory limit, killed process); raise --task-retries"
        }
        assert "units (chip x period): lost with its Dask worker" in failed.stderr

        resumed = scan_killing_a_worker(cfg, tmp_path, client, "--scheduler", address)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    assert "were submitted again (--task-retries 2)" in resumed.stderr
    assert json.loads(resumed.stdout)["failures"] == []
    assert json.dumps(features(tmp_path / "out")) == json.dumps(features(reference))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such scheduler file; expected tcp://HOST:PORT or the JSON file"),
        ("{}", "not a Dask scheduler file (KeyError: 'address')"),
    ],
)
def test_a_bad_scheduler_file_is_one_line(
    small_world: Path, tmp_path: Path, content: str | None, message: str
) -> None:
    cfg = small_config(tmp_path, world=small_world)
    if content is not None:
        (tmp_path / "scheduler.json").write_text(content)
    proc = minewatch(
        "scan", str(cfg), "--out", "out", "--scheduler", "scheduler.json", cwd=tmp_path
    )
    assert proc.returncode == 1
    assert f"--scheduler scheduler.json: {message}" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_executor_errors_are_of_their_cause(tmp_path: Path) -> None:
    """Checked before any cluster starts: a bad option, a missing or wrong scheduler file."""
    from detection.errors import ConfigError, InputFormatError, InputNotFoundError
    from detection.runs import ExecutorConfig, scheduler_address

    with pytest.raises(ConfigError, match="--workers -1: expected 0 or more") as bad:
        ExecutorConfig(workers=-1)
    assert isinstance(bad.value, ValueError)
    with pytest.raises(FileNotFoundError, match="no such scheduler file") as missing:
        scheduler_address(str(tmp_path / "scheduler.json"))
    assert isinstance(missing.value, InputNotFoundError)
    (tmp_path / "scheduler.json").write_text("{}")
    with pytest.raises(InputFormatError, match="not a Dask scheduler file"):
        scheduler_address(str(tmp_path / "scheduler.json"))
