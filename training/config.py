"""Training and evaluation configs (``minewatch train`` / ``evaluate`` YAML), validated.

Input paths (chip folders, scenes, labels, checkpoints, encoder weights) are relative to the
config file; output paths (``output.folder``, ``data.workdir``) are relative to the working
directory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from aoi.configfile import StrictConfig, load_config_file
from models.detector import ALERT_CLASSES
from models.registry import DEFAULT_BANDS
from models.site_rule import SiteRule
from tiles.bands import DEFAULT_MASKED_SCL, check_band_names
from tiles.synthetic import WorldSpec
from training.errors import TrainConfigError

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "val", "test")
TrainingClass = Literal["background", "mining", "deforestation", "ignore"]


def _default_class_map() -> dict[str, TrainingClass]:
    return {"mining": "mining", "deforestation": "deforestation", "background": "background"}


def _test_split() -> list[Split]:
    return ["test"]


class ModelConfig(StrictConfig):
    """Which network to train."""

    name: str = "minewatch-unet"
    version: str = "0.1.0"
    architecture: str = "unet-slim"
    options: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the architecture's default options (see ``models.registry``)."""
    encoder_weights: Path | None = None
    """A local state dict to initialise the encoder (e.g. SSL4EO-S12 ResNet weights)."""
    encoder_bands: list[str] | None = None
    """Bands of the encoder weights' first convolution, to pick channels by name."""
    init_from: Path | None = None
    """A checkpoint of the same architecture to start from (fine-tuning); availability
    channels it lacks start at zero weight."""


class CompositeOptions(StrictConfig):
    """How scenes become period composites (as a scan does it)."""

    method: Literal["median", "best"] = "median"
    masked_scl: list[int] = Field(default_factory=lambda: list(DEFAULT_MASKED_SCL))
    dilation_px: int = Field(default=1, ge=0)


class RegionSplit(StrictConfig):
    """Which regions go to validation and test: explicit names, or shares of the regions."""

    val: list[str] | float = 0.15
    test: list[str] | float = 0.15
    seed: int = 0


class SyntheticRegion(StrictConfig):
    """One synthetic world: a region of its own."""

    name: str | None = None
    """Region name (default ``seed-<seed>``)."""
    split: Split = "train"
    world: WorldSpec

    @property
    def region(self) -> str:
        return self.name or f"seed-{self.world.seed}"


class SyntheticData(StrictConfig):
    """Labelled data form (c): synthetic worlds, generated on first use into ``workdir``."""

    kind: Literal["synthetic"]
    workdir: Path = Path("minewatch-worlds")
    regions: list[SyntheticRegion]


class ChipsData(StrictConfig):
    """Labelled data form (a): a chip folder of image + mask GeoTIFF pairs (``chips.csv``)."""

    kind: Literal["chips"]
    folder: Path


class ScenesData(StrictConfig):
    """Labelled data form (b): scenes of a local folder plus label polygons."""

    kind: Literal["scenes"]
    scenes: Path
    """A folder of scenes in the ``local`` source format."""
    labels: Path
    """GeoJSON / GeoPackage of label polygons."""
    class_field: str = "class"
    class_map: dict[str, TrainingClass] = Field(default_factory=_default_class_map)
    """Values of ``class_field`` -> training class; other values are ``background``."""
    region_field: str | None = None
    """Field naming each polygon's region (default: one region per label file)."""
    period_start: str
    period_end: str
    """The period the labels describe (ISO dates); its scenes are composited."""
    margin_m: float = Field(default=1000.0, ge=0)
    """Imagery around each region's labels."""
    split: RegionSplit = Field(default_factory=RegionSplit)


DataConfig = Annotated[ChipsData | ScenesData | SyntheticData, Field(discriminator="kind")]


class PatchSplit(StrictConfig):
    """Splits of patch-labelled chips: whole sets or whole regions, never single chips
    (neighbouring chips leak). Named sets/regions, or shares of them drawn with ``seed``."""

    by: Literal["set", "region"] = "region"
    val: list[str] | float = 0.15
    test: list[str] | float = 0.15
    seed: int = 0


class GalleryData(StrictConfig):
    """Patch-labelled form (d): a folder of chip mosaics (Amazon Mining Watch's galleries;
    :func:`training.patches.read_gallery`)."""

    kind: Literal["gallery"]
    folder: Path
    include_unused: bool = False
    """Also read ``unused_in_final_model_training/``."""
    exclude: list[str] = Field(default_factory=list)
    """Sets left out."""
    chip_px: dict[str, int] = Field(default_factory=dict)
    """File-name pattern -> chip side (default 48; 32 for the GeoCompass negatives)."""
    regions: dict[str, str] = Field(default_factory=dict)
    """Set-name pattern (regular expression) -> region; other sets are their own region."""
    split: PatchSplit | None = None
    """None: every chip (evaluation); training needs one."""


class ChipCsvData(StrictConfig):
    """Patch-labelled form (e): chip files (PNG/GeoTIFF) listed in ``labels.csv``
    (:func:`training.patches.read_chip_csv`)."""

    kind: Literal["chip_csv"]
    folder: Path
    bands: list[str] | None = None
    """Band names of the files' channels (default: GeoTIFF descriptions; RGB = B04 B03 B02)."""
    scale: float | None = Field(default=None, gt=0)
    """Reflectance per stored value (default by type)."""
    radiometry: Literal["toa", "boa"] = "boa"
    regions: dict[str, str] = Field(default_factory=dict)
    split: PatchSplit | None = None


PatchData = Annotated[GalleryData | ChipCsvData, Field(discriminator="kind")]


class PatchTraining(StrictConfig):
    """Patch-labelled real chips in training: a multiple-instance loss beside the pixel loss."""

    data: PatchData
    weight: float = Field(default=1.0, ge=0)
    """Weight of the multiple-instance loss against the pixel loss."""
    pixel_weight: float = Field(default=0.5, ge=0)
    """Weight of the 'no pixel of a negative chip is mining' term."""
    pool_k: int = Field(default=16, ge=1)
    """Pixels pooled into a chip's score (the mean of its k most probable mining pixels)."""
    chip_batch_size: int = Field(default=64, ge=2)
    min_specificity: float = Field(default=0.97, gt=0, lt=1)
    """The stored threshold is the most sensitive one reaching this on the validation chips."""
    toa_offset_sigma: float = Field(default=0.012, ge=0)
    """Spread of the top-of-atmosphere -> surface offsets in augmentation (reflectance)."""


class SamplingConfig(StrictConfig):
    patch_size_px: int = Field(default=128, ge=16)
    patches_per_epoch: int = Field(default=1024, ge=1)
    positive_share: float = Field(default=0.5, ge=0, le=1)
    """Share of random patches centred on a mining or deforestation pixel."""
    edge_share: float = Field(default=0.1, ge=0, le=1)
    """Share of patches allowed to hang over an image edge (NaN there, as at AOI edges)."""
    val_stride_px: int | None = None
    """Stride of the grid windows of validation (default: the patch size)."""


class AugmentConfig(StrictConfig):
    flips: bool = True
    rot90: bool = True
    gain_sigma: float = Field(default=0.06, ge=0)
    """Std of a random gain shared by all bands (illumination)."""
    band_gain_sigma: float = Field(default=0.03, ge=0)
    """Std of a random gain per band (calibration, atmosphere)."""
    offset_sigma: float = Field(default=0.005, ge=0)
    """Std of a random reflectance offset per band (haze)."""
    noise_sigma: float = Field(default=0.003, ge=0)
    """Std of per-pixel Gaussian noise (reflectance)."""
    contrast_sigma: float = Field(default=0.0, ge=0)
    """Std of the log of a random contrast around each real chip's band means."""


class OptimConfig(StrictConfig):
    epochs: int = Field(default=20, ge=1)
    steps_per_epoch: int | None = Field(default=None, ge=1)
    """Optimiser steps per epoch (default: one pass over the pixel patches, else the chips)."""
    batch_size: int = Field(default=16, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    max_steps: int | None = Field(default=None, ge=1)
    """Stop after this many optimiser steps (for smoke tests)."""
    ema_decay: float = Field(default=0.0, ge=0, lt=1)
    """Keep (and validate) an exponential moving average of the weights; 0 = off."""


class LossConfig(StrictConfig):
    kind: Literal["dice_ce", "dice_focal"] = "dice_ce"
    class_weights: list[float] = Field(default_factory=lambda: [1.0, 2.0, 2.0])
    dice_weight: float = Field(default=1.0, ge=0)
    focal_gamma: float = Field(default=2.0, ge=0)


class OutputConfig(StrictConfig):
    folder: Path = Path("minewatch-train")


class TrainConfig(StrictConfig):
    """Everything ``minewatch train`` needs."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    bands: list[str] = Field(default_factory=lambda: list(DEFAULT_BANDS))
    optional_bands: list[str] = Field(default_factory=list)
    """Bands the network can do without (an availability channel each); real RGB chips need
    the others optional."""
    band_dropout: float = Field(default=0.5, ge=0, le=1)
    """Probability of hiding a pixel patch's optional bands (with optional_bands)."""
    data: DataConfig | None = None
    """Pixel-labelled data (synthetic worlds, chip folders, scenes + polygons)."""
    patches: PatchTraining | None = None
    """Patch-labelled real chips (gallery or labels.csv)."""
    composite: CompositeOptions = Field(default_factory=CompositeOptions)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    """Mixed precision on CUDA (bf16 autocast); ignored on CPU."""
    threads: int | None = Field(default=None, ge=1)
    """CPU threads (default: torch's choice)."""
    half_checkpoint: bool = False
    """Store the final weights as float16 (halves the file)."""
    resume: Path | None = None
    """Continue from this ``last.pt`` (its optimiser state, epoch and seed)."""
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("bands")
    @classmethod
    def _check_bands(cls, value: list[str]) -> list[str]:
        check_band_names(value)
        if len(set(value)) != len(value):
            raise ValueError(f"bands {value}: a band is listed twice")
        return value

    @model_validator(mode="after")
    def _check_data(self) -> TrainConfig:
        if self.data is None and self.patches is None:
            raise ValueError("give data (pixel labels), patches (chip labels), or both")
        stray = [b for b in self.optional_bands if b not in self.bands]
        if stray:
            raise ValueError(f"optional_bands {stray} are not in bands {self.bands}")
        if self.patches is not None and self.patches.data.split is None:
            raise ValueError(
                "patches.data.split is missing: training needs validation chips; give "
                "split: {by: region, val: [...], test: [...]}"
            )
        return self


class EvaluateConfig(StrictConfig):
    """Everything ``minewatch evaluate`` needs."""

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, raw: Any) -> Any:
        """``probability_threshold`` and ``min_site_area_ha`` (before the ``sites`` rule) are
        read as ``sites.thresholds`` (every class) and ``sites.min_area_ha``, with a warning."""
        if not isinstance(raw, dict):
            return raw
        moved = {k: raw[k] for k in ("probability_threshold", "min_site_area_ha") if k in raw}
        if not moved:
            return raw
        raw = {k: v for k, v in raw.items() if k not in moved}
        sites = dict(raw.get("sites") or {})
        for key, value in moved.items():
            new = "thresholds" if key == "probability_threshold" else "min_area_ha"
            if new in sites:
                raise ValueError(f"{key} and sites.{new} are both set; keep sites.{new} only")
            sites[new] = dict.fromkeys(ALERT_CLASSES, value) if new == "thresholds" else value
            log.warning("config: %s is deprecated; it is read as sites.%s", key, new)
        raw["sites"] = sites
        return raw

    checkpoint: Path | None = None
    """The checkpoint to evaluate (default: the shipped model)."""
    compare: Path | None = None
    """A second checkpoint scored on the same chips (patch-labelled data)."""
    data: Annotated[
        ChipsData | ScenesData | SyntheticData | GalleryData | ChipCsvData,
        Field(discriminator="kind"),
    ]
    splits: list[Split] = Field(default_factory=_test_split)
    composite: CompositeOptions = Field(default_factory=CompositeOptions)
    sites: SiteRule = Field(default_factory=SiteRule)
    """Pixel data: the rule from probabilities to sites a scan uses (its ``sites`` section:
    thresholds, else the checkpoint's; hysteresis, opening/closing, minimum mapping unit).
    Patch data uses each checkpoint's stored threshold."""
    baseline: bool = True
    """Also evaluate the spectral-index detector on the same data."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    n_examples: int = Field(default=4, ge=0)
    """Predictions drawn in ``predictions.png``."""
    output: OutputConfig = Field(
        default_factory=lambda: OutputConfig(folder=Path("minewatch-eval"))
    )


_INPUT_KEYS = {
    ("data", "folder"),
    ("data", "scenes"),
    ("data", "labels"),
    ("model", "encoder_weights"),
    ("model", "init_from"),
    ("patches", "data", "folder"),
    ("compare",),
    ("resume",),
    ("checkpoint",),
}


def load_train_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read and validate a training config.

    Args:
        path: the YAML file.
        overrides: dotted keys replacing the file's values (flags beat the file).

    Raises:
        TrainConfigError: the file is missing, not YAML, or does not validate (names the key).
    """
    return load_config_file(
        path,
        TrainConfig,
        error=TrainConfigError,
        input_keys=_INPUT_KEYS,
        overrides=overrides,
        sections_hint="sections (model, data, ...)",
    )


def load_evaluate_config(
    path: str | Path, *, overrides: dict[str, Any] | None = None
) -> EvaluateConfig:
    """Read and validate an evaluation config.

    Raises:
        TrainConfigError: the file is missing, not YAML, or does not validate (names the key).
    """
    return load_config_file(
        path,
        EvaluateConfig,
        error=TrainConfigError,
        input_keys=_INPUT_KEYS,
        overrides=overrides,
        sections_hint="sections (model, data, ...)",
    )
