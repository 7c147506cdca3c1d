"""alerts.gpkg opened in real QGIS (headless): the styles stored in ``layer_styles`` apply."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import geopandas as gpd
import pytest

from detection.exports import write_geopackage
from tests.detection.conftest import to_wgs84, utm_box

SYSTEM_PYTHON = os.environ.get("MINEWATCH_QGIS_PYTHON", "/usr/bin/python3")

#: Runs under the system Python that has QGIS; prints what QGIS made of each layer.
QGIS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from qgis.core import QgsApplication, QgsVectorLayer
    app = QgsApplication([], False)
    app.initQgis()
    out = {}
    for name in ("alerts", "coverage", "aois"):
        layer = QgsVectorLayer(f"{sys.argv[1]}|layername={name}", name, "ogr")
        renderer = layer.renderer()
        info = {"valid": layer.isValid(), "features": layer.featureCount(),
                "renderer": renderer.type() if renderer else None}
        if info["renderer"] == "categorizedSymbol":
            info["attr"] = renderer.classAttribute()
            info["categories"] = sorted(c.value() for c in renderer.categories())
        if info["renderer"] == "RuleRenderer":
            info["rules"] = [r.filterExpression() for r in renderer.rootRule().children()]
        idx = layer.fields().indexOf("review_status")
        if idx >= 0:
            info["review_widget"] = layer.editorWidgetSetup(idx).type()
        info["labels"] = bool(layer.labelsEnabled())
        out[name] = info
    print("RESULT " + json.dumps(out), flush=True)
    # QGIS 3.22 may crash while tearing down offscreen; the result is out, leave at once.
    import os
    os._exit(0)
    """
)


def _qgis_available() -> bool:
    if not shutil.which(SYSTEM_PYTHON):
        return False
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True, timeout=60, check=False
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not _qgis_available(),
    reason=f"QGIS not found for {SYSTEM_PYTHON} (apt-get install python3-qgis qgis-providers)",
)
def test_qgis_applies_the_stored_styles(alerts: gpd.GeoDataFrame, tmp_path: Path) -> None:
    coverage = gpd.GeoDataFrame(
        {"tile_id": ["T1", "T2"], "status": ["observed", "not_observed"]},
        geometry=to_wgs84([utm_box(-500, -500, 3000, 3000), utm_box(2500, -500, 3000, 3000)]),
        crs="EPSG:4326",
    )
    aois = gpd.GeoDataFrame(
        {"aoi_id": ["TI-1"], "aoi_name": ["Munduruku"], "aoi_kind": ["indigenous_land"]},
        geometry=to_wgs84([utm_box(-1000, -1000, 10_000, 10_000)]),
        crs="EPSG:4326",
    )
    path = tmp_path / "alerts.gpkg"
    write_geopackage(
        path,
        alerts=alerts,
        coverage=coverage,
        aois=aois,
        thresholds={"probable": 0.5, "likely": 0.7, "very_likely": 0.9},
    )
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    # A clean environment: the venv's GDAL/PROJ settings (PROJ_DATA, GDAL_DATA...) would point
    # the system QGIS at data of other versions.
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_RUNTIME_DIR": str(runtime),
    }
    run = subprocess.run(
        [SYSTEM_PYTHON, "-c", QGIS_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-2000:]
    got = json.loads(lines[-1].removeprefix("RESULT "))
    assert got["alerts"]["valid"] and got["alerts"]["features"] == 3
    # The default style from layer_styles, not QGIS's single-symbol default.
    assert got["alerts"]["renderer"] == "categorizedSymbol"
    assert got["alerts"]["attr"] == "alert_class"
    assert got["alerts"]["categories"] == ["deforestation", "mining"]
    assert got["alerts"]["labels"] is True
    assert got["alerts"]["review_widget"] == "ValueMap"  # a drop-down to review in QGIS
    assert got["coverage"]["renderer"] == "RuleRenderer"
    assert got["coverage"]["rules"][:2] == [
        "\"status\" = 'observed'",
        "\"status\" = 'partly_observed'",
    ]
    # No style stored for aois: QGIS's default.
    assert got["aois"]["valid"] and got["aois"]["renderer"] == "singleSymbol"
