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


def test_a_near_miss_is_suggested_and_another_projects_name_translated() -> None:
    reg = Registry.of(
        "backbone",
        {"iresnet50": int, "mobilefacenet": int},
        elsewhere={"r50": "arcface_torch's r50 is iresnet50"},
    )
    with pytest.raises(KeyError, match=r"'r50' \(arcface_torch's r50 is iresnet50\); valid"):
        reg.get("r50")
    for typed in ("IResNet50", "iresnet-50", "mobilefacenet2"):
        with pytest.raises(KeyError, match=r"\(did you mean (iresnet50|mobilefacenet)\?\)"):
            reg.get(typed)
    for unrelated in ("banana", "mobile"):  # a weak likeness suggests nothing
        with pytest.raises(KeyError, match=rf"unknown backbone '{unrelated}'; valid choices"):
            reg.get(unrelated)
    assert "r50" not in reg  # named, never accepted: one name for each choice


def test_insightface_and_adaface_names_point_to_ours() -> None:
    from faceforge.models.registry import BACKBONES

    for theirs, ours in (
        ("r100", "iresnet100"),
        ("ir_101", "iresnet100"),
        ("mbf", "mobilefacenet"),
    ):
        assert BACKBONES.elsewhere[theirs].endswith(f" is {ours}") and ours in BACKBONES
    assert "is vit_b, trained with drop_path=0.05" in BACKBONES.elsewhere["vit_b_dp005_mask_005"]
