"""Terminal plumbing shared by the CLI modules: logging, progress bars, common options."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click


def setup_logging(verbose: int, quiet: int) -> None:
    level = logging.WARNING - 10 * verbose + 10 * quiet
    level = max(logging.DEBUG, min(logging.CRITICAL, level))
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Any]:
    """A progress callback ``(stage, done, total)``: rich bars on a terminal, else None."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    tasks: dict[str, Any] = {}
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


OUT = click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder (default: the config's output.folder).",
)
OVERWRITE = click.option("--overwrite", is_flag=True, help="Replace results already in --out.")
JSON = click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
DETECTOR = click.option(
    "--detector",
    "detector_kind",
    type=click.Choice(["network", "indices"]),
    help="Detector to use (default: the config's).",
)
