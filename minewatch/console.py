"""Terminal plumbing shared by the CLI modules: logging, progress bars, common options."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per log record (for journald, Loki, Elasticsearch...)."""

    def format(self, record: logging.LogRecord) -> str:
        import datetime as dt
        import json

        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


#: Secrets that third-party loggers write at DEBUG (requests-oauthlib logs the token it obtained
#: and the Authorization header; urls carry SAS signatures): the key is kept, the value masked.
_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(
        r"""(?P<key>['"]?(?:access_token|refresh_token|id_token|client_secret|password)['"]?"""
        r"""\s*[:=]\s*['"]?)(?P<value>[^'"\s,&}]+)""",
        re.IGNORECASE,
    ),
    re.compile(r"(?P<key>\b(?:Bearer|Basic)\s+)(?P<value>[A-Za-z0-9._~+/=-]+)", re.IGNORECASE),
    re.compile(r"(?P<key>[?&](?:sig|token)=)(?P<value>[^&\s'\"]+)", re.IGNORECASE),
)


def redact(text: str) -> str:
    """``text`` with the values of tokens, secrets, bearer headers and URL signatures masked."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: f"{m.group('key')}***", text)
    return text


class RedactSecrets(logging.Filter):
    """A handler filter masking secrets in every record that reaches the handler (`redact`),
    whichever library logged it, so ``-vv`` never prints a live token."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is left as it is
            return True
        masked = redact(text)
        if masked != text:
            record.msg, record.args = masked, ()
        return True


def setup_logging(verbose: int, quiet: int, *, log_format: str = "text") -> None:
    """Logs on stderr: WARNING by default, ``-v`` INFO, ``-vv`` DEBUG, ``-q`` ERROR only."""
    level = logging.WARNING - 10 * verbose + 10 * quiet
    level = max(logging.DEBUG, min(logging.CRITICAL, level))
    handler: logging.Handler
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLinesFormatter())
        handler.addFilter(RedactSecrets())
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(level)
        logging.captureWarnings(True)
        return
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)


_VERBOSITY_KEY = "minewatch.verbosity"


def set_verbosity(
    ctx: click.Context, *, verbose: int = 0, quiet: int = 0, log_format: str | None = None
) -> None:
    """Add ``-v``/``-q`` counts given at any level of the command line (``minewatch -v scan``
    and ``minewatch scan CONFIG -v`` alike) and set up logging and progress bars for the total.
    """
    root = ctx.find_root()
    state = root.meta.setdefault(_VERBOSITY_KEY, {"verbose": 0, "quiet": 0, "format": "text"})
    state["verbose"] += verbose
    state["quiet"] += quiet
    if log_format is not None:
        state["format"] = log_format
    setup_logging(state["verbose"], state["quiet"], log_format=state["format"])
    if isinstance(ctx.obj, dict):
        ctx.obj["progress"] = state["quiet"] == 0 and state["format"] == "text"


def _verbosity_callback(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value and param.name == "verbose":
        set_verbosity(ctx, verbose=value)
    elif value:
        set_verbosity(ctx, quiet=value)
    return value


def add_verbosity_options(group: click.Group) -> None:
    """Give every subcommand of ``group`` (recursively) its own ``-v``/``-q``, so they work after
    the subcommand too; the counts add up with the group's."""
    for command in group.commands.values():
        names = {opt for param in command.params for opt in param.opts}
        if "-v" not in names:
            command.params += [
                click.Option(
                    ["-v", "--verbose"],
                    count=True,
                    expose_value=False,
                    callback=_verbosity_callback,
                    help="More log output (-vv: debug and tracebacks).",
                ),
                click.Option(
                    ["-q", "--quiet"],
                    count=True,
                    expose_value=False,
                    callback=_verbosity_callback,
                    help="Less log output.",
                ),
            ]
        if isinstance(command, click.Group):
            add_verbosity_options(command)


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
JSON = click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
SCALE = [
    click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Run units on a local Dask cluster of N worker processes (0: in this process).",
    ),
    click.option(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="Run units on an existing Dask cluster.",
    ),
    click.option(
        "--since",
        type=click.DateTime(formats=["%Y-%m-%d"]),
        default=None,
        help="Backfill: first day of the periods to scan (overrides periods.start).",
    ),
    click.option(
        "--until",
        type=click.DateTime(formats=["%Y-%m-%d"]),
        default=None,
        help="Last day of the periods to scan (overrides periods.end).",
    ),
]


def scale_options(func: Any) -> Any:
    for option in reversed(SCALE):
        func = option(func)
    return func


DETECTOR = click.option(
    "--detector",
    "detector_kind",
    type=click.Choice(["network", "indices", "amw"]),
    help="Detector to use (default: the config's).",
)
