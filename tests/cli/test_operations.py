"""Scheduled-scan guarantees: incremental, idempotent, locked, resumable, partial failures, Dask."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detection.runs import output_lock
from tests.cli.conftest import features, minewatch, small_config


def test_rerun_does_no_model_work_and_is_byte_identical(reference: Path) -> None:
    before = features(reference)
    cfg = reference.parent / "scan.yaml"
    proc = minewatch("scan", str(cfg), "--out", "out", "--json", cwd=reference.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["units_computed"] == 0 and summary["units_reused"] > 0
    after = features(reference)
    assert json.dumps(after) == json.dumps(before)
    text = minewatch("scan", str(cfg), "--out", "out", cwd=reference.parent).stdout
    assert "no new imagery" in text


def test_runs_list_and_show_read_the_store(reference: Path) -> None:
    proc = minewatch("runs", "list", str(reference), "--json", cwd=reference.parent)
    assert proc.returncode == 0
    runs = json.loads(proc.stdout)
    assert len(runs) >= 1 and runs[0]["outcome"] == "success"
    shown = minewatch("runs", "show", str(reference), cwd=reference.parent)
    assert shown.returncode == 0 and "units:" in shown.stdout
    missing = minewatch("runs", "show", str(reference), "nosuchrun", cwd=reference.parent)
    assert missing.returncode == 1 and "no run 'nosuchrun'" in missing.stderr


def test_backfill_with_since_updates_the_same_folder(reference: Path) -> None:
    """Moving the periods (a backfill, or next quarter's scan) keeps it the same scan."""
    before = features(reference)
    cfg = reference.parent / "scan.yaml"
    proc = minewatch("scan", str(cfg), "--out", "out", "--since", "2024-01-01", "--json",
                     cwd=reference.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["units_computed"] == 0 and summary["units_reused"] > 0
    assert features(reference) == before


def test_another_scans_folder_needs_overwrite(
    reference: Path, small_world: Path, tmp_path: Path
) -> None:
    cfg = small_config(tmp_path, world=small_world, sites__min_area_ha=2.0)
    proc = minewatch("scan", str(cfg), "--out", str(reference), cwd=tmp_path)
    assert proc.returncode == 1
    assert "already holds results of another scan" in proc.stderr
    assert "--overwrite" in proc.stderr


def test_a_locked_folder_is_refused(small_world: Path, tmp_path: Path) -> None:
    cfg = small_config(tmp_path, world=small_world)
    with output_lock(tmp_path / "out"):
        proc = minewatch("scan", str(cfg), "--out", "out", cwd=tmp_path)
    assert proc.returncode == 1
    assert f"another scan (pid {os.getpid()}" in proc.stderr
    assert not (tmp_path / "out" / "alerts.geojson").exists()
    assert not (tmp_path / "out" / ".minewatch.lock").exists()  # the holder's, removed on release


def test_a_lock_file_left_by_a_killed_scan_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".minewatch.lock").write_text('{"pid": 999999, "started_at": "killed"}')
    with output_lock(out) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    with pytest.raises(RuntimeError, match="inside"), output_lock(out):
        raise RuntimeError("inside")
    assert not lock.exists() and out.is_dir()


def test_kill_9_then_resume_gives_the_same_alerts(
    reference: Path, small_world: Path, tmp_path: Path
) -> None:
    cfg = small_config(tmp_path, world=small_world)
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "minewatch", "scan", str(cfg), "--out", "out"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    units = tmp_path / "out" / "units"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(units.glob("*/*.json"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out" / "alerts.geojson").exists(), "killed before the end"
    done = len(list(units.glob("*/*.json")))
    resumed = minewatch("scan", str(cfg), "--out", "out", "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads(resumed.stdout)
    assert summary["units_reused"] == done
    assert json.dumps(features(tmp_path / "out")) == json.dumps(features(reference))
    # no temporary file survives the kill and the resume
    assert not list((tmp_path / "out").rglob("*.tmp"))
    # the killed run is not left 'running' forever: the next run closed it (issue 18 item 6)
    listed = minewatch("runs", "list", "out", "--json", cwd=tmp_path)
    outcomes = [r["outcome"] for r in json.loads(listed.stdout)]
    assert sorted(outcomes) == ["interrupted", "success"], outcomes
    assert "never recorded their end" in resumed.stderr


def test_dask_local_cluster_gives_the_same_alerts(
    reference: Path, small_world: Path, tmp_path: Path
) -> None:
    cfg = small_config(tmp_path, world=small_world)
    proc = minewatch("scan", str(cfg), "--out", "out", "--workers", "2", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["units_computed"] > 0
    assert json.dumps(features(tmp_path / "out")) == json.dumps(features(reference))


def test_unreachable_scheduler_is_one_line(small_world: Path, tmp_path: Path) -> None:
    cfg = small_config(tmp_path, world=small_world)
    proc = minewatch(
        "scan",
        str(cfg),
        "--out",
        "out",
        "--scheduler",
        "tcp://127.0.0.1:9",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "cannot reach the Dask scheduler 'tcp://127.0.0.1:9'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_json_log_lines(reference: Path) -> None:
    proc = minewatch(
        "-v", "--log-format", "json", "runs", "list", str(reference), cwd=reference.parent
    )
    cfg = reference.parent / "scan.yaml"
    proc = minewatch(
        "-v", "--log-format", "json", "scan", str(cfg), "--out", "out", cwd=reference.parent
    )
    assert proc.returncode == 0
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    assert any("no new imagery" in x["message"] for x in lines)


def test_full_disk_fails_cleanly_and_keeps_earlier_outputs(
    reference: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while writing the outputs: the run is marked failed, earlier files stay whole."""
    import detection.alerts._exports
    from detection.runs import RunStore, load_config, run_scan
    from models.indices import IndexDetector

    before = (reference / "alerts.geojson").read_bytes()
    config = load_config(reference.parent / "scan.yaml")

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(detection.alerts._exports, "write_text_atomic", no_space)
    monkeypatch.setattr("detection.runs._scan.write_geojson", lambda path, fc: no_space())
    with pytest.raises(OSError, match="No space left on device"):
        run_scan(config, detector=IndexDetector(), out_dir=reference)
    assert (reference / "alerts.geojson").read_bytes() == before
    assert RunStore(reference).list_runs()[-1]["outcome"] == "failed"


def test_real_full_disk_mid_run_is_one_line_and_never_left_running(
    reference: Path, small_world: Path, tmp_path: Path
) -> None:
    """Issue 18 item 6, on a real tmpfs of 3 MB that fills up while the units are written: one
    line naming the full disk (no double traceback), no run left 'running', and once space is
    freed the scan resumes to the same alerts."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        cfg = small_config(tmp_path, world=small_world, output__min_free_mb=0.1)
        out = disk / "out"
        proc = minewatch("scan", str(cfg), "--out", str(out), cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("minewatch: error: no space left on the device"), last
        assert not (out / "alerts.geojson").exists()
        subprocess.run(["mount", "-o", "remount,size=300m", str(disk)], check=True)
        again = minewatch("scan", str(cfg), "--out", str(out), "--json", cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-2000:]
        assert json.dumps(features(out)) == json.dumps(features(reference))
        listed = minewatch("runs", "list", str(out), "--json", cwd=tmp_path)
        outcomes = [r["outcome"] for r in json.loads(listed.stdout)]
        assert "running" not in outcomes and outcomes.count("success") == 1, outcomes
        assert set(outcomes) <= {"failed", "interrupted", "success"}
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_low_free_space_is_refused_before_work(
    reference: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil as sh

    from detection.errors import DetectionError
    from detection.runs import load_config, run_scan
    from models.indices import IndexDetector

    usage = sh.disk_usage(reference)
    monkeypatch.setattr(
        "detection.runs._scan.shutil.disk_usage", lambda p: usage._replace(free=50 * 2**20)
    )
    with pytest.raises(DetectionError, match=r"only 50 MB free .* needs at least 200 MB"):
        run_scan(
            load_config(reference.parent / "scan.yaml"), detector=IndexDetector(), out_dir=reference
        )


def test_truncated_scene_is_a_partial_failure_retried_next_run(
    reference: Path, small_world: Path, tmp_path: Path
) -> None:
    """A truncated COG: exit 3, the reason in the summary and the run store; fixed, it is used."""
    import shutil as sh

    world = tmp_path / "world"
    sh.copytree(small_world, world)
    victim = sorted((world / "scenes").glob("*.tif"))[-1]
    original = victim.read_bytes()
    victim.write_bytes(original[: len(original) // 2])
    cfg = small_config(tmp_path, world=world)
    proc = minewatch("scan", str(cfg), "--out", "out", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert f"scene skipped: {victim}" in proc.stderr  # on stderr, which cron mails
    assert "truncated" in proc.stderr
    shown = minewatch("runs", "show", "out", cwd=tmp_path)
    assert "partial" in shown.stdout and victim.name in shown.stdout
    # Nothing was lost: alerts were still written from the scenes that could be read.
    assert (tmp_path / "out" / "alerts.geojson").is_file()

    victim.write_bytes(original)
    again = minewatch("scan", str(cfg), "--out", "out", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout)
    assert summary["outcome"] == "success" and summary["units_computed"] > 0
    assert json.dumps(features(tmp_path / "out")) == json.dumps(features(reference))
