"""U-Net segmentation networks with ResNet encoders, for any number of input bands.

Two encoders share one decoder:

- :class:`SlimResNetEncoder`: a compact ResNet (basic residual blocks, widths chosen freely) that
  trains on a CPU in minutes; its first stage keeps full resolution, so 10 m details (ponds a few
  pixels wide, roads) survive.
- :class:`TorchvisionResNetEncoder`: torchvision's ResNet-18/34/50 built with ``weights=None``
  (nothing downloads); the first convolution takes any number of bands. For GPUs.

All networks map ``(N, C, H, W)`` to logits ``(N, classes, H, W)``; ``H`` and ``W`` must be
multiples of :attr:`UNet.stride` (the detector and the training loop pad to it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from models.errors import ModelError

log = logging.getLogger(__name__)


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3x3 convolutions and a shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SlimResNetEncoder(nn.Module):
    """A compact ResNet encoder.

    Stage 0 is a 3x3 stem plus ``blocks[0]`` blocks at full resolution; each later stage halves
    the resolution with a strided basic block.

    Args:
        in_channels: input bands.
        widths: channels per stage (stage 0 at full resolution).
        blocks: basic blocks per stage (same length as ``widths``).

    Raises:
        ModelError: ``widths``/``blocks`` are empty, of different lengths, or not positive.
    """

    def __init__(self, in_channels: int, widths: Sequence[int], blocks: Sequence[int]) -> None:
        super().__init__()
        if not widths or len(widths) != len(blocks) or min(widths) < 1 or min(blocks) < 1:
            raise ModelError(
                f"slim encoder: widths {list(widths)} and blocks {list(blocks)} must be non-empty "
                "lists of positive integers of the same length"
            )
        self.stem = _conv_bn_relu(in_channels, widths[0])
        stages: list[nn.Module] = []
        c_prev = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            layers = [BasicBlock(c_prev, w, stride=1 if i == 0 else 2)]
            layers += [BasicBlock(w, w) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            c_prev = w
        self.stages = nn.ModuleList(stages)
        self.channels: tuple[int, ...] = tuple(widths)
        self.reductions: tuple[int, ...] = tuple(2**i for i in range(len(widths)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class TorchvisionResNetEncoder(nn.Module):
    """torchvision's ResNet (``weights=None``) as a U-Net encoder with ``in_channels`` bands.

    Features at 1/2 (after the stem convolution), 1/4, 1/8, 1/16 and 1/32 resolution.

    Args:
        depth: 18, 34 or 50.
        in_channels: input bands.

    Raises:
        ModelError: unknown depth.
    """

    def __init__(self, depth: int, in_channels: int) -> None:
        super().__init__()
        from torchvision.models import resnet18, resnet34, resnet50

        makers = {18: resnet18, 34: resnet34, 50: resnet50}
        if depth not in makers:
            raise ModelError(f"resnet depth {depth}: expected one of {sorted(makers)}")
        net = makers[depth](weights=None)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        expansion = 4 if depth == 50 else 1
        self.channels = (64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)
        self.reductions = (2, 4, 8, 16, 32)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x0 = self.relu(self.bn1(self.conv1(x)))
        x1 = self.layer1(self.maxpool(x0))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return [x0, x1, x2, x3, x4]


class _DecoderBlock(nn.Module):
    def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv_bn_relu(c_in + c_skip, c_out), _conv_bn_relu(c_out, c_out))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) over an encoder giving features at growing reductions.

    The decoder upsamples the deepest feature map step by step, concatenating each shallower
    encoder feature; where the shallowest encoder feature is below full resolution, further
    decoder blocks without skips bring it back to full resolution.

    Args:
        encoder: a module returning a list of feature maps, with ``channels`` and
            ``reductions`` attributes (shallowest first).
        num_classes: output channels (logits).
        decoder_channels: channels of the decoder blocks, deepest first; one per upsampling step.

    Raises:
        ModelError: ``decoder_channels`` has the wrong length.
    """

    def __init__(
        self, encoder: nn.Module, num_classes: int, decoder_channels: Sequence[int]
    ) -> None:
        super().__init__()
        self.encoder = encoder
        channels: tuple[int, ...] = encoder.channels  # type: ignore[assignment]
        reductions: tuple[int, ...] = encoder.reductions  # type: ignore[assignment]
        steps = len(channels) - 1 + (reductions[0].bit_length() - 1)
        if len(decoder_channels) != steps:
            raise ModelError(
                f"decoder_channels {list(decoder_channels)}: this encoder needs {steps} "
                f"upsampling steps (feature reductions {list(reductions)}), one width each"
            )
        blocks = []
        c_prev = channels[-1]
        skips = list(channels[:-1])[::-1] + [0] * (steps - (len(channels) - 1))
        for c_skip, c_out in zip(skips, decoder_channels, strict=True):
            blocks.append(_DecoderBlock(c_prev, c_skip, c_out))
            c_prev = c_out
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(c_prev, num_classes, kernel_size=1)
        self.stride = reductions[-1]
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.stride or x.shape[-2] % self.stride:
            raise ModelError(
                f"input of {x.shape[-2]}x{x.shape[-1]} px: height and width must be multiples "
                f"of {self.stride}; pad to {-(-x.shape[-2] // self.stride) * self.stride}x"
                f"{-(-x.shape[-1] // self.stride) * self.stride}"
            )
        feats = self.encoder(x)
        y = feats[-1]
        skips: list[torch.Tensor | None] = list(feats[:-1])[::-1]
        skips += [None] * (len(self.decoder) - len(skips))
        for block, skip in zip(self.decoder, skips, strict=True):
            y = block(y, skip)
        return self.head(y)
