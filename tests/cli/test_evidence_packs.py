"""From a scan with a SIGMINE title layer to signed evidence packs, verified and tampered with."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest
import shapely
from pypdf import PdfReader

from tests.cli.conftest import CENTER, features, minewatch, small_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scan_out(tmp_path_factory: pytest.TempPathFactory, small_world: Path) -> Path:
    """A small scan whose reserve is open to mining, with a SIGMINE concession over its west
    half; a second key pair for the tests to sign and verify with."""
    folder = tmp_path_factory.mktemp("legal")
    lon, lat = CENTER
    west = shapely.box(lon - 0.05, lat - 0.05, lon, lat + 0.05)
    titles = gpd.GeoDataFrame(
        {
            "PROCESSO": ["850.100/2010"], "NUMERO": [850100], "ANO": [2010],
            "AREA_HA": [30000.0], "ID": ["{X}"], "FASE": ["CONCESSÃO DE LAVRA"],
            "ULT_EVENTO": ["400 - CONC LAVRA/PUBLICADA"], "NOME": ["Mineração Exemplo Ltda"],
            "SUBS": ["MINÉRIO DE OURO"], "USO": ["Industrial"], "UF": ["PA"],
        },
        geometry=gpd.GeoSeries([west], crs=4326).to_crs(4674).values,
        crs="EPSG:4674",
    )
    pyogrio.write_dataframe(titles, folder / "PA.shp", driver="ESRI Shapefile", encoding="UTF-8")
    config = small_config(
        folder, world=small_world, aoi__kind="protected_area", legal__titles={"path": "PA.shp"}
    )
    out = folder / "out"
    done = minewatch("scan", str(config), "--out", str(out), cwd=folder)
    assert done.returncode == 0, done.stderr
    return out


def test_scan_labels_alerts_against_the_titles(scan_out: Path) -> None:
    feats = features(scan_out)
    assert feats, "the small world has sites"
    statuses = {f["properties"]["legal_status"] for f in feats}
    assert statuses <= {"titled", "no_title"}
    for f in feats:
        props = f["properties"]
        west = shapely.geometry.shape(f["geometry"]).centroid.x < CENTER[0]
        if props["legal_status"] == "titled":
            assert props["legal"]["titles"][0]["title_id"] == "850.100/2010"
            assert props["legal"]["title_share"] > 0
        else:
            assert not west or props["legal"]["title_share"] == 0
    with (scan_out / "summary.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["legal_status"] for r in rows} == statuses
    assert any(r["title_ids"] == "850.100/2010" for r in rows) == ("titled" in statuses)
    assert "titles" in {name for name, _ in pyogrio.list_layers(scan_out / "alerts.gpkg")}
    gpkg = pyogrio.read_dataframe(scan_out / "alerts.gpkg", layer="alerts")
    assert set(gpkg["legal_status"]) == statuses
    assert "legal status" in (scan_out / "review.html").read_text()
    scenes = json.loads((scan_out / "scenes.json").read_text())
    some = next(iter(scenes.values()))
    file = some["files"][0]
    assert file["sha256"] == hashlib.sha256(Path(file["href"]).read_bytes()).hexdigest()


def test_pack_written_verified_tampered_and_reproducible(scan_out: Path, tmp_path: Path) -> None:
    sid = features(scan_out)[0]["id"]
    key = tmp_path / "agency.key"
    assert minewatch("alerts", "keygen", str(key), cwd=tmp_path).returncode == 0
    other = tmp_path / "other.key"
    assert minewatch("alerts", "keygen", str(other), cwd=tmp_path).returncode == 0

    done = minewatch(
        "alerts", "evidence-pack", str(scan_out), sid, "--to", str(tmp_path / "packs"),
        "--sign", str(key), "--json", cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    [written] = json.loads(done.stdout)
    pack = Path(written["path"])
    assert written["size_bytes"] < 5e6
    for name in ("site.geojson", "history.geojson", "chips/before.tif", "chips/after.tif",
                 "chips/after_true_colour.png", "provenance.json", "case.pdf", "manifest.json",
                 "manifest.sig", "signing_key.pub"):
        assert (pack / name).is_file(), name
    provenance = json.loads((pack / "provenance.json").read_text())
    assert provenance["run_id"] == json.loads((scan_out / "run.json").read_text())["run_id"]
    assert len(provenance["config_sha256"]) == 64 and len(provenance["model"]["sha256"]) == 64
    assert provenance["software_version"]
    after = [s for s in provenance["scenes"] if s["side"] == "after"]
    assert after and all(s["files"][0]["sha256"] for s in after)
    with __import__("rasterio").open(pack / "chips/after.tif") as chip:
        assert chip.crs is not None and chip.count == 5 and chip.descriptions[2] == "B04"

    ok = minewatch("alerts", "verify", str(pack), "--public-key", f"{key}.pub", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout and "signature valid" in ok.stdout

    wrong = minewatch("alerts", "verify", str(pack), "--public-key", f"{other}.pub", cwd=tmp_path)
    assert wrong.returncode == 1
    assert "another key" in wrong.stdout

    # The same run and site give byte-identical files.
    again = minewatch(
        "alerts", "evidence-pack", str(scan_out), sid, "--to", str(tmp_path / "again"),
        "--sign", str(key), cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    for path in sorted(p for p in pack.rglob("*") if p.is_file()):
        twin = tmp_path / "again" / pack.name / path.relative_to(pack)
        assert twin.read_bytes() == path.read_bytes(), path.name

    # One byte of one chip changed: verify names that file and fails.
    chip = pack / "chips" / "after.tif"
    data = bytearray(chip.read_bytes())
    data[len(data) // 2] ^= 0x01
    chip.write_bytes(bytes(data))
    bad = minewatch("alerts", "verify", str(pack), "--json", cwd=tmp_path)
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["changed"] == ["chips/after.tif"]
    assert report["signature"] == "valid"  # the manifest itself is intact

    # Changing the manifest to match breaks the signature.
    manifest = json.loads((pack / "manifest.json").read_text())
    manifest["files"]["chips/after.tif"]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (pack / "manifest.json").write_text(json.dumps(manifest))
    forged = minewatch("alerts", "verify", str(pack), "--json", cwd=tmp_path)
    assert forged.returncode == 1
    assert json.loads(forged.stdout)["signature"] == "invalid"


def test_case_file_text_reads_back(scan_out: Path, tmp_path: Path) -> None:
    feats = features(scan_out)
    sid = feats[0]["id"]
    done = minewatch(
        "alerts", "evidence-pack", str(scan_out), "--all", "--zip", "--to", str(tmp_path),
        "--workers", "2", cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.stem for p in tmp_path.glob("*.zip")) == sorted(f["id"] for f in feats)
    # Built in two processes or in one, the ZIPs are the same bytes.
    serial = minewatch(
        "alerts", "evidence-pack", str(scan_out), "--all", "--zip", "--to",
        str(tmp_path / "serial"), "--workers", "1", cwd=tmp_path,
    )
    assert serial.returncode == 0, serial.stderr
    for path in tmp_path.glob("*.zip"):
        assert (tmp_path / "serial" / path.name).read_bytes() == path.read_bytes(), path.name
    with zipfile.ZipFile(tmp_path / f"{sid}.zip") as zf:
        pdf = zf.read(f"{sid}/case.pdf")
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    props = feats[0]["properties"]
    assert f"site {sid}" in text
    assert f"Legal status: {props['legal_status']}" in text
    assert "UTM 21S" in text and "EPSG:32721" in text
    assert "latitude, longitude" in text
    centroid = shapely.geometry.shape(feats[0]["geometry"]).centroid
    assert f"{centroid.y:.2f}" in text and f"{centroid.x:.2f}" in text
    assert props["period_start"] in text

    # One flipped byte inside the ZIP: the member fails its check and verify names it.
    raw = bytearray((tmp_path / f"{sid}.zip").read_bytes())
    with zipfile.ZipFile(tmp_path / f"{sid}.zip") as zf:
        info = zf.getinfo(f"{sid}/chips/before.tif")
    header = 30 + len(info.filename) + len(info.extra)  # the member's local header
    offset = info.header_offset + header + info.compress_size // 2
    raw[offset] ^= 0xFF
    (tmp_path / f"{sid}.zip").write_bytes(bytes(raw))
    bad = minewatch("alerts", "verify", str(tmp_path / f"{sid}.zip"), cwd=tmp_path)
    assert bad.returncode == 1
    assert "changed: chips/before.tif" in bad.stdout


def test_unknown_site_and_missing_key_are_clear_errors(scan_out: Path, tmp_path: Path) -> None:
    done = minewatch("alerts", "evidence-pack", str(scan_out), "mw-x-nothere", cwd=tmp_path)
    assert done.returncode == 1
    assert "mw-x-nothere" in done.stderr and "Traceback" not in done.stderr
    nokey = minewatch(
        "alerts", "evidence-pack", str(scan_out), "--all", "--sign", "nope.pem", cwd=tmp_path
    )
    assert nokey.returncode == 1
    assert "nope.pem" in nokey.stderr and "ed25519" in nokey.stderr.lower()
    assert not (scan_out / "evidence-packs").exists()


def test_pack_errors_are_their_cause_and_the_builtin(scan_out: Path, tmp_path: Path) -> None:
    """The library's refusals are the ``DetectionError`` of their cause, each also the builtin
    (``PackError`` stays their common name); the commands above print them as one line."""
    from detection.alerts import PackError, load_private_key, verify_pack, write_evidence_packs
    from detection.errors import ConfigError, InputFormatError, InputNotFoundError
    from detection.runs import RunStore

    with pytest.raises(ValueError, match=r"site\(s\) \['mw-x-nothere'\] are not alerts") as info:
        write_evidence_packs(scan_out, ["mw-x-nothere"], tmp_path / "packs",
                             store=RunStore.open_existing(scan_out))
    assert isinstance(info.value, ConfigError)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no alerts\.geojson") as info:
        write_evidence_packs(tmp_path / "empty", None, tmp_path / "packs",
                             store=RunStore.open_existing(tmp_path / "empty"))
    assert isinstance(info.value, InputNotFoundError)
    # alerts without a run store: the store is named, read only through RunStore
    shutil.copy(scan_out / "alerts.geojson", tmp_path / "empty" / "alerts.geojson")
    with pytest.raises(FileNotFoundError, match=r"holds no run store \(runs\.sqlite\)"):
        write_evidence_packs(tmp_path / "empty", None, tmp_path / "packs",
                             store=RunStore.open_existing(tmp_path / "empty"))
    (tmp_path / "empty" / "runs.sqlite").write_text("not sqlite\n")
    with pytest.raises(ValueError, match=r"not a readable minewatch run store") as info:
        write_evidence_packs(tmp_path / "empty", None, tmp_path / "packs",
                             store=RunStore.open_existing(tmp_path / "empty"))
    assert isinstance(info.value, InputFormatError)
    with pytest.raises(FileNotFoundError, match=r"signing key .*nope\.pem") as info:
        load_private_key(tmp_path / "nope.pem")
    assert isinstance(info.value, InputNotFoundError)
    (tmp_path / "bad.pem").write_text("not a key\n")
    with pytest.raises(ValueError, match="not a readable PEM private key") as info:
        load_private_key(tmp_path / "bad.pem")
    assert isinstance(info.value, InputFormatError)
    with pytest.raises(FileNotFoundError, match=r"evidence pack .* does not exist"):
        verify_pack(tmp_path / "no-pack.zip")
    (tmp_path / "junk.zip").write_bytes(b"junk")
    with pytest.raises(InputFormatError, match="not a ZIP file") as info:
        verify_pack(tmp_path / "junk.zip")
    assert isinstance(info.value, ValueError) and isinstance(info.value, PackError)
    assert not (tmp_path / "packs").exists()
