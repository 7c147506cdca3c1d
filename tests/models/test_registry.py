from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.errors import CheckpointError, ModelError
from models.registry import ARCHITECTURES, build_model, load_encoder_weights

SMALL = {
    "unet-slim": {"widths": [4, 8, 16], "blocks": [1, 1, 1]},
    "unet-resnet18": {"decoder_channels": [16, 8, 8, 4, 4]},
    "unet-resnet34": {"decoder_channels": [16, 8, 8, 4, 4]},
    "unet-resnet50": {"decoder_channels": [16, 8, 8, 4, 4]},
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("bands", [3, 10])
def test_every_architecture_takes_any_band_count(name: str, bands: int) -> None:
    model = build_model(name, in_channels=bands, options=SMALL[name]).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, bands, 64, 64))
    assert out.shape == (2, 3, 64, 64)


def test_default_slim_model_is_small() -> None:
    n = sum(p.numel() for p in build_model("unet-slim", in_channels=6).parameters())
    assert 300_000 < n < 3_000_000


def test_unknown_architecture_and_option_are_named() -> None:
    with pytest.raises(ModelError, match="unknown architecture 'unet-vit'"):
        build_model("unet-vit", in_channels=6)
    with pytest.raises(ModelError, match=r"unknown option\(s\) \['depth'\]"):
        build_model("unet-slim", in_channels=6, options={"depth": 3})
    with pytest.raises(ModelError, match="upsampling steps"):
        build_model("unet-resnet18", in_channels=6, options={"decoder_channels": [8, 8]})


def test_input_size_not_multiple_of_stride_says_what_to_pad() -> None:
    model = build_model("unet-slim", in_channels=3, options=SMALL["unet-slim"])
    with pytest.raises(ModelError, match="pad to 36x36"):
        model(torch.randn(1, 3, 33, 36))


def test_encoder_init_from_local_torchvision_file(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    source = resnet18(weights=None)
    state = {f"module.backbone.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "ssl4eo_resnet18.pth"
    torch.save({"state_dict": state}, path)
    model = build_model("unet-resnet18", in_channels=3, options=SMALL["unet-resnet18"])
    loaded = load_encoder_weights(model, path, bands=["B02", "B03", "B04"],
                                  file_bands=["B04", "B03", "B02"])
    assert "layer4.1.conv2.weight" in loaded and "conv1.weight" in loaded
    assert torch.equal(model.encoder.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert torch.equal(model.encoder.conv1.weight, source.conv1.weight.flip(1))
    four = build_model("unet-resnet18", in_channels=4, options=SMALL["unet-resnet18"])
    with pytest.raises(CheckpointError, match=r"need \['B08'\]"):
        load_encoder_weights(four, path, bands=["B02", "B03", "B04", "B08"],
                             file_bands=["B04", "B03", "B02"])
    loaded = load_encoder_weights(four, path)  # no band names: mean of the file's channels
    assert four.encoder.conv1.weight.shape[1] == 4 and "conv1.weight" in loaded


def test_encoder_init_picks_first_conv_channels_by_band(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    source = resnet18(weights=None)
    source.conv1 = torch.nn.Conv2d(4, 64, 7, 2, 3, bias=False)
    path = tmp_path / "enc.pth"
    torch.save(source.state_dict(), path)
    model = build_model("unet-resnet18", in_channels=2, options=SMALL["unet-resnet18"])
    load_encoder_weights(model, path, bands=["B08", "B02"], file_bands=["B02", "B03", "B04", "B08"])
    w = source.conv1.weight
    assert torch.equal(model.encoder.conv1.weight, w[:, [3, 0]])


def test_encoder_init_errors_name_the_file(tmp_path: Path) -> None:
    model = build_model("unet-slim", in_channels=3, options=SMALL["unet-slim"])
    with pytest.raises(CheckpointError, match="encoder weights file not found"):
        load_encoder_weights(model, tmp_path / "none.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match=r"bad\.pth: not a readable PyTorch state dict"):
        load_encoder_weights(model, bad)
    other = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="no tensor fits the encoder"):
        load_encoder_weights(model, other)
