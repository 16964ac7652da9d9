"""The documentation of every config key, read from the sections' ``#:`` doc comments.

The comments in :mod:`faceforge.config.sections` are the one place a setting is explained;
``faceforge train --help`` lists them through :func:`config_keys`.

>>> key = next(k for k in config_keys() if k.key == "optim.lr")
>>> key.default, key.doc.split(" (")[0]
(0.1, 'peak learning rate')
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass
from typing import Any

from faceforge.config.sections import Config

#: ``    name: type = default`` inside a class body (docstring lines have no `` = ``)
_FIELD = re.compile(r"^    (\w+): [^=]+ = ")


@dataclass(frozen=True)
class ConfigKey:
    """One settable key: its dotted name, type, default and documentation."""

    key: str
    type: str
    default: Any
    doc: str


def field_docs(section: type) -> dict[str, str]:
    """``{field: doc}`` of a section dataclass from the ``#:`` comments above its fields.

    Fields written right below a documented one without a comment of their own share its text
    (``m1``, ``m2``, ``m3`` under one formula); a blank line ends such a group.
    """
    try:
        source = inspect.getsource(section)
    except (OSError, TypeError):  # installed without sources: keys without text
        return {}
    docs: dict[str, str] = {}
    comment: list[str] = []
    current = ""
    for line in source.splitlines()[1:]:
        text = line.strip()
        if text.startswith("#:"):
            comment.append(text[2:].strip())
        elif match := _FIELD.match(line):
            current, comment = (" ".join(comment), []) if comment else (current, comment)
            docs[match[1]] = current
        elif not text:
            current, comment = "", []
    return docs


def config_keys(section: type = Config, prefix: str = "") -> list[ConfigKey]:
    """Every leaf key of ``section`` (nested sections flattened to dotted names), in order."""
    docs = field_docs(section)
    keys: list[ConfigKey] = []
    for item in dataclasses.fields(section):
        name = f"{prefix}{item.name}"
        default = item.default_factory() if item.default is dataclasses.MISSING else item.default
        if dataclasses.is_dataclass(default):
            keys += config_keys(type(default), f"{name}.")
        else:
            type_name = item.type if isinstance(item.type, str) else item.type.__name__
            keys.append(ConfigKey(name, type_name, default, docs.get(item.name, "")))
    return keys
