"""Reading YAML config files: one set of rules for every config of the project.

Relative input paths resolve against the config file's folder; ``package:NAME/PATH`` names a file
shipped inside an installed package (``package:aoi/data/munduruku.geojson``); dotted overrides
(flags) beat the file; a validation error becomes one line naming the file and the key.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


class StrictConfig(BaseModel):
    """The base of every config section of the project: an unknown key is an error (a typo must
    not fall back silently to a default) and a loaded config is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def resolve_path(value: str | Path, *, base: Path) -> Path:
    """Resolve a config path: ``package:NAME/REL`` inside an installed package, else relative to
    ``base``.

    Raises:
        ValueError: ``NAME`` is not an installed package.
    """
    text = str(value)
    if text.startswith("package:"):
        package, _, rel = text[len("package:") :].partition("/")
        try:
            root = importlib.resources.files(package)
        except ModuleNotFoundError as exc:
            raise ValueError(
                f"path {text!r}: no installed package {package!r}; "
                "expected 'package:NAME/PATH' with NAME one of aoi, tiles, models"
            ) from exc
        return Path(str(root.joinpath(rel)))
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path)


class _DatesAsText(yaml.SafeLoader):
    """YAML's safe loader with dates left as strings."""


_DatesAsText.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_config_file(
    path: Path,
    *,
    error: type[Exception],
    input_keys: Iterable[tuple[str, ...]] = (),
    overrides: dict[str, Any] | None = None,
    sections_hint: str = "sections",
) -> dict[str, Any]:
    """Read a YAML mapping, apply dotted ``overrides`` and resolve the paths at ``input_keys``.

    Raises:
        error: the file is missing, is not YAML, is not a mapping, or names an unknown package.
    """
    if not path.is_file():
        raise error(f"config file {str(path)!r} does not exist; pass a YAML file (see configs/)")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc
    except ValueError:
        # An impossible date (2024-02-30) fails inside PyYAML's date constructor, without
        # naming the key: read dates as text, so the validation names the key and the value.
        raw = yaml.load(text, Loader=_DatesAsText)  # a SafeLoader subclass
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping of {sections_hint}")
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    base = path.resolve().parent
    for keys in input_keys:
        found: Any = raw
        for key in keys[:-1]:
            found = found.get(key) if isinstance(found, dict) else None
        if isinstance(found, dict) and isinstance(found.get(keys[-1]), str):
            try:
                found[keys[-1]] = str(resolve_path(found[keys[-1]], base=base))
            except ValueError as exc:
                raise error(str(exc)) from exc
    return raw


def load_config_file(
    path: str | Path,
    model: type[ModelT],
    *,
    error: type[Exception],
    input_keys: Iterable[tuple[str, ...]] = (),
    overrides: dict[str, Any] | None = None,
    sections_hint: str = "sections",
) -> ModelT:
    """Read a YAML config (:func:`read_config_file`) and validate it as ``model``.

    Raises:
        error: the file cannot be read, or does not validate (the message names the file and
            the key, :func:`format_validation_error`).
    """
    path = Path(path)
    raw = read_config_file(
        path, error=error, input_keys=input_keys, overrides=overrides, sections_hint=sections_hint
    )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(format_validation_error(exc, path)) from exc


def format_validation_error(exc: ValidationError, source: Path) -> str:
    """The first validation error as one line naming the file, the key and the value."""
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key {key!r}; remove it or check its spelling"
    if first["type"] == "missing":
        return f"{source}: missing key {key!r}"
    got = first.get("input")
    got_text = "" if isinstance(got, dict | list) else f" (got {got!r})"
    return f"{source}: key {key!r}: {first['msg']}{got_text}"
