"""Reading and writing configurations: YAML files, dotted overrides, plain dicts.

Every value is checked against the field's declared type and an unknown key names itself,
so a typo is an error instead of a new setting (the EasyDict trap).

>>> cfg = load_config(None, ["optim.lr=0.05", "head.type=cosface"])
>>> cfg.optim.lr, cfg.head.type
(0.05, 'cosface')
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from faceforge.config.sections import Config
from faceforge.errors import ConfigError, clip, first_line, shorten
from faceforge.safe_yaml import BoundedLoader, located

#: a config file is a few kilobytes; anything past this is not one
MAX_CONFIG_BYTES = 1 << 20


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a YAML/override value to the field's declared type, or raise ConfigError."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {shorten(value)}")
        return build_dataclass(annotation, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [] if value == "" else [value]  # eval.bins= empties the list
        (item_type, _) = typing.get_args(annotation)
        return tuple(_coerce(v, item_type, key) for v in value)
    if origin in (typing.Union, types.UnionType):  # X | None: null, or an X
        types_ = [t for t in typing.get_args(annotation) if t is not type(None)]
        return value if value is None or len(types_) != 1 else _coerce(value, types_[0], key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {shorten(value)}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {shorten(value)}")
    if annotation is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        with contextlib.suppress(ValueError, TypeError):  # YAML 1.1 reads 5e-4 as a string
            number = float(value) if number is None else number
        if number is None or not math.isfinite(number):  # inf and nan train nothing
            raise ConfigError(f"{key}: expected a finite number, got {shorten(value)}")
        return number
    if annotation is str:
        if isinstance(value, str):
            return value
        quote = " (put it in quotes to keep it as text)" if _scalar(value) else ""
        raise ConfigError(f"{key}: expected a string, got {shorten(value)}{quote}")
    return value


def _scalar(value: Any) -> bool:
    """Whether YAML read ``value`` as a number or a boolean (text that looks like one)."""
    return isinstance(value, (bool, int, float))


def _field_type(schema: type, dotted: str) -> Any:
    """The declared type of the field of dataclass ``schema`` that ``dotted`` names; None
    for none."""
    annotation: Any = schema
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(annotation):
            return None
        annotation = typing.get_type_hints(annotation).get(part)
    return annotation


def _takes_text(annotation: Any) -> bool:
    """Whether a field of this type holds text (``str``, or ``str | None``)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [t for t in typing.get_args(annotation) if t is not type(None)] == [str]
    return annotation is str


def build_dataclass(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """The frozen dataclass ``cls`` from plain ``values``: every key known, every value of
    its field's type and range (errors name ``prefix.key``); nested sections recursively."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown config key {shorten(dotted)}; known keys here: {known}")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) suitable for YAML and safe checkpoints."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


def config_from_dict(values: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` from :func:`config_to_dict` output, validating every key."""
    return build_dataclass(Config, values)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {shorten(dotted)}: {shorten(part)} is not a section")
        node = child
    leaf = parts[-1]
    if isinstance(value, dict) and isinstance(node.get(leaf), dict):
        for key, item in value.items():  # optim={lr: 0.05} changes lr, not the whole section
            _set_dotted(node[leaf], str(key), item)
    else:
        node[leaf] = value


def parse_override(text: str, schema: type = Config) -> tuple[str, Any]:
    """Split ``a.b=value`` and parse the value as YAML (so ``0.1``, ``true``, ``[1, 2]``
    work), except where the field of ``schema`` it names holds text: ``output_dir=2024``
    keeps the text as written."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {shorten(text)} must look like section.key=value")
    value = parse_yaml(raw, f"override {shorten(text)}") if raw.strip() else ""
    if _scalar(value) and _takes_text(_field_type(schema, key.strip())):
        value = raw.strip()
    return key.strip(), value


def parse_yaml(text: str, source: str) -> Any:
    """``text`` read by the bounded safe loader (:mod:`faceforge.safe_yaml`); any failure is
    one :class:`ConfigError` line naming ``source``."""
    try:
        return yaml.load(text, Loader=BoundedLoader)
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an over-long integer, a bad date
        problem = located(exc) if isinstance(exc, yaml.MarkedYAMLError) else first_line(exc)
        raise ConfigError(f"{source}: not valid YAML: {clip(problem)}") from None


def builtin_config_path(name: str) -> Path:
    """Path of a recipe shipped in ``faceforge/configs`` (``quickstart`` -> quickstart.yaml)."""
    return Path(__file__).parents[1] / "configs" / f"{name}.yaml"


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (a file path or the name of a shipped recipe), apply overrides.

    Unknown keys, wrong types and malformed overrides raise :class:`ConfigError`.
    """
    values: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.exists() and builtin_config_path(str(path)).exists():
            file = builtin_config_path(str(path))
        if not file.is_file():
            what = "is a folder, not a YAML file" if file.is_dir() else "not found"
            raise ConfigError(f"config file {str(path)!r} {what}")
        if file.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{file}: over {MAX_CONFIG_BYTES >> 20} MiB, not a config file")
        loaded = parse_yaml(file.read_text(errors="replace"), str(file)) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: top level must be a mapping of sections")
        values = loaded
    return _with_overrides(values, overrides)


def override_config(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """``cfg`` with ``section.key=value`` overrides applied, checked as :func:`load_config`."""
    return _with_overrides(config_to_dict(cfg), overrides)


def _with_overrides(values: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> Config:
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(values, key, value)
    return build_dataclass(Config, values)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (what the run actually used)."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
