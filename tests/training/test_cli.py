from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from minewatch.cli_train import dataset, evaluate, train

from .conftest import TINY_OPTIONS


@click.group()
@click.pass_context
def cli(ctx: click.Context) -> None:
    ctx.ensure_object(dict)
    ctx.obj["progress"] = False


cli.add_command(train)
cli.add_command(evaluate)
cli.add_command(dataset)


def _write(path: Path, value: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(value), encoding="utf-8")
    return path


def _train_config(tmp_path: Path, chip_folder: Path) -> Path:
    return _write(tmp_path / "train.yaml", {
        "model": {"name": "tiny", "architecture": "unet-slim", "options": TINY_OPTIONS},
        "data": {"kind": "chips", "folder": str(chip_folder)},
        "sampling": {"patch_size_px": 32, "patches_per_epoch": 8},
        "optim": {"epochs": 1, "batch_size": 4},
        "device": "cpu",
    })


@pytest.mark.slow
def test_train_then_evaluate_end_to_end(tmp_path: Path, chip_folder: Path) -> None:
    runner = CliRunner()
    config = _train_config(tmp_path, chip_folder)
    out = tmp_path / "run"
    result = runner.invoke(cli, ["train", str(config), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert Path(summary["model"]).is_file() and (out / "log.csv").is_file()

    again = runner.invoke(cli, ["train", str(config), "--out", str(out)])
    assert again.exit_code == 1
    assert "is not empty; pass --overwrite" in again.output

    eval_config = _write(tmp_path / "eval.yaml", {
        "data": {"kind": "chips", "folder": str(chip_folder)},
        "splits": ["test"],
        "device": "cpu",
        "min_site_area_ha": 0.0,
    })
    report_dir = tmp_path / "eval"
    result = runner.invoke(cli, ["evaluate", str(eval_config), "--checkpoint",
                                 str(out / "model.pt"), "--out", str(report_dir), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [d["detector"]["name"] for d in report["detectors"]] == ["tiny", "indices"]
    assert set(report["detectors"][0]["regions"]) == {"region-2"}
    for name in ("report.json", "report.md", "confusion.png", "predictions.png"):
        assert (report_dir / name).is_file()


def test_unknown_config_key_is_one_line(tmp_path: Path, chip_folder: Path) -> None:
    config = _train_config(tmp_path, chip_folder)
    raw = yaml.safe_load(config.read_text())
    raw["optim"]["epoch"] = 3
    _write(config, raw)
    result = CliRunner().invoke(cli, ["train", str(config), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "unknown key 'optim.epoch'" in result.output


@pytest.mark.slow
def test_dataset_build_from_synthetic_worlds_splits_by_region(tmp_path: Path) -> None:
    world = {"size_px": 160, "n_mining_sites": 1, "n_clearings": 1, "n_tributaries": 1,
             "n_roads": 1, "n_sandbars": 1, "n_oxbow_lakes": 0, "n_pastures": 1,
             "n_quarries": 0, "n_fish_pond_groups": 0, "cloud_cover": 0.0,
             "acquisitions_per_period": 1, "mining_site_area_ha": [2.0, 4.0],
             "clearing_area_ha": [1.0, 3.0]}
    regions = [{"split": s, "world": {**world, "seed": i}}
               for i, s in enumerate(["train", "train", "val", "test"], start=1)]
    config = _write(tmp_path / "data.yaml", {
        "data": {"kind": "synthetic", "workdir": str(tmp_path / "worlds"), "regions": regions},
    })
    out = tmp_path / "chips"
    result = CliRunner().invoke(cli, ["dataset", "build", str(config), "--out", str(out),
                                      "--chip-size", "64", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["regions"] == {"train": ["seed-1", "seed-2"], "val": ["seed-3"],
                                  "test": ["seed-4"]}
    rows = (out / "chips.csv").read_text().splitlines()[1:]
    by_region: dict[str, set[str]] = {}
    for row in rows:
        _, region, split, image, mask = row.split(",")
        by_region.setdefault(region, set()).add(split)
        assert (out / image).is_file() and (out / mask).is_file()
    assert all(len(s) == 1 for s in by_region.values())
    assert summary["chips"]["test"] > 0
