"""The scan configuration (a YAML file in ``configs/``), validated with ``extra="forbid"``.

Relative input paths in a config file are resolved against the file's folder; ``package:NAME/PATH``
names a file shipped inside an installed package (``package:aoi/data/munduruku.geojson``). The
output folder is relative to the working directory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from aoi.admin import AdminConfig
from aoi.config import AOIConfig
from aoi.configfile import StrictConfig, load_config_file
from detection.alerts import CONFIDENCE_LEVELS, LEGACY_CONFIDENCE_LEVELS
from detection.errors import ConfigError
from detection.sites import LegalConfig, MaskOptions
from models.detector import ALERT_CLASSES
from models.indices import IndexThresholds
from models.site_rule import SiteRule
from tiles.config import CompositeConfig, PeriodsConfig, SourceConfig

log = logging.getLogger(__name__)



class GridConfig(StrictConfig):
    """The processing grid: UTM chips aligned to the MGRS 100 km squares.

    ``halo_px``: imagery read and predicted around each chip and then cropped away, so the
    network sees the context of pixels near a chip's edge (no seams between chips). Part of a
    unit's key, not of the scan's identity: changing it recomputes the units in the same folder.
    """

    chip_size_px: int = Field(default=512, ge=64, le=10980)
    resolution_m: float = Field(default=10.0, gt=0)
    halo_px: int = Field(default=32, ge=0)

    @model_validator(mode="after")
    def _check_halo(self) -> GridConfig:
        if self.halo_px > self.chip_size_px:
            raise ValueError(
                f"halo_px {self.halo_px} is larger than chip_size_px {self.chip_size_px}; "
                f"expected 0..{self.chip_size_px} (32 or 64 is plenty)"
            )
        return self


class SecondOpinionConfig(StrictConfig):
    """An Amazon Mining Watch classifier that must agree with the network (``models.amw``)."""

    #: an AMW checkpoint (default: the shipped 12-band ensemble)
    checkpoint: Path | None = None
    stride_px: int | None = Field(default=None, ge=1, le=48)
    #: the AMW patch score needed (default: its checkpoint's, 0.5)
    threshold: float | None = Field(default=None, gt=0, lt=1)


class DetectorConfig(StrictConfig):
    """Which detector turns composites into class probabilities: the segmentation ``network``
    (a checkpoint; default the shipped one), the spectral ``indices`` baseline, or ``amw``,
    Amazon Mining Watch's 48 px patch classifier slid over a 13-band (or 12-band) L1C composite
    (``models.amw``; default checkpoint the shipped 12-band ensemble: no source reads B10 yet)."""

    kind: Literal["indices", "network", "amw"] = "indices"
    checkpoint: Path | None = None
    #: ``amw`` only: the window step in pixels, 1..48 (default: the checkpoint's, 24).
    stride_px: int | None = Field(default=None, ge=1, le=48)
    #: ``network`` only: an AMW classifier must agree (a mining pixel is kept only where its
    #: patch score reaches its threshold; the network outlines what the AMW score finds).
    second_opinion: SecondOpinionConfig | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: CPU engine of the network: ``auto`` (ONNX Runtime when installed, else PyTorch),
    #: ``torch`` or ``onnxruntime`` (models.runtime). Not part of the scan's identity.
    backend: Literal["auto", "torch", "onnxruntime"] = "auto"
    thresholds: IndexThresholds = Field(default_factory=IndexThresholds)

    @model_validator(mode="after")
    def _check_stride(self) -> DetectorConfig:
        if self.stride_px is not None and self.kind != "amw":
            raise ValueError(
                f"stride_px {self.stride_px} applies to kind 'amw' only (this detector is "
                f"{self.kind!r}); remove it or set kind: amw"
            )
        if self.second_opinion is not None and self.kind != "network":
            raise ValueError(
                f"second_opinion applies to kind 'network' only (this detector is "
                f"{self.kind!r}); remove it or set kind: network"
            )
        return self


class ConfidenceLevels(StrictConfig):
    """Mean-probability thresholds of the ``confidence_level`` property, one per word of
    :data:`detection.alerts.CONFIDENCE_LEVELS`. The keys of alert format 1.x (``low``, ``high``,
    ``highest``) are read as ``probable``, ``likely``, ``very_likely``."""

    probable: float = Field(default=0.5, ge=0, le=1)
    likely: float = Field(default=0.7, ge=0, le=1)
    very_likely: float = Field(default=0.9, ge=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _legacy_words(cls, data: Any) -> Any:
        if isinstance(data, dict) and set(data) & set(LEGACY_CONFIDENCE_LEVELS):
            return {LEGACY_CONFIDENCE_LEVELS.get(k, k): v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> ConfidenceLevels:
        values = [getattr(self, k) for k in CONFIDENCE_LEVELS]
        if values != sorted(values):
            raise ValueError(
                f"thresholds {dict(zip(CONFIDENCE_LEVELS, values, strict=True))}: expected "
                f"{' <= '.join(CONFIDENCE_LEVELS)}"
            )
        return self


class AlertsConfig(StrictConfig):
    confidence_levels: ConfidenceLevels = Field(default_factory=ConfidenceLevels)


class SitesConfig(SiteRule):
    """The one rule from probabilities to sites (:mod:`detection.sites`), for a scan's chips and
    ``minewatch predict``'s scenes alike; each key is also a flag of ``minewatch predict``.
    The keys and their meaning: :class:`models.site_rule.SiteRule`. The mask is polygonised
    and merged across chip and tile edges before the minimum mapping unit applies.
    """

    def mask_options(self, thresholds: dict[str, float] | None = None) -> MaskOptions:
        """The rule as :class:`detection.sites.MaskOptions` (``thresholds``: resolved ones
        replacing the configured)."""
        return MaskOptions(
            thresholds={str(k): v for k, v in self.thresholds.items()}
            if thresholds is None
            else thresholds,
            hysteresis_low={str(k): v for k, v in self.hysteresis_low.items()},
            opening_px=self.opening_px,
            closing_px=self.closing_px,
            min_area_ha=self.min_area_ha,
            simplify_m=self.simplify_m,
            connectivity=self.connectivity,
        )

    def legacy_threshold(self) -> float | dict[str, float] | None:
        """The thresholds as the scan identity held them before this section (one value)."""
        values = set(self.thresholds.values())
        if not values:
            return None
        if len(values) == 1 and len(self.thresholds) == len(ALERT_CLASSES):
            return values.pop()
        return dict(sorted(self.thresholds.items()))


#: Keys that moved into ``sites``: ``(section, old key) -> new key``. Still read, with a warning.
DEPRECATED_KEYS: dict[tuple[str, str], str] = {
    ("detector", "probability_threshold"): "thresholds",
    ("alerts", "min_area_ha"): "min_area_ha",
    ("alerts", "simplify_m"): "simplify_m",
}


def _move_deprecated(raw: Any) -> Any:
    """A raw config with the keys of :data:`DEPRECATED_KEYS` moved into ``sites`` (warned)."""
    if not isinstance(raw, dict):
        return raw
    raw = dict(raw)
    sites = raw.get("sites")
    sites = dict(sites) if isinstance(sites, dict) else sites
    for (section, key), new in DEPRECATED_KEYS.items():
        part = raw.get(section)
        if not isinstance(part, dict) or key not in part:
            continue
        part = dict(part)
        value = part.pop(key)
        raw[section] = part
        if sites is None:
            sites = {}
        if not isinstance(sites, dict):
            break  # the validation names the bad section
        if new in sites:
            raise ValueError(
                f"{section}.{key} and sites.{new} are both set; {section}.{key} is deprecated: "
                f"keep sites.{new} only"
            )
        if new == "thresholds" and value is not None:
            value = dict.fromkeys(ALERT_CLASSES, value)
        if value is not None or new != "thresholds":
            sites[new] = value
        log.warning(
            "config: %s.%s is deprecated; it is read as sites.%s (docs/alerts.md, 'From "
            "probabilities to sites')",
            section,
            key,
            new,
        )
    if sites is not None:
        raw["sites"] = sites
    return raw


class OutputConfig(StrictConfig):
    folder: Path = Path("minewatch-output")
    #: free space (MB) the output's filesystem must keep: checked before the run and every 16
    #: units, so a scan stops cleanly (its finished units kept) before the disk is full
    min_free_mb: float = Field(default=200.0, ge=0)


class ScanConfig(StrictConfig):
    """Everything a scan needs: AOIs, imagery, periods, grid, detector, alerts, output."""

    name: str = "scan"
    aoi: AOIConfig
    source: SourceConfig
    periods: PeriodsConfig
    grid: GridConfig = Field(default_factory=GridConfig)
    composite: CompositeConfig = Field(default_factory=CompositeConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    #: How probabilities become sites (thresholds, morphology, minimum mapping unit).
    sites: SitesConfig = Field(default_factory=SitesConfig)
    #: Legal status of each site: closed AOI kinds, the mining-title layer, extraction phases.
    legal: LegalConfig = Field(default_factory=LegalConfig)
    #: Municipal boundaries (e.g. IBGE's mesh): each alert's municipality and state. None: none.
    admin: AdminConfig | None = None
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="before")
    @classmethod
    def _deprecated_keys(cls, raw: Any) -> Any:
        return _move_deprecated(raw)

    def digest(self) -> str:
        """sha256 of the canonical JSON of the config (recorded in the run metadata)."""
        import hashlib

        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def identity(self) -> str:
        """sha256 of what makes this the same scan: the config without ``periods``,
        ``output``, ``grid.halo_px``, ``detector.backend``, ``legal``, ``admin`` and the ``sites``
        keys but its thresholds, minimum mapping unit and a simplification set. A scheduled scan
        moves its periods forward and stays the same scan; the halo only changes how units are
        computed (it is in their key), the backend how fast; the legal and admin sections only
        label the alerts (a newer layer relabels them on the next run). The confidence
        thresholds enter under the keys of format 1.x, so folders made before keep their
        identity."""
        import hashlib

        exclude: dict[str, Any] = {
            "periods": True,
            "output": True,
            "grid": {"halo_px"},
            "detector": {"backend"},
            "legal": True,
            "admin": True,
        }
        data = self.model_dump(mode="json", exclude=exclude)
        # The keys that moved into `sites`, where and as they were: output folders of scans
        # made before keep their identity (their units are recomputed: the rule is in their
        # key). The morphology, the hysteresis and a simplification not asked for only refine
        # outlines, as the halo does.
        sites = data.pop("sites")
        data["detector"]["probability_threshold"] = self.sites.legacy_threshold()
        data["alerts"]["min_area_ha"] = sites["min_area_ha"]
        asked = "simplify_m" in self.sites.model_fields_set
        data["alerts"]["simplify_m"] = sites["simplify_m"] if asked else None
        legacy = {v: k for k, v in LEGACY_CONFIDENCE_LEVELS.items()}
        levels = data["alerts"]["confidence_levels"]
        data["alerts"]["confidence_levels"] = {legacy[k]: v for k, v in levels.items()}
        if data["composite"].get("cloud_mask") == "auto":
            # The default since cloud_mask exists: output folders of scans made before keep
            # their identity (their units are recomputed, since the mask is in the unit key).
            del data["composite"]["cloud_mask"]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


#: Config keys that hold input paths (resolved against the config file's folder).
INPUT_KEYS = (
    ("aoi", "path"),
    ("detector", "checkpoint"),
    ("detector", "second_opinion", "checkpoint"),
    ("source", "path"),
    ("source", "cache_dir"),
    ("legal", "titles", "path"),
    ("admin", "layer"),
)


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> ScanConfig:
    """Read and validate a scan config; resolve its input paths.

    Args:
        path: the YAML file.
        overrides: nested values that replace the file's (flags beat the file).

    Raises:
        ConfigError: the file is missing, is not YAML, or does not validate; the message names the
            file and the key.
    """
    return load_config_file(
        path,
        ScanConfig,
        error=ConfigError,
        input_keys=INPUT_KEYS,
        overrides=overrides,
        sections_hint="sections (aoi, source, periods, ...)",
    )


def default_config_dir() -> Path:
    """The shipped configs: ``minewatch/configs`` in a wheel, ``configs/`` in a checkout."""
    root = Path(__file__).resolve().parents[2]
    for candidate in (root / "minewatch" / "configs", root / "configs"):
        if (candidate / "demo.yaml").is_file():
            return candidate
    raise ConfigError("the shipped configs folder (configs/demo.yaml) was not found; reinstall")
