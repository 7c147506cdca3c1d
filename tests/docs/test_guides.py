"""Every command of the user guides works: each ```sh block of docs/guide-operator.md,
guide-analyst.md and guide-researcher.md is run as a bash script (``set -euo pipefail``), in
order, in one empty folder shared by the three guides (so the analyst's ``minewatch demo`` reuses
the operator's run), with ``configs`` linked in as from a checkout. Blocks of other languages
(``console``, ``text``, ``cron``, ``ini``) are not run: they install, show output or are
system configuration.

Until ``minewatch.cli`` registers ``report`` (and ``train``, ``evaluate``, ``dataset``), the
``minewatch`` on the tests' PATH is a shim that adds the missing commands to the real CLI; once
they are registered it is the real CLI unchanged.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDES = ("guide-operator.md", "guide-analyst.md", "guide-researcher.md")
_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)

_SHIM = """\
import sys

from minewatch.cli import cli, main
from minewatch.cli_report import report
from minewatch.cli_train import dataset, evaluate, train

for command in (report, train, evaluate, dataset):
    if command.name not in cli.commands:
        cli.add_command(command)
sys.exit(main())
"""


def sh_blocks(guide: str) -> list[str]:
    """The ```sh blocks of a guide, in order."""
    return _BLOCK.findall((REPO / "docs" / guide).read_text(encoding="utf-8"))


def minewatch_commands(block: str) -> list[list[str]]:
    """The ``minewatch`` command lines of a block (heredoc bodies skipped), split as a shell does,
    without redirections, comments and what follows ``||``."""
    out: list[list[str]] = []
    heredoc: str | None = None
    for line in block.splitlines():
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        found = re.search(r"<<-?\s*'?(\w+)'?", line)
        if found:
            heredoc = found.group(1)
        words = shlex.split(line, comments=True)
        for stop in ("||", "&&", "|", ">", ">>", ";"):
            if stop in words:
                words = words[: words.index(stop)]
        if words and words[0] == "minewatch":
            out.append(words[1:])
    return out


def _cli() -> click.Group:
    from minewatch.cli import cli
    from minewatch.cli_report import report
    from minewatch.cli_train import dataset, evaluate, train

    for command in (report, train, evaluate, dataset):
        if command.name not in cli.commands:
            cli.add_command(command)
    return cli


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_commands_parse(guide: str) -> None:
    """Every ``minewatch`` command of the guide names a real command with real options (fast:
    nothing runs; the slow test below runs them)."""
    commands = [c for block in sh_blocks(guide) for c in minewatch_commands(block)]
    assert commands, f"{guide} has no minewatch command in a sh block"
    cli = _cli()
    for args in commands:
        try:
            _parse(cli, args)
        except click.exceptions.Exit as exc:  # --help, --version
            assert exc.exit_code == 0, args


def _parse(cli: click.Group, args: list[str]) -> None:
    """Parse ``minewatch ARGS`` down to its leaf command without running it.

    Raises:
        click.UsageError: an unknown command or option, or a bad value.
    """
    ctx = cli.make_context("minewatch", list(args))
    command: click.Command = cli
    rest = _unparsed(ctx)
    while isinstance(command, click.Group) and rest:
        name, rest = rest[0], rest[1:]
        sub = command.get_command(ctx, name)
        if sub is None:
            raise click.UsageError(f"unknown command 'minewatch {' '.join(args)}'")
        ctx = sub.make_context(name, list(rest), parent=ctx)
        command = sub
        rest = _unparsed(ctx)


def _unparsed(ctx: click.Context) -> list[str]:
    """What a group left for its subcommand. Click 8.2 deprecates ``protected_args`` (9.0 puts
    everything in ``args``); the warning is silenced here because both forms are read."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        protected = list(getattr(ctx, "protected_args", []))
    return protected + list(ctx.args)


@pytest.fixture(scope="module")
def guide_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The shared work folder (``configs`` linked in) and an environment whose PATH starts with
    the venv's ``python`` and the ``minewatch`` shim."""
    work = tmp_path_factory.mktemp("guides")
    (work / "configs").symlink_to(REPO / "configs", target_is_directory=True)
    bin_dir = tmp_path_factory.mktemp("bin")
    shim = bin_dir / "minewatch"
    shim.write_text(f"#!{sys.executable}\n{_SHIM}")
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    (bin_dir / "python").symlink_to(sys.executable)
    env = os.environ | {
        "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
        + os.environ.get("PATH", ""),
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": str(REPO),
    }
    return work, env


@pytest.mark.slow
@pytest.mark.parametrize("guide", GUIDES)
def test_guide_runs(guide: str, guide_env: tuple[Path, dict[str, str]]) -> None:
    work, env = guide_env
    blocks = sh_blocks(guide)
    assert blocks
    for i, block in enumerate(blocks, start=1):
        proc = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + block],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        assert proc.returncode == 0, (
            f"{guide}, sh block {i} exited {proc.returncode}:\n{block}\n"
            f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
        )
    if guide == "guide-operator.md":
        report = work / "minewatch-demo" / "report"
        assert (report / "report.html").is_file()
        assert (report / "report.pdf").read_bytes().startswith(b"%PDF")
        assert (work / "report-2024q3" / "reserve_periods.csv").is_file()
        assert (work / "minewatch-demo-year" / "report" / "report.html").is_file()
    if guide == "guide-analyst.md":
        assert (work / "labels.gpkg").is_file() and (work / "field.kml").is_file()
    if guide == "guide-researcher.md":
        assert (work / "tiny-model" / "model.pt").is_file()
        assert (work / "tiny-eval" / "report.json").is_file()
