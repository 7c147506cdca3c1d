"""Windowed whole-scene inference: seams, memory bound, outputs, devices, sites across tiles.

Scenes are real COGs in ``tmp_path`` in UTM 21S (EPSG:32721) holding L2A digital numbers
(uint16, BOA_ADD_OFFSET -1000) with the band descriptions a local scene has.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import click
import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from click.testing import CliRunner
from scipy import ndimage

from detection.errors import (
    ConfigError,
    DetectionError,
    InputFormatError,
    InputNotFoundError,
)
from detection.inference import (
    UINT8_NODATA,
    BlockReader,
    InferenceOptions,
    predict_raster,
    read_into,
    read_probabilities,
    scene_radiometry,
    valid_pixels,
)
from detection.inference._cog import _Pyramid
from detection.inference._common import _axis_lengths
from detection.inference._device import _run_batch
from minewatch.cli_predict import predict
from models.blend import axis_starts, axis_weights
from models.checkpoint import CheckpointMetadata, save_checkpoint
from models.errors import BandMismatchError, ModelError
from models.normalization import Normalization
from models.registry import DEFAULT_BANDS, build_model
from tests.detection.conftest import X0, Y0
from tiles.cog import is_cog, write_cog

REPO = Path(__file__).resolve().parents[2]
L2A_TAGS = {"BOA_ADD_OFFSET": "-1000", "PROCESSING_BASELINE": "05.10"}
#: Reflectance of the bands of DEFAULT_BANDS (tiles.spectra: forest, mining pond, sediment).
FOREST = (0.02, 0.04, 0.022, 0.31, 0.15, 0.065)
POND = (0.07, 0.11, 0.14, 0.09, 0.025, 0.015)
SEDIMENT = (0.09, 0.12, 0.16, 0.22, 0.3, 0.24)
#: Seam tolerance: windows vs whole scene, max abs probability difference away from the border.
SEAM_TOLERANCE = 0.02


def _dn(reflectance: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(reflectance * 10000 + 1000), 1, 65535).astype(np.uint16)


def _texture(shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 6)
    return 1 + 0.5 * field / max(float(np.abs(field).max()), 1e-9)


def _forest(height: int, width: int, seed: int = 0) -> np.ndarray:
    tex = _texture((height, width), seed)
    rng = np.random.default_rng(seed + 1)
    refl = np.asarray(FOREST, dtype=np.float64)[:, None, None] * tex
    return refl + rng.normal(0, 0.003, (len(FOREST), height, width))


def write_scene(
    path: Path,
    reflectance: np.ndarray,
    *,
    x0: float = X0,
    y0: float = Y0,
    bands: tuple[str, ...] = DEFAULT_BANDS,
    tags: dict[str, str] | None = None,
    nodata_box: tuple[slice, slice] | None = None,
) -> Path:
    data = _dn(reflectance)
    if nodata_box is not None:
        data[:, nodata_box[0], nodata_box[1]] = 0
    write_cog(
        path,
        data,
        crs="EPSG:32721",
        transform=Affine(10.0, 0.0, x0, 0.0, -10.0, y0),
        nodata=0,
        band_descriptions=list(bands),
        tags=L2A_TAGS if tags is None else tags,
    )
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random U-Net of stride 8 (four stages), enough to have a real receptive field."""
    torch.manual_seed(0)
    options = {"widths": [4, 8, 8, 8], "blocks": [1, 1, 1, 1]}
    model = build_model("unet-slim", in_channels=6, options=options)
    meta = CheckpointMetadata(
        name="tiny",
        version="0.0.1",
        architecture="unet-slim",
        options=options,
        bands=DEFAULT_BANDS,
        normalization=Normalization(
            DEFAULT_BANDS, (0.05, 0.06, 0.05, 0.3, 0.15, 0.07), (0.05,) * 6
        ),
        patch_size_px=64,
        extra={"thresholds": {"mining": 0.6}},
    )
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, meta)
    return path


def _opts(**kw: object) -> InferenceOptions:
    base: dict[str, object] = {"device": "cpu", "probability_dtype": "float32", "num_threads": 2}
    base.update(kw)
    return InferenceOptions(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ blending


def test_blend_weights_sum_to_one_and_do_not_taper_scene_borders() -> None:
    starts = axis_starts(1000, 256, 224)
    lengths = _axis_lengths(starts, 1000, 256, 16)
    assert starts == [0, 224, 448, 672, 896] and lengths == [256, 256, 256, 256, 112]
    assert starts[-1] + lengths[-1] >= 1000
    weights, total = axis_weights(starts, lengths, 32)
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    assert weights[0][0] == 1.0 and weights[-1][-1] == 1.0
    assert weights[1][0] < 0.01 and weights[1][-1] < 0.01


def test_windows_agree_with_whole_scene_prediction(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    refl = _forest(400, 456)
    refl[:, 150:230, 200:330] = np.asarray(POND)[:, None, None]
    scene = write_scene(tmp_path / "scene.tif", refl)
    whole = predict_raster(
        scene, tiny_checkpoint, out_path=tmp_path / "whole.tif", options=_opts(window_px=512)
    )
    windows = predict_raster(
        scene,
        tiny_checkpoint,
        out_path=tmp_path / "windows.tif",
        options=_opts(window_px=128, overlap_px=32, batch_size=3),
    )
    assert whole.windows == 1 and windows.windows == 4 * 5
    # the time of the COG written at the end is part of the wall time, and reported apart
    assert 0 < windows.cog_seconds < windows.seconds
    a, b = read_probabilities(whole.path), read_probabilities(windows.path)
    assert a.shape == b.shape == (2, 400, 456)
    border = 16
    diff = np.abs(a - b)[:, border:-border, border:-border]
    assert float(diff.max()) < SEAM_TOLERANCE, float(diff.max())
    assert float(diff.mean()) < SEAM_TOLERANCE / 20


def test_batch_size_and_read_ahead_do_not_change_the_result(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    scene = write_scene(tmp_path / "scene.tif", _forest(200, 260))
    one = predict_raster(scene, tiny_checkpoint, out_path=tmp_path / "a.tif",
                         options=_opts(window_px=64, overlap_px=16, batch_size=1, read_ahead=1))
    many = predict_raster(scene, tiny_checkpoint, out_path=tmp_path / "b.tif",
                          options=_opts(window_px=64, overlap_px=16, batch_size=5, read_ahead=3,
                                        read_threads=3))
    np.testing.assert_allclose(read_probabilities(one.path), read_probabilities(many.path),
                               atol=1e-5)


# ------------------------------------------------------------------------------ outputs


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["cog-128", "striped"])
def test_block_reader_reads_each_chunk_once_and_cuts_the_windows_a_window_read_gives(
    tmp_path: Path, device: str, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader decodes each block once, in chunks, and cuts windows from them: the same raw
    values as reading each window, padding past the edges included, and the same windows found
    unobserved (they skip the network); a chunk is dropped once no later window needs it."""
    refl = _forest(700, 650)
    data = _dn(refl)
    data[:, 0:300, 0:260] = 0  # a swath edge: whole windows unobserved
    data[:, 500:520, 600:630] = 0
    path = tmp_path / "scene.tif"
    profile = {"crs": "EPSG:32721", "transform": Affine(10.0, 0.0, X0, 0.0, -10.0, Y0)}
    if layout == "striped":
        with rasterio.open(path, "w", driver="GTiff", width=650, height=700, count=6,
                           dtype="uint16", nodata=0, **profile) as dst:
            dst.write(data)
            for i, band in enumerate(DEFAULT_BANDS, start=1):
                dst.set_band_description(i, band)
            dst.update_tags(**L2A_TAGS)
    else:
        write_cog(path, data, nodata=0, band_descriptions=list(DEFAULT_BANDS), tags=L2A_TAGS,
                  blocksize=128, **profile)
    with rasterio.open(path) as src:
        rad = scene_radiometry(src, DEFAULT_BANDS)
    starts = axis_starts(700, 128, 96)
    col_starts = axis_starts(650, 128, 96)
    specs = [(r, c, 128, 128) for r in starts for c in col_starts]
    padded = (starts[-1] + 128, col_starts[-1] + 128)
    fill = 0
    expected = []
    for r, c, h, w in specs:
        want = np.full((6, h, w), fill, dtype=np.uint16)
        read_into(path, rad, want, r, c)
        expected.append((want, bool(valid_pixels(want, rad, fill).any())))
    reads: list[tuple[int, int]] = []
    read_chunk = BlockReader._read_chunk

    def counted(self: BlockReader, k: int, c: int) -> tuple[torch.Tensor, np.ndarray]:
        reads.append((k, c))
        return read_chunk(self, k, c)

    monkeypatch.setattr(BlockReader, "_read_chunk", counted)
    reader = BlockReader(path, rad, 3, specs, device=torch.device(device), ahead=2)
    got, held_in_last_row = [], set()
    try:
        for (r, _c, _h, _w), window in zip(specs, reader.windows(), strict=True):
            got.append(window)
            if r == starts[-1]:
                held_in_last_row |= {k for k, _ in reader._chunks}
        assert not reader._chunks  # each dropped after its last window
    finally:
        reader.close()
    chunks = {(k, c) for k in range(math.ceil(padded[0] / reader.chunk_h))
              for c in range(math.ceil(padded[1] / reader.chunk_w))}
    assert sorted(reads) == sorted(chunks)  # every chunk read, and read once
    assert held_in_last_row == {padded[0] // reader.chunk_h}  # the chunk row above is gone
    assert len(got) == len(expected) == len(specs)
    skipped = 0
    for (want, want_valid), (raw, valid) in zip(expected, got, strict=True):
        assert raw.device.type == device
        np.testing.assert_array_equal(raw.cpu().numpy().view(np.uint16), want)
        assert valid == want_valid
        skipped += not valid
    assert skipped >= 2  # the unobserved corner is skipped


def test_output_is_a_cog_with_a_band_per_class_and_nodata(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    scene = write_scene(
        tmp_path / "scene.tif", _forest(600, 600), nodata_box=(slice(0, 600), slice(0, 176))
    )
    exact = predict_raster(scene, tiny_checkpoint, out_path=tmp_path / "f.tif",
                           options=_opts(window_px=96, overlap_px=16))
    result = predict_raster(scene, tiny_checkpoint, out_path=tmp_path / "q.tif",
                            options=_opts(window_px=96, overlap_px=16, probability_dtype="uint8"))
    assert is_cog(result.path)
    with rasterio.open(result.path) as src:
        assert src.descriptions == ("mining", "deforestation")
        assert src.dtypes == ("uint8", "uint8") and src.nodata == UINT8_NODATA
        assert src.overviews(1), "a COG of this size has overviews"
        assert src.crs.to_epsg() == 32721
        assert json.loads(src.tags()["MINEWATCH_THRESHOLDS"]) == {"mining": 0.6}
    p = read_probabilities(result.path)
    assert np.isnan(p[:, :, :176]).all() and np.isfinite(p[:, :, 176:]).all()
    np.testing.assert_allclose(p, read_probabilities(exact.path), atol=0.5 / 254 + 1e-6)
    # windows without any valid pixel (the first two columns of 8 x 8) skip the network
    assert result.windows == 8 * 6
    # The overviews, made during the run, are the means of the observed written values.
    for path, nodata in ((result.path, UINT8_NODATA), (exact.path, None)):
        with rasterio.open(path) as src, rasterio.open(path, overview_level=0) as half:
            assert src.overviews(1) == [2]
            np.testing.assert_allclose(
                half.read(), _mean_overview(src.read(), 2, nodata), atol=1e-6, equal_nan=True
            )


def _mean_overview(full: np.ndarray, factor: int, nodata: float | None) -> np.ndarray:
    """Each ``factor`` x ``factor`` cell's mean of observed values (rounded for integers)."""
    c, h, w = full.shape
    rows, cols = -(-h // factor), -(-w // factor)
    valid = np.isfinite(full) if nodata is None else full != nodata
    sums = np.zeros((c, rows * factor, cols * factor))
    counts = np.zeros_like(sums)
    sums[:, :h, :w] = np.where(valid, full, 0)
    counts[:, :h, :w] = valid
    sums = sums.reshape(c, rows, factor, cols, factor).sum((2, 4))
    counts = counts.reshape(c, rows, factor, cols, factor).sum((2, 4))
    mean = sums / np.maximum(counts, 1)
    if nodata is None:
        return np.where(counts > 0, mean, np.nan)
    return np.where(counts > 0, np.floor(mean + 0.5), nodata)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_overviews_of_rows_written_in_odd_blocks_are_exact_means(
    dtype: str, tmp_path: Path
) -> None:
    """Odd sides, odd blocks, unobserved cells: every level is its cells' mean, none missing."""
    rng = np.random.default_rng(5)
    h, w = 1100, 1037
    full = rng.uniform(0, 1, (2, h, w))
    full[:, 100:117, 3:300] = np.nan  # cells of both levels partly and wholly unobserved
    full[:, -3:, -5:] = np.nan
    nodata = UINT8_NODATA if dtype == "uint8" else None
    if dtype == "uint8":
        written = np.where(np.isnan(full), UINT8_NODATA, np.round(full * 254)).astype(np.uint8)
    else:
        written = full.astype(np.float32)
    profile = {"driver": "GTiff", "width": w, "height": h, "count": 2, "dtype": dtype,
               "crs": "EPSG:32721", "transform": Affine(10.0, 0, X0, 0, -10.0, Y0),
               "nodata": nodata if nodata is not None else float("nan"), "tiled": True,
               "blockxsize": 512, "blockysize": 512}
    pyramid = _Pyramid(tmp_path / "p.tif", profile)
    row = 0
    for rows in (97, 300, 1, 2, 699, 1):
        pyramid.add(written[:, row : row + rows].copy(), last=row + rows == h)
        row += rows
    pyramid.close()
    assert [p.name for p in pyramid.paths] == ["p.tif.ovr2.tif", "p.tif.ovr4.tif"]  # 275 <= 512
    for factor, path in zip((2, 4), pyramid.paths, strict=True):
        with rasterio.open(path) as level:
            got = level.read()
        expected = _mean_overview(written, factor, nodata)
        assert got.shape == expected.shape == (2, -(-h // factor), -(-w // factor))
        np.testing.assert_allclose(got, expected, atol=1e-6, equal_nan=True)
        assert (np.isnan(got) if nodata is None else got == nodata).any()


def test_errors_name_the_problem(tiny_checkpoint: Path, tmp_path: Path) -> None:
    refl = _forest(64, 64)
    swapped = write_scene(tmp_path / "b.tif", refl,
                          bands=("B02", "B03", "B04", "B08", "B11", "B8A"))
    with pytest.raises(BandMismatchError, match="B12"):
        predict_raster(swapped, tiny_checkpoint, out_path=tmp_path / "o.tif", options=_opts())
    untagged = write_scene(tmp_path / "u.tif", refl, tags={})
    with pytest.raises(InputFormatError, match="BOA_ADD_OFFSET") as untold:
        predict_raster(untagged, tiny_checkpoint, out_path=tmp_path / "o.tif", options=_opts())
    assert isinstance(untold.value, ValueError) and isinstance(untold.value, DetectionError)
    with pytest.raises(ConfigError, match="overlap_px"):
        InferenceOptions(window_px=128, overlap_px=100)
    with pytest.raises(FileNotFoundError, match="cannot open the scene") as missing:
        predict_raster(tmp_path / "nope.tif", tiny_checkpoint, out_path=tmp_path / "o.tif")
    assert isinstance(missing.value, InputNotFoundError)
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_fails_clearly(tiny_checkpoint: Path, tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", _forest(64, 64))
    with pytest.raises(ModelError, match="CUDA is not available"):
        predict_raster(scene, tiny_checkpoint, out_path=tmp_path / "o.tif",
                       options=_opts(device="cuda"))


# ------------------------------------------------------------------------------ devices


class _FakeCudaRunner:
    """Stands in for the device runner: out of memory above ``fits`` windows per batch."""

    def __init__(self, fits: int) -> None:
        self.fits = fits
        self.cuda = True
        self.fell_back = False

    def to_device(self, raw: torch.Tensor) -> torch.Tensor:
        return raw

    def fall_back_to_cpu(self) -> None:
        self.fell_back = True
        self.cuda = False
        self.fits = 10**6

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        if raw.shape[0] > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return raw.float()


def test_out_of_memory_halves_the_batch_then_falls_back_to_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    raw = torch.arange(8 * 2 * 4 * 4, dtype=torch.float32).reshape(8, 2, 4, 4)
    runner = _FakeCudaRunner(fits=3)
    out, batch = _run_batch(runner, raw, 8, False)  # type: ignore[arg-type]
    assert batch == 2 and not runner.fell_back
    torch.testing.assert_close(torch.stack(out), raw)
    runner = _FakeCudaRunner(fits=0)
    out, batch = _run_batch(runner, raw, 2, False)  # type: ignore[arg-type]
    assert runner.fell_back and batch == 1
    torch.testing.assert_close(torch.stack(out), raw)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu_within_bf16_tolerance(tiny_checkpoint: Path, tmp_path: Path) -> None:
    refl = _forest(600, 700)
    refl[:, 200:300, 300:420] = np.asarray(SEDIMENT)[:, None, None]
    scene = write_scene(tmp_path / "s.tif", refl)
    cpu = predict_raster(scene, tiny_checkpoint, out_path=tmp_path / "cpu.tif",
                         options=_opts(window_px=256, overlap_px=32))
    gpu = predict_raster(scene, tiny_checkpoint, out_path=tmp_path / "gpu.tif",
                         options=_opts(window_px=256, overlap_px=32, device="cuda"))
    assert gpu.device.startswith("cuda") and gpu.batch_size >= 1
    diff = np.abs(read_probabilities(cpu.path) - read_probabilities(gpu.path))
    assert float(diff.max()) < 0.05 and float(diff.mean()) < 0.005


# ------------------------------------------------------------------------------ memory


@pytest.mark.slow
def test_memory_stays_bounded_on_a_large_scene(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A 4096 x 4096 x 6 scene (192 MiB of DN, 384 MiB as float reflectance) predicted in
    256 px windows needs hardly more peak memory than a 2048 x 2048 one."""
    size = 4096
    rng = np.random.default_rng(0)
    data = np.empty((6, size, size), dtype=np.uint16)
    for b, value in enumerate(FOREST):
        data[b] = int(value * 10000 + 1000) + rng.integers(-60, 60, (size, size), dtype=np.int16)
    scene, small = tmp_path / "large.tif", tmp_path / "small.tif"
    for path, arr in ((scene, data), (small, data[:, :2048, :2048])):
        write_cog(path, arr, crs="EPSG:32721", transform=Affine(10.0, 0, X0, 0, -10.0, Y0),
                  nodata=0, band_descriptions=list(DEFAULT_BANDS), tags=L2A_TAGS)
    del data
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child of this (large)
    # pytest process would start with pytest's peak.
    script = textwrap.dedent(
        f"""
        import json
        from detection.inference import InferenceOptions, predict_raster
        from detection.inference._predictor import _checkpoint_of
        def status(key):
            for line in open("/proc/self/status"):
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
        ckpt = _checkpoint_of({str(tiny_checkpoint)!r})
        opts = InferenceOptions(window_px=256, overlap_px=32, device="cpu", num_threads=2)
        # a quarter-size scene first: libraries, thread pools, allocator arenas and GDAL's
        # block cache are warm after it; what the full scene adds is what grows with size
        predict_raster({str(small)!r}, ckpt, out_path={str(tmp_path / "s.tif")!r}, options=opts)
        before = status("VmHWM")
        r = predict_raster({str(scene)!r}, ckpt, out_path={str(tmp_path / "p.tif")!r},
                           options=opts)
        print(json.dumps({{"before": before, "peak": status("VmHWM"), "windows": r.windows}}))
        """
    )
    # A fixed mmap threshold: glibc's adaptive one lets freed window buffers stay in the heap
    # (RSS that is reusable, not live); the test measures what the predictor holds.
    env = {**os.environ, "GDAL_CACHEMAX": "16", "MALLOC_MMAP_THRESHOLD_": "131072"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, env=env, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    growth = stats["peak"] - stats["before"]
    scene_mib = 6 * size * size * 2 / 2**20
    assert stats["windows"] == 361
    # 4x the pixels: a whole-scene method would need 3/4 x (192 MiB of DN + 384 MiB as float)
    # more; here only GDAL's COG translation of the (uint8) output grows, ~2 bytes per pixel.
    assert growth < 0.25 * scene_mib, stats


# ------------------------------------------------------------------------------ sites


def _planted_site(tiles: dict[str, float], edge_x: float) -> dict[str, np.ndarray]:
    """Two 256 x 256 px tiles side by side; a pond with tailings around it across their edge."""
    out = {}
    for name, x0 in tiles.items():
        refl = _forest(256, 256, seed=int(x0) % 97)
        xs = x0 + 5 + 10 * np.arange(256)
        ys = Y0 - 5 - 10 * np.arange(256)
        xx, yy = np.meshgrid(xs, ys)
        dx, dy = xx - edge_x, yy - (Y0 - 1280)
        sediment = (np.abs(dx) < 450) & (np.abs(dy) < 300)
        pond = (np.abs(dx) < 250) & (np.abs(dy) < 150)
        refl[:, sediment] = np.asarray(SEDIMENT)[:, None]
        refl[:, pond] = np.asarray(POND)[:, None]
        out[name] = refl
    return out


def _run(args: list[str]) -> dict:
    group = click.Group()
    group.add_command(predict)
    out = CliRunner().invoke(group, ["predict", *args, "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def _mining(path: Path) -> list[dict]:
    collection = json.loads(path.read_text())
    assert collection["type"] == "FeatureCollection" and "crs" not in collection
    return [f for f in collection["features"] if f["properties"]["alert_class"] == "mining"]


def test_a_site_straddling_two_tiles_is_one_site_measured_whole(tmp_path: Path) -> None:
    """The shipped model, from the command line: two scenes -> one merged site.

    A 54 ha mine is cut in two ~27 ha halves by the tile edge: with a 40 ha unit neither tile
    has it alone, the merged sites have it whole; --resume keeps both COGs and only remakes
    the sites.
    """
    tiles = {"west": X0, "east": X0 + 2560}
    edge = X0 + 2560
    scenes = [
        write_scene(tmp_path / f"{name}.tif", refl, x0=tiles[name])
        for name, refl in _planted_site(tiles, edge).items()
    ]
    out = tmp_path / "out"
    common = [*map(str, scenes), "--out", str(out), "--device", "cpu", "--window-px", "256",
              "--overlap-px", "32"]
    report = _run([*common, "--min-area-ha", "40"])
    assert [Path(s["scene"]).stem for s in report["scenes"]] == ["west", "east"]
    assert all(not s.get("reused") and s["backend"] for s in report["scenes"])
    for name in tiles:
        assert is_cog(out / f"{name}_probabilities.tif")
        assert _mining(out / f"{name}_sites.geojson") == []  # each half is under the unit
    merged = _mining(out / "sites.geojson")
    assert report["sites"] == str(out / "sites.geojson")
    assert len(merged) == 1 and report["sites_per_class"]["mining"] == 1
    site = merged[0]["properties"]
    assert site["tile_id"] == "east,west"
    # 90 x 60 px planted (54 ha); the model's outline may differ by a pixel ring
    assert 40 < site["area_ha"] < 70, site
    whole = gpd.read_file(out / "sites.geojson").to_crs("EPSG:32721")
    minx, _, maxx, _ = whole[whole["alert_class"] == "mining"].total_bounds
    assert minx < edge - 300 and maxx > edge + 300

    # The sites above were traced from the rows while the network ran; --resume makes them
    # from the COGs, and they are the same. It keeps the COGs and remakes only the sites.
    streamed = (out / "sites.geojson").read_text()
    cogs = {p: p.stat().st_mtime_ns for p in out.glob("*_probabilities.tif")}
    again = _run([*common, "--min-area-ha", "40", "--resume"])
    assert all(s["reused"] for s in again["scenes"])
    assert (out / "sites.geojson").read_text() == streamed
    _run([*common, "--min-area-ha", "1", "--resume"])
    assert {p: p.stat().st_mtime_ns for p in out.glob("*_probabilities.tif")} == cogs
    for name in tiles:  # with a 1 ha unit each tile has its half, cut at the edge
        half = gpd.read_file(out / f"{name}_sites.geojson").to_crs("EPSG:32721")
        half = half[half["alert_class"] == "mining"]
        assert len(half) == 1 and 15 < half["area_ha"].iloc[0] < 40, half
        minx, _, maxx, _ = half.total_bounds
        assert abs((maxx if name == "west" else minx) - edge) < 1
    assert len(_mining(out / "sites.geojson")) == 1


def test_predict_command_loads_the_network_once_and_stops_loudly_mid_batch(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import detection.inference._predictor

    built = []
    real = detection.inference._predictor.build_engine
    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(detection.inference._predictor, "build_engine", counting)
    a = write_scene(tmp_path / "a.tif", _forest(160, 160))
    b = write_scene(tmp_path / "b.tif", _forest(160, 160, seed=3), x0=X0 + 1600)
    out = tmp_path / "out"
    model = ["--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--window-px", "128",
             "--overlap-px", "32"]
    common = [*model, "--out", str(out)]
    report = _run([str(a), str(b), str(a), *common])
    assert len(built) == 1 and len(report["scenes"]) == 2  # a repeated scene runs once
    assert (out / "sites.geojson").exists()

    group = click.Group()
    group.add_command(predict)
    runner = CliRunner()
    # Two scenes with one name would overwrite each other's outputs.
    (tmp_path / "other").mkdir()
    twin = write_scene(tmp_path / "other" / "a.tif", _forest(64, 64))
    res = runner.invoke(group, ["predict", str(a), str(twin), *common, "--overwrite"])
    assert res.exit_code == 2 and "both write a_probabilities.tif" in res.output
    # A scene that cannot be read stops the batch, naming it; the scenes before it are kept.
    broken = tmp_path / "c.tif"
    broken.write_bytes(b"not a GeoTIFF")
    fresh = tmp_path / "fresh"
    args = ["predict", str(a), str(broken), *model, "--out", str(fresh)]
    res = runner.invoke(group, args)
    assert res.exit_code == 1, res.output
    assert "c.tif" in res.output and "--resume" in res.output and "Traceback" not in res.output
    assert is_cog(fresh / "a_probabilities.tif") and (fresh / "a_sites.geojson").exists()
    assert not (fresh / "sites.geojson").exists()
    # --resume keeps only what this model wrote.
    res = runner.invoke(group, ["predict", str(a), str(b), "--out", str(out), "--device", "cpu",
                                "--resume"])
    assert res.exit_code == 1 and "not the one asked for" in res.output, res.output
    assert "--overwrite" in res.output
    res = runner.invoke(group, ["predict", str(a), *common, "--resume", "--overwrite"])
    assert res.exit_code == 2 and "not both" in res.output, res.output
    # A probability file that is not a GeoTIFF is not kept silently.
    (fresh / "a_probabilities.tif").write_bytes(b"cut short")
    res = runner.invoke(group, ["predict", str(a), *model, "--out", str(fresh), "--resume"])
    assert res.exit_code == 1 and "cannot read it to resume" in res.output, res.output


# ------------------------------------------------------------------------------ the command


def test_predict_command_writes_probabilities_and_sites(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    scene = write_scene(tmp_path / "S2_scene.tif", _forest(160, 160))
    group = click.Group()
    group.add_command(predict)
    out = tmp_path / "out"
    args = ["predict", str(scene), "--checkpoint", str(tiny_checkpoint), "--out", str(out),
            "--device", "cpu", "--window-px", "128", "--overlap-px", "32", "--json"]
    group.main(args, standalone_mode=False)
    assert is_cog(out / "S2_scene_probabilities.tif")
    collection = json.loads((out / "S2_scene_sites.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and "crs" not in collection
    with pytest.raises(click.ClickException, match="--overwrite"):
        group.main(args, standalone_mode=False)
    group.main([*args, "--overwrite"], standalone_mode=False)


def test_predict_flags_and_a_scan_config_set_the_one_site_rule(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """`predict`'s site flags are the scan config's `sites` keys: `--config` reads the section,
    a flag overrides one key, and the sites are those of the rule applied to the COG."""
    from detection.sites import MaskOptions, sites_from_probabilities

    scene = write_scene(tmp_path / "S2_scene.tif", _forest(160, 160))
    group = click.Group()
    group.add_command(predict)
    base = ["predict", str(scene), "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
            "--window-px", "128", "--overlap-px", "32", "--json"]

    def run(out: str, *extra: str) -> list[dict]:
        group.main([*base, "--out", str(tmp_path / out), *extra], standalone_mode=False)
        path = tmp_path / out / "S2_scene_sites.geojson"
        return json.loads(path.read_text())["features"]

    run("first")
    probs = read_probabilities(tmp_path / "first" / "S2_scene_probabilities.tif")
    cut = round(float(np.nanquantile(probs[0], 0.8)), 3)  # a fifth of the pixels are "mining"
    rule = {"thresholds": {"mining": cut}, "opening_px": 0, "closing_px": 2, "min_area_ha": 0.1,
            "simplify_m": 0}  # fmt: skip
    flagged = run("flags", "--threshold", f"mining={cut}", "--opening-px", "0", "--closing-px",
                  "2", "--min-area-ha", "0.1", "--simplify-m", "0")  # fmt: skip
    expected = sites_from_probabilities(
        str(tmp_path / "flags" / "S2_scene_probabilities.tif"),
        options=MaskOptions(thresholds={"mining": cut}, opening_px=0, closing_px=2,
                            min_area_ha=0.1, simplify_m=None),
    )  # fmt: skip
    assert len(flagged) == len(expected) > 0
    assert sorted(round(f["properties"]["area_ha"], 4) for f in flagged) == sorted(
        round(a, 4) for a in expected["area_ha"]
    )
    config = tmp_path / "scan.yaml"
    config.write_text(json.dumps({
        "aoi": {"path": "package:aoi/data/munduruku.geojson", "kind": "indigenous_land"},
        "source": {"kind": "local", "path": "scenes"},
        "periods": {"kind": "quarter", "start": "2024-04-01", "end": "2024-09-30"},
        "sites": rule,
    }))  # fmt: skip
    assert run("config", "--config", str(config)) == flagged
    # a flag beats the config's key; a higher threshold finds less
    stricter = run("override", "--config", str(config), "--threshold", f"mining={cut + 0.05}")
    area = sum(f["properties"]["area_ha"] for f in flagged)
    assert sum(f["properties"]["area_ha"] for f in stricter) < area
    # bad values: one line naming the key
    with pytest.raises(click.ClickException, match=r"sites\.thresholds\.gold"):
        run("bad", "--threshold", "gold=0.5")
    with pytest.raises(click.BadParameter, match="expected CLASS=P"):
        run("bad2", "--threshold", "mining")
