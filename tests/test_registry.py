"""Registry: explicit names, duplicates refused, helpful misses."""

from __future__ import annotations

import pytest

from faceforge.registry import Registry


def test_of_register_get_and_names() -> None:
    reg = Registry.of("thing", {"b": lambda: 2, "a": lambda: 1})
    assert reg.names() == ["a", "b"]
    assert reg.get("a")() == 1 and "b" in reg and "c" not in reg


def test_duplicate_name_raises() -> None:
    reg = Registry.of("thing", {"a": lambda: 1})
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        reg.register("a")(lambda: 3)


def test_missing_name_lists_available() -> None:
    with pytest.raises(KeyError, match="unknown thing 'z'; valid choices: a, b"):
        Registry.of("thing", {"a": int, "b": int}).get("z")


def test_a_huge_unknown_name_is_quoted_cut_short() -> None:
    with pytest.raises(KeyError) as info:
        Registry.of("thing", {"a": int}).get("z" * 1_000_000, "data.source")
    message = str(info.value)
    assert message.startswith("unknown thing data.source='zzz") and len(message) < 150
    assert message.endswith("valid choices: a")
