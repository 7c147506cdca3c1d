"""The scan config: validation errors name the key and the file; paths resolve as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aoi.configfile import resolve_path
from detection.errors import ConfigError
from detection.runs import load_config


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "scan.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _minimal(aoi_path: str = "package:aoi/data/munduruku.geojson") -> dict:
    return {
        "aoi": {"path": aoi_path, "kind": "indigenous_land"},
        "source": {"kind": "local", "path": "scenes"},
        "periods": {"kind": "quarter", "start": "2024-04-01", "end": "2024-09-30"},
    }


def test_demo_config_validates(repo_root: Path) -> None:
    config = load_config(repo_root / "configs" / "demo.yaml")
    assert config.source.kind == "synthetic"
    assert [p.label for p in config.periods.resolve()] == ["2024Q2", "2024Q3"]
    assert config.aoi.path.is_file(), config.aoi.path
    assert config.aoi.buffer_m == 5000


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, _minimal()))
    assert config.source.path == tmp_path / "scenes"


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    data = _minimal()
    data["alerts"] = {"min_area_hectares": 1}
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError, match=r"scan\.yaml: unknown key 'alerts\.min_area_hectares'"):
        load_config(path)


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    data = _minimal()
    data["grid"] = {"chip_size_px": "big"}
    with pytest.raises(ConfigError, match=r"key 'grid\.chip_size_px'.*'big'"):
        load_config(_write(tmp_path, data))


def test_missing_section_is_named(tmp_path: Path) -> None:
    data = _minimal()
    del data["periods"]
    with pytest.raises(ConfigError, match=r"missing key 'periods'"):
        load_config(_write(tmp_path, data))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml' does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("aoi: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(path)


def test_custom_periods_need_two(tmp_path: Path) -> None:
    data = _minimal()
    data["periods"] = {"kind": "custom", "custom": [{"start": "2024-01-01", "end": "2024-02-01"}]}
    with pytest.raises(ConfigError, match="at least two entries"):
        load_config(_write(tmp_path, data))


def test_overrides_beat_the_file(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, _minimal()), overrides={"sites.min_area_ha": 2.5})
    assert config.sites.min_area_ha == 2.5


def test_deprecated_site_keys_are_read_into_sites_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The keys that moved into `sites` still work, say so, and keep the scan's identity."""
    old = _minimal() | {
        "detector": {"kind": "indices", "probability_threshold": 0.4},
        "alerts": {"min_area_ha": 2.0, "simplify_m": 10.0},
    }
    new = _minimal() | {
        "detector": {"kind": "indices"},
        "sites": {"thresholds": {"mining": 0.4, "deforestation": 0.4}, "min_area_ha": 2.0,
                  "simplify_m": 10.0},
    }  # fmt: skip
    with caplog.at_level("WARNING"):
        legacy = load_config(_write(tmp_path, old))
    for key, moved in (("detector.probability_threshold", "thresholds"),
                       ("alerts.min_area_ha", "min_area_ha"), ("alerts.simplify_m", "simplify_m")):
        assert f"{key} is deprecated; it is read as sites.{moved}" in caplog.text
    current = load_config(_write(tmp_path, new))
    assert legacy.sites == current.sites
    assert legacy.sites.mask_options().thresholds == {"mining": 0.4, "deforestation": 0.4}
    # A folder scanned with the old keys is the same scan with the new ones.
    assert legacy.identity() == current.identity()
    # Both at once is ambiguous: refused, naming both keys.
    both = old | {"sites": {"min_area_ha": 1.0}}
    with pytest.raises(ConfigError, match=r"alerts\.min_area_ha and sites\.min_area_ha are both"):
        load_config(_write(tmp_path, both))


@pytest.mark.parametrize(
    ("sites", "match"),
    [
        ({"thresholds": {"gold": 0.5}}, "sites.thresholds.gold"),
        ({"thresholds": {"mining": 1.5}}, "1.5"),
        ({"thresholds": {"mining": 0.4}, "hysteresis_low": {"mining": 0.6}},
         "hysteresis low 0.6 of mining is above its threshold 0.4"),
        ({"opening_px": -1}, "sites.opening_px"),
        ({"connectivity": 6}, "sites.connectivity"),
        ({"min_area": 1}, "sites.min_area"),
    ],
)
def test_sites_section_is_validated(tmp_path: Path, sites: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path, _minimal() | {"sites": sites}))


def test_package_path_unknown_package(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no installed package 'nosuchpkg'"):
        resolve_path("package:nosuchpkg/x.geojson", base=tmp_path)
    with pytest.raises(ConfigError, match="no installed package 'nosuchpkg'"):
        load_config(_write(tmp_path, _minimal("package:nosuchpkg/x.geojson")))


def test_digest_changes_with_content(tmp_path: Path) -> None:
    a = load_config(_write(tmp_path, _minimal()))
    b = load_config(_write(tmp_path, _minimal()), overrides={"sites.min_area_ha": 3})
    assert a.digest() != b.digest()
    assert a.digest() == load_config(_write(tmp_path, _minimal())).digest()


def test_source_cache_dir_resolves_against_the_config_folder(tmp_path: Path) -> None:
    data = _minimal()
    data["source"] = {"kind": "stac", "url": "http://127.0.0.1:1/v1", "cache_dir": "cache"}
    config = load_config(_write(tmp_path, data))
    assert config.source.cache_dir == tmp_path / "cache"


def test_shipped_reserve_configs_validate(repo_root: Path) -> None:
    for name in ("munduruku", "yanomami", "kayapo", "madre-de-dios"):
        config = load_config(repo_root / "configs" / f"{name}.yaml")
        assert config.source.kind == "stac", name
        assert config.aoi.path.is_file(), config.aoi.path


def test_confidence_words_of_format_1_still_read_and_keep_the_identity(tmp_path: Path) -> None:
    new = load_config(
        _write(tmp_path, _minimal() | {"alerts": {"confidence_levels": {"probable": 0.4}}})
    )
    old = load_config(
        _write(tmp_path, _minimal() | {"alerts": {"confidence_levels": {"low": 0.4}}})
    )
    assert new.alerts.confidence_levels.model_dump() == {
        "probable": 0.4,
        "likely": 0.7,
        "very_likely": 0.9,
    }
    assert old == new and old.identity() == new.identity()
    # An output folder of format 1.x hashed the thresholds under the old words.
    import hashlib
    import json

    data = new.model_dump(
        mode="json",
        exclude={
            "periods": True,
            "output": True,
            "grid": {"halo_px"},
            "detector": {"backend"},
            "legal": True,
            "admin": True,
        },
    )
    data["alerts"]["confidence_levels"] = {"low": 0.4, "high": 0.7, "highest": 0.9}
    del data["composite"]["cloud_mask"]
    # ... and had the `sites` keys where they were then (detector, alerts).
    sites = data.pop("sites")
    data["detector"]["probability_threshold"] = new.sites.legacy_threshold()
    data["alerts"]["min_area_ha"] = sites["min_area_ha"]
    data["alerts"]["simplify_m"] = None
    before = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    assert new.identity() == before
    with pytest.raises(ConfigError, match="expected probable <= likely <= very_likely"):
        load_config(
            _write(tmp_path, _minimal() | {"alerts": {"confidence_levels": {"likely": 0.3}}})
        )


def test_admin_layer_resolves_and_is_not_part_of_the_identity(tmp_path: Path) -> None:
    plain = load_config(_write(tmp_path, _minimal()))
    config = load_config(
        _write(tmp_path, _minimal() | {"admin": {"layer": "BR_Municipios_2022.shp"}})
    )
    assert config.admin is not None and config.admin.layer == tmp_path / "BR_Municipios_2022.shp"
    assert (config.admin.municipality_field, config.admin.state_field) == ("NM_MUN", "SIGLA_UF")
    assert config.identity() == plain.identity()
    with pytest.raises(ConfigError, match="admin"):
        load_config(_write(tmp_path, _minimal() | {"admin": {"path": "x.shp"}}))
