"""Augmentations (torchvision transforms v2): geometry on image and mask together, radiometric
jitter on the image only. They act on reflectance, before normalisation."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

if TYPE_CHECKING:
    from training.config import AugmentConfig

log = logging.getLogger(__name__)


class RandomRot90(v2.Transform):
    """Rotate image and mask together by a random multiple of 90 degrees."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"k": int(torch.randint(0, 4, (1,)).item())}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = torch.rot90(inpt, params["k"], dims=(-2, -1))
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


class RadiometricJitter(v2.Transform):
    """Per-band gain and offset, a global gain, and pixel noise on the image; masks unchanged.

    Args:
        gain_sigma: std of a gain shared by all bands (illumination).
        band_gain_sigma: std of a gain per band (calibration, atmosphere).
        offset_sigma: std of a reflectance offset per band (haze).
        noise_sigma: std of per-pixel Gaussian noise.
    """

    def __init__(
        self, gain_sigma: float, band_gain_sigma: float, offset_sigma: float, noise_sigma: float
    ) -> None:
        super().__init__()
        self.gain_sigma = gain_sigma
        self.band_gain_sigma = band_gain_sigma
        self.offset_sigma = offset_sigma
        self.noise_sigma = noise_sigma

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        image = next(i for i in flat_inputs if isinstance(i, tv_tensors.Image))
        c = image.shape[-3]
        gain = 1.0 + self.gain_sigma * torch.randn(1) + self.band_gain_sigma * torch.randn(c)
        return {"gain": gain.clamp(0.5, 1.5), "offset": self.offset_sigma * torch.randn(c)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        x = inpt.as_subclass(torch.Tensor)
        x = x * params["gain"].view(-1, 1, 1) + params["offset"].view(-1, 1, 1)
        if self.noise_sigma > 0:
            x = x + self.noise_sigma * torch.randn_like(x)
        return tv_tensors.wrap(x, like=inpt)


def make_augment(config: AugmentConfig) -> Any:
    """``augment(image (C,H,W), mask (H,W)) -> (image, mask)``, or None when all is off."""
    steps: list[v2.Transform] = []
    if config.flips:
        steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    if config.rot90:
        steps.append(RandomRot90())
    if any((config.gain_sigma, config.band_gain_sigma, config.offset_sigma, config.noise_sigma)):
        steps.append(
            RadiometricJitter(
                config.gain_sigma, config.band_gain_sigma, config.offset_sigma, config.noise_sigma
            )
        )
    if not steps:
        return None
    pipeline = v2.Compose(steps)

    def augment(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img, msk = pipeline(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return img.as_subclass(torch.Tensor), msk.as_subclass(torch.Tensor)

    return augment
