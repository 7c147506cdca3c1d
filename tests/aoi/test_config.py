"""AOIConfig: defaults, validation, conventions, package paths."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from aoi import CONVENTIONS, AOIConfig, resolve_path
from aoi.config import convention_named


def test_defaults() -> None:
    config = AOIConfig(path=Path("x.gpkg"))
    assert config.buffer_m == 5000
    assert config.convention == "auto"
    assert config.kind_map == {}
    assert config.layer is None and config.where is None


def test_unknown_key_is_named() -> None:
    with pytest.raises(pydantic.ValidationError, match="buffer_km"):
        AOIConfig.model_validate({"path": "x.gpkg", "buffer_km": 5})


def test_negative_buffer_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="greater than or equal to 0"):
        AOIConfig(path=Path("x.gpkg"), buffer_m=-1)


def test_kind_and_kind_field_exclusive() -> None:
    with pytest.raises(pydantic.ValidationError, match="set only one of them"):
        AOIConfig(path=Path("x.gpkg"), kind="protected_area", kind_field="DESIG_ENG")


def test_unknown_convention_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="'auto', 'wdpa', 'amw'"):
        AOIConfig.model_validate({"path": "x.gpkg", "convention": "iucn"})


def test_blank_field_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="must not be blank"):
        AOIConfig(path=Path("x.gpkg"), id_field=" ")


def test_conventions_cover_the_named_sources() -> None:
    names = {c.name for c in CONVENTIONS}
    assert names == {"wdpa", "amw", "raisg", "funai"}
    wdpa = convention_named("wdpa")
    assert wdpa is not None and (wdpa.id_field, wdpa.name_field) == ("WDPAID", "NAME")
    assert wdpa.kind == "protected_area"
    funai = convention_named("funai")
    assert funai is not None and (funai.id_field, funai.name_field) == ("terrai_cod", "terrai_nom")
    assert funai.kind == "indigenous_land"
    assert convention_named("custom") is None
    with pytest.raises(ValueError, match="unknown AOI convention 'iucn'"):
        convention_named("iucn")


def test_package_path_resolves_to_the_bundled_file() -> None:
    config = AOIConfig(path=Path("package:aoi/data/munduruku.geojson"))
    path = config.resolved_path()
    assert path.is_file() and path.name == "munduruku.geojson"
    assert resolve_path("some/file.gpkg") == Path("some/file.gpkg")


def test_package_path_errors_name_the_path() -> None:
    with pytest.raises(ValueError, match="no installed package 'nosuchpkg'"):
        resolve_path("package:nosuchpkg/x.geojson")
    with pytest.raises(ValueError, match="expected 'package:<package>/<file inside it>'"):
        resolve_path("package:aoi")
