"""``minewatch tiles composite`` plans as a scan does (issue 17, item 5): the same chip-periods,
the same coverage statuses, and a period without imagery said to be not observed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyogrio

from tests.cli.conftest import minewatch
from tests.cli.test_solar_day import SCENES, write_config, write_scene


def test_a_period_without_imagery_is_not_observed_as_in_the_scan(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for scene_id, when, scale in SCENES:  # all in July: 2024Q3 has imagery, 2024Q2 none
        write_scene(scenes, scene_id, when, scale)
    cfg = write_config(tmp_path, scenes)

    res = minewatch("tiles", "composite", str(cfg), "--out", "out", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert summary["unobserved_periods"] == ["2024Q2"]
    assert "not observed: 2024Q2" in res.stderr and "2024Q3" not in res.stderr
    units = summary["units"]
    q2 = [u for u in units if u["period"] == "2024Q2"]
    q3 = [u for u in units if u["period"] == "2024Q3"]
    assert q2 and {u["status"] for u in q2} == {"no_imagery"}
    assert all(u["scenes"] == 0 and u["composite"] == "" for u in q2)
    assert q3 and {u["status"] for u in q3} == {"observed"}
    assert all(Path(tmp_path / u["composite"]).is_file() for u in q3)
    with open(tmp_path / "out" / "composites" / "coverage.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["tile_id"], r["period"], r["status"]) for r in rows] == [
        (u["tile_id"], u["period"], u["status"]) for u in units
    ]

    # The scan of the same config plans the same chip-periods, with the same statuses.
    res = minewatch("scan", str(cfg), "--out", "scan", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "not observed: 2024Q2" in res.stderr
    coverage = pyogrio.read_dataframe(tmp_path / "scan" / "alerts.gpkg", layer="coverage")
    scanned = sorted(zip(coverage["tile_id"], coverage["period"], coverage["status"], strict=True))
    assert scanned == sorted((u["tile_id"], u["period"], u["status"]) for u in units)

    # Without --json the rows and the unobserved period are said too.
    res = minewatch("tiles", "composite", str(cfg), "--out", "out", "--overwrite", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2024Q2: no_imagery, 0 scene(s)" in res.stdout
    assert "not observed: 2024Q2" in res.stderr
