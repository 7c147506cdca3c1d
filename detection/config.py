"""The scan configuration (a YAML file in ``configs/``), validated with ``extra="forbid"``.

Relative input paths in a config file are resolved against the file's folder; ``package:NAME/PATH``
names a file shipped inside an installed package (``package:aoi/data/munduruku.geojson``). The
output folder is relative to the working directory.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aoi.config import AOIConfig
from detection.errors import ConfigError
from models.indices import IndexThresholds
from tiles.config import CompositeConfig, PeriodsConfig, SourceConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GridConfig(_Strict):
    """The processing grid: UTM chips aligned to the MGRS 100 km squares."""

    chip_size_px: int = Field(default=512, ge=64, le=10980)
    resolution_m: float = Field(default=10.0, gt=0)


class DetectorConfig(_Strict):
    """Which detector turns composites into class probabilities: the segmentation ``network``
    (a checkpoint; default the shipped one) or the spectral ``indices`` baseline."""

    kind: Literal["indices", "network"] = "indices"
    checkpoint: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    thresholds: IndexThresholds = Field(default_factory=IndexThresholds)
    probability_threshold: float = Field(default=0.5, gt=0, lt=1)


class ConfidenceLevels(_Strict):
    """Mean-probability thresholds of the ``confidence_level`` property."""

    low: float = Field(default=0.5, ge=0, le=1)
    high: float = Field(default=0.7, ge=0, le=1)
    highest: float = Field(default=0.9, ge=0, le=1)


class AlertsConfig(_Strict):
    min_area_ha: float = Field(default=0.5, ge=0)
    simplify_m: float | None = Field(default=None, ge=0)
    confidence_levels: ConfidenceLevels = Field(default_factory=ConfidenceLevels)


class OutputConfig(_Strict):
    folder: Path = Path("minewatch-output")


class ScanConfig(_Strict):
    """Everything a scan needs: AOIs, imagery, periods, grid, detector, alerts, output."""

    name: str = "scan"
    aoi: AOIConfig
    source: SourceConfig
    periods: PeriodsConfig
    grid: GridConfig = Field(default_factory=GridConfig)
    composite: CompositeConfig = Field(default_factory=CompositeConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    def digest(self) -> str:
        """sha256 of the canonical JSON of the config (recorded in the run metadata)."""
        import hashlib

        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def resolve_path(value: str | Path, *, base: Path) -> Path:
    """Resolve a config path: ``package:NAME/REL`` inside an installed package, else relative to
    ``base``.

    Raises:
        ConfigError: the package does not exist.
    """
    text = str(value)
    if text.startswith("package:"):
        package, _, rel = text[len("package:") :].partition("/")
        try:
            root = importlib.resources.files(package)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"path {text!r}: no installed package {package!r}; "
                "expected 'package:NAME/PATH' with NAME one of aoi, tiles, models"
            ) from exc
        return Path(str(root.joinpath(rel)))
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path)


def _format_validation_error(exc: ValidationError, source: Path) -> str:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key {key!r}; remove it or check its spelling"
    if kind == "missing":
        return f"{source}: missing key {key!r}"
    got = first.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{source}: key {key!r}: {first['msg']}{got_text}"


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> ScanConfig:
    """Read and validate a scan config; resolve its input paths.

    Args:
        path: the YAML file.
        overrides: nested values that replace the file's (flags beat the file).

    Raises:
        ConfigError: the file is missing, is not YAML, or does not validate; the message names the
            file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file {str(path)!r} does not exist; pass a YAML file (see configs/)"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (aoi, source, periods, ...)")
    for key, value in (overrides or {}).items():
        _set_nested(raw, key, value)
    base = path.resolve().parent
    _resolve_inputs(raw, base)
    try:
        return ScanConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, path)) from exc


def _set_nested(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _resolve_inputs(raw: dict[str, Any], base: Path) -> None:
    aoi = raw.get("aoi")
    if isinstance(aoi, dict) and isinstance(aoi.get("path"), str):
        aoi["path"] = str(resolve_path(aoi["path"], base=base))
    detector = raw.get("detector")
    if isinstance(detector, dict) and isinstance(detector.get("checkpoint"), str):
        detector["checkpoint"] = str(resolve_path(detector["checkpoint"], base=base))
    source = raw.get("source")
    if isinstance(source, dict):
        for key in ("path", "cache_dir"):
            if isinstance(source.get(key), str):
                source[key] = str(resolve_path(source[key], base=base))


def default_config_dir() -> Path:
    """The shipped configs: ``minewatch/configs`` in a wheel, ``configs/`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "minewatch" / "configs", here.parent / "configs"):
        if (candidate / "demo.yaml").is_file():
            return candidate
    raise ConfigError("the shipped configs folder (configs/demo.yaml) was not found; reinstall")
