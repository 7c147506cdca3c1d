"""A rolling ``periods`` config (``last: N`` up to today) through the real command line: its
errors are one line naming the key, and a rolling scan is the same scan as the fixed one it
replaces."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import features, minewatch, small_config


def _bad_config(tmp_path: Path, periods: dict[str, object]) -> Path:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "aoi": {"path": "a.geojson"},
                "source": {"kind": "local", "path": "s"},
                "periods": periods,
            }
        )
    )
    return cfg


def _one_error_line(proc: subprocess.CompletedProcess[str], cfg: Path) -> str:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"minewatch: error: {cfg}: key 'periods")
    return lines[0]


def test_last_below_two_is_one_line(tmp_path: Path) -> None:
    cfg = _bad_config(tmp_path, {"kind": "quarter", "last": 1})
    line = _one_error_line(minewatch("scan", str(cfg), cwd=tmp_path), cfg)
    assert "key 'periods.last'" in line
    assert "expected 2 or more periods" in line and "set 'last: 2' or more (got 1)" in line


def test_start_and_last_in_the_file_is_one_line(tmp_path: Path) -> None:
    cfg = _bad_config(tmp_path, {"kind": "quarter", "start": "2024-01-01", "last": 4})
    line = _one_error_line(minewatch("scan", str(cfg), cwd=tmp_path), cfg)
    assert "'start' (2024-01-01) and 'last' (4) are both given" in line
    assert "remove 'start' (or --since) for a rolling window, or remove 'last'" in line


def test_since_with_a_rolling_config_is_one_line(tmp_path: Path) -> None:
    cfg = _bad_config(tmp_path, {"kind": "quarter", "last": 4})
    proc = minewatch("scan", str(cfg), "--since", "2023-01-01", cwd=tmp_path)
    line = _one_error_line(proc, cfg)
    assert (
        "'start' (2023-01-01) and 'last' (4) are both given (start may come from --since)" in line
    )


def test_last_with_custom_is_one_line(tmp_path: Path) -> None:
    custom = [
        {"start": "2024-01-01", "end": "2024-02-01"},
        {"start": "2024-03-01", "end": "2024-04-01"},
    ]
    cfg = _bad_config(tmp_path, {"kind": "custom", "last": 2, "custom": custom})
    line = _one_error_line(minewatch("scan", str(cfg), cwd=tmp_path), cfg)
    assert "'last' (2) does not apply to kind 'custom'" in line


@pytest.mark.slow
def test_rolling_config_continues_the_fixed_scan(small_world: Path, tmp_path: Path) -> None:
    """A folder scanned with a fixed range, then with ``last: 2`` (``--until`` standing in for
    today): the same scan, every unit reused, the same alerts."""
    fixed = small_config(tmp_path, world=small_world)
    proc = minewatch("scan", str(fixed), "--out", "out", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before = features(tmp_path / "out")
    rolling = tmp_path / "rolling.yaml"
    data = yaml.safe_load(fixed.read_text())
    data["periods"] = {"kind": "quarter", "last": 2}
    rolling.write_text(yaml.safe_dump(data))
    proc = minewatch(
        "scan", str(rolling), "--out", "out", "--until", "2024-08-15", "--json", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["units_computed"] == 0 and summary["units_reused"] > 0
    assert features(tmp_path / "out") == before
