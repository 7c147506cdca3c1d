"""Faults of a remote source, tried as an operator meets them: ``minewatch scan`` in a subprocess
against ``rustac serve`` (a STAC API) and a loopback COG server that answers 404, 403, 500 or an
HTML page for one asset, or a COG host that does not resolve. Nothing is mocked.

What must hold (RELIABILITY.md rows 3, 5, 8, 16; issue 18):
- one bad scene is dropped from its units, with its reason, and the period is composited from the
  others: the alerts stay, the run says which scene was dropped;
- a dead host opens a circuit after a few calls: the run ends at once, naming the host and the
  cause, with the failed exit code;
- a run whose units failed says so in every output, and a failed run leaves the last good outputs
  in place.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import shape

from tests.cli.conftest import minewatch
from tests.conftest import write_aoi
from tests.tiles.servers import RangeServer, RustacServer, StacWorld, stac_stack

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


class Stack:
    def __init__(self, cogs: RangeServer, api: RustacServer, world: StacWorld, url: str) -> None:
        self.cogs, self.api, self.world, self.url = cogs, api, world, url


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stac")
    with stac_stack(root) as (cogs, api, world, proxy):
        yield Stack(cogs, api, world, proxy.url)


def write_config(folder: Path, stack_url: str, world: StacWorld, **http: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    geom = shape(world.items[0]["geometry"]).buffer(-0.011)
    write_aoi(folder / "aoi.geojson", geom, aoi_id="T1", name="Test land")
    settings = {"max_tries": 2, "backoff_s": 0.01, "read_timeout_s": 2, **http}
    http_text = ", ".join(f"{k}: {v}" for k, v in settings.items())
    cfg = folder / "scan.yaml"
    cfg.write_text(
        f"""name: remote-faults
aoi: {{path: aoi.geojson, id_field: id, name_field: name, kind: indigenous_land, buffer_m: 0}}
source:
  kind: stac
  url: {stack_url}
  collection: sentinel-2-l2a
  http: {{{http_text}}}
periods: {{kind: quarter, start: 2024-04-01, end: 2024-09-30}}
grid: {{chip_size_px: 256}}
detector: {{kind: indices}}
"""
    )
    return cfg


def scan(cfg: Path, out: Path) -> tuple[int, str, dict[str, Any]]:
    res = minewatch("scan", str(cfg), "--out", str(out), "--json", cwd=cfg.parent)
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    return res.returncode, res.stderr, run


def alerts(out: Path) -> dict[str, Any]:
    return json.loads((out / "alerts.geojson").read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def baseline(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The scan with no fault: what every faulty scan is compared with."""
    folder = tmp_path_factory.mktemp("baseline")
    stack.cogs.reset()
    code, err, run = scan(write_config(folder, stack.url, stack.world), folder / "out")
    assert code == 0, err
    fc = alerts(folder / "out")
    assert fc["features"], "the synthetic world must give alerts, or nothing below is tested"
    assert "outcome" not in fc["minewatch"] and "unobserved_periods" not in fc["minewatch"]
    return {"run": run, "fc": fc, "folder": folder}


def _last_period_scene(world: StacWorld) -> str:
    """A scene of the last period (2024Q3), which has two."""
    return sorted(world.items, key=lambda i: i["properties"]["datetime"])[-1]["id"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("404", r"HTTP 404, the file does not exist"),
        ("403", r"HTTP 403, access refused"),
        ("500", r"HTTP 500"),
        ("html", r"text/html page, not a GeoTIFF"),
    ],
)
def test_one_bad_asset_drops_its_scene_not_the_period(
    stack: Stack, baseline: dict[str, Any], tmp_path: Path, fault: str, reason: str
) -> None:
    """Issue 18 item 1: one band asset of one scene answers 404/403/500/an HTML page for every
    request. Its scene is dropped from every unit it covers, the units composite the other scene
    of the period, and the run succeeds with the dropped scene named."""
    bad = _last_period_scene(stack.world)
    stack.cogs.reset()
    stack.cogs.inject(f"/cogs/{bad}/B08.tif", *[fault] * 5000)
    code, err, run = scan(write_config(tmp_path, stack.url, stack.world), tmp_path / "out")
    stack.cogs.reset()
    assert code == 0, err
    assert run["outcome"] == "success" and run["failures"] == []
    dropped = run["scenes_dropped"]
    assert dropped and {d["scene_id"] for d in dropped} == {bad}
    assert {d["period"] for d in dropped} == {"2024Q3"}
    assert all(re.search(reason, d["reason"]) for d in dropped), dropped
    assert f"scene dropped: {bad}" in err
    assert run["observed_fraction"]["2024Q3"] > 0.3  # the other scene was composited
    fc = alerts(tmp_path / "out")
    assert len(fc["features"]) >= 1
    assert fc["minewatch"]["dropped_scenes"] == len(dropped)
    assert "outcome" not in fc["minewatch"]  # a success, said nowhere else
    html = (tmp_path / "out" / "review.html").read_text()
    assert "could not be made and were left out" in html
    # The next run tries the dropped scene again (the units are not reused as they are).
    code, err, rerun = scan(tmp_path / "scan.yaml", tmp_path / "out")
    assert code == 0, err
    assert rerun["scenes_dropped"] == [] and rerun["units_computed"] == len(dropped)
    ids = {f["id"] for f in alerts(tmp_path / "out")["features"]}
    assert ids == {f["id"] for f in baseline["fc"]["features"]}


def test_dead_cog_host_opens_the_circuit(stack: Stack, tmp_path: Path) -> None:
    """Issue 18 item 3: every COG href names a host that does not resolve. After three calls
    in a row fail, the host's circuit opens: the remaining units fail at once with one message
    naming the host and the cause, and the scan exits with the failed code."""
    items = json.loads(stack.world.items_path.read_text())
    text = json.dumps(items).replace(stack.cogs.url, "http://cogs.minewatch.invalid")
    dead_items = tmp_path / "items.json"
    dead_items.write_text(text)
    api = RustacServer(stack.world.root / "collection.json", dead_items)
    try:
        cfg = write_config(tmp_path, api.url, stack.world, circuit_failures=3)
        code, err, run = scan(cfg, tmp_path / "out")
    finally:
        api.stop()
    assert code == 1, err
    assert run["outcome"] == "failed"
    reasons = [f["reason"] for f in run["failures"]]
    assert len(reasons) == run["units_computed"] >= 4
    circuit = [r for r in reasons if r.startswith("host cogs.minewatch.invalid unreachable")]
    # the first unit tried both its scenes (2 failed calls), the next unit's first call opened
    # the circuit: every other unit failed at once with the circuit's message
    assert len(circuit) == len(reasons) - 2
    assert all("name resolution (DNS) failed for cogs.minewatch.invalid" in r for r in reasons)
    assert "circuit is open" in err and "name resolution (DNS)" in err
    assert f"failed: {len(circuit)} units (chip x period)" in err  # one line, not one per unit
    # no HEAD was tried once the circuit was open: each failing unit's reason is the same line
    assert len(set(circuit)) == 1


def test_partial_run_says_so_and_a_failed_run_keeps_the_last_outputs(
    stack: Stack, tmp_path: Path
) -> None:
    """Issue 18 item 2: units of the last period fail (every asset answers 404): the run is
    partial, says so in the GeoJSON, the review page and the KML, and keeps the sites of the
    previous period with an observed share of 0. Then every unit fails: the run is failed and
    the outputs of the last run are left as they were."""
    cfg = write_config(tmp_path, stack.url, stack.world)
    out = tmp_path / "out"
    stack.cogs.reset()
    code, err, _ = scan(cfg, out)
    assert code == 0, err
    import pyogrio

    history = pyogrio.read_dataframe(out / "alerts.gpkg", layer="sites_history")
    q2 = history[history["period_label"] == "2024Q2"]
    q2_sites = dict(zip(q2["site_id"], q2["status"], strict=True))
    assert q2_sites
    # Every asset of the last period's scenes answers 404; the Q2 units are reused. (The units
    # and the window cache of Q3 are removed, as a purge of the cache would.)
    shutil.rmtree(out / "units" / "2024Q3")
    shutil.rmtree(out / "cache")
    for item in stack.world.items:
        if item["properties"]["datetime"] >= "2024-07":
            stack.cogs.inject(f"/cogs/{item['id']}/", *["404"] * 20000)
    try:
        code, err, run = scan(cfg, out)
        assert code == 3, err
        assert run["outcome"] == "partial"
        assert {f["period"] for f in run["failures"]} == {"2024Q3"}
        assert all(
            "every scene of the period could not be read" in f["reason"] for f in run["failures"]
        )
        fc = alerts(out)
        meta = fc["minewatch"]
        assert meta["outcome"] == "partial" and meta["unobserved_periods"] == ["2024Q3"]
        assert meta["failed_units"] == len(run["failures"])
        props = {f["id"]: f["properties"] for f in fc["features"]}
        # every site of Q2 is still there, with its last status and an observed share of 0
        assert {sid: p["status"] for sid, p in props.items()} == q2_sites
        assert {p["observed_fraction"] for p in props.values()} == {0.0}
        assert {p["last_detected"] for p in props.values()} == {"2024-06-30"}
        review = (out / "review.html").read_text()
        assert "This run is PARTIAL" in review and "Not observed: 2024Q3" in review
        assert "(PARTIAL RUN)" in (out / "alerts.kml").read_text()
        csv_head = (out / "summary.csv").read_text(encoding="utf-8-sig").splitlines()[:2]
        assert csv_head[0].startswith("run_outcome,site_id,")
        assert csv_head[1].startswith(f"PARTIAL RUN: {meta['failed_units']} unit(s) failed;")
        run_table = pyogrio.read_dataframe(out / "alerts.gpkg", layer="run")
        assert run_table["outcome"].tolist() == ["partial"]
        assert run_table["unobserved_periods"].tolist() == ["2024Q3"]
        assert "not observed: 2024Q3" in err
        names = ("alerts.geojson", "alerts.gpkg", "summary.csv", "alerts.kml", "review.html")
        kept = {name: (out / name).read_bytes() for name in names}
        # Now every unit fails: the outputs of the partial run stay as they were.
        shutil.rmtree(out / "units")
        shutil.rmtree(out / "cache", ignore_errors=True)
        for item in stack.world.items:
            stack.cogs.inject(f"/cogs/{item['id']}/", *["404"] * 20000)
        code, err, failed = scan(cfg, out)
        assert code == 1, err
        assert failed["outcome"] == "failed" and failed["run_id"] != run["run_id"]
        for name, data in kept.items():
            assert (out / name).read_bytes() == data, name
        runs = minewatch("runs", "list", str(out), "--json", cwd=tmp_path)
        assert runs.returncode == 0, runs.stderr
        outcomes = {r["run_id"]: r["outcome"] for r in json.loads(runs.stdout)}
        assert outcomes[failed["run_id"]] == "failed" and outcomes[run["run_id"]] == "partial"
    finally:
        stack.cogs.reset()


def test_a_url_that_is_not_a_stac_api_is_one_line(stack: Stack, tmp_path: Path) -> None:
    """Issue 18 item 9: a source.url that serves HTML (here the COG server's folder listing)
    gave a JSON decode traceback."""
    cfg = write_config(tmp_path, stack.cogs.url, stack.world)
    res = minewatch("scan", str(cfg), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"minewatch: error: {stack.cogs.url}: not a STAC API")
    assert "check source.url" in last
