"""PyYAML's safe loader, bounded: what a document can make us build, walk or print is limited
while it is composed, before anything is built from it. Every YAML faceforge reads (configs,
overrides) goes through :class:`BoundedLoader`; a refusal is a PyYAML ``MarkedYAMLError``, so
callers report it like a syntax error, with its line and column.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

#: values a document may hold with aliases and merge keys expanded, and how deeply they may
#: nest: a full faceforge recipe holds about 150 values, three levels deep
MAX_VALUES = 10_000
MAX_DEPTH = 16
#: what YAML 1.1 reads as an octal integer and YAML 1.2 as a decimal one
_LEADING_ZERO = re.compile(r"[-+]?0[0-7]+")


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a document that holds more than :data:`MAX_VALUES`
    values once aliases are expanded, nests deeper than :data:`MAX_DEPTH` (PyYAML composes
    recursively: 5,000 ``[`` overflow the stack) or contains itself.

    Aliases let a few hundred bytes stand for billions of values (the "billion laughs"); they
    stay legal, since anchors are a fair way to share settings, but their expansion is counted
    while the document is composed, before anything is built or printed from it.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._values: dict[int, int] = {}  # id(node) -> values it expands to, once complete
        self._composed = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            target = self.anchors.get(self.peek_event().anchor)
            if target is not None and id(target) not in self._values:
                self._refuse("an alias refers to the value that contains it")
            return super().compose_node(parent, index)
        self._composed += 1
        self._depth += 1
        if self._depth > MAX_DEPTH:
            self._refuse(f"values nest deeper than {MAX_DEPTH} levels")
        node = super().compose_node(parent, index)
        self._depth -= 1
        size = 1 + sum(self._values[id(child)] for child in _children(node))
        if max(size, self._composed) > MAX_VALUES:
            self._refuse(
                f"it expands to more than {MAX_VALUES:,} values (YAML aliases repeat "
                "what they name); a config holds a few hundred"
            )
        self._values[id(node)] = size
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        """A mapping; a key written twice is refused (YAML keeps the last one, so a second
        ``optim:`` section dropped every setting of the first without a word). Keys brought
        in by a merge (``<<: *base``) may still be overridden."""
        seen: dict[str, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {key_node.value!r} twice (first at line "
                    f"{seen[key_node.value].start_mark.line + 1}); merge the two",
                    key_node.start_mark,
                )
            seen[key_node.value] = key_node
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """An integer; one written with a leading zero is decimal, as in YAML 1.2 (YAML 1.1,
        PyYAML's, reads ``010`` as octal 8)."""
        text = self.construct_scalar(node).replace("_", "")
        if _LEADING_ZERO.fullmatch(text):
            return int(text, 10)
        return super().construct_yaml_int(node)

    def _refuse(self, problem: str) -> None:
        raise yaml.composer.ComposerError(None, None, problem, self.peek_event().start_mark)


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


def located(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem and where it is, on one line (its message spans several)."""
    mark = exc.problem_mark or exc.context_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return f"{exc.problem or exc.context}{where}"
