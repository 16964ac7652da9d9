"""Config loading: YAML + dotted overrides, unknown keys and wrong types are errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceforge.config import (
    Config,
    builtin_config_path,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from faceforge.errors import ConfigError

SHIPPED = sorted((Path(__file__).resolve().parents[1] / "faceforge" / "configs").glob("*.yaml"))


def test_defaults_and_overrides() -> None:
    cfg = load_config(None, ["optim.lr=0.05", "head.type=cosface", "optim.milestones=[0.3, 0.6]"])
    assert cfg.optim.lr == 0.05
    assert cfg.head.type == "cosface"
    assert cfg.optim.milestones == (0.3, 0.6)
    assert cfg.model == Config().model


def test_numbers_in_any_yaml_notation(tmp_path: Path) -> None:
    """YAML 1.1 reads 5e-4 (no dot) as a string; faceforge still takes it as a number."""
    assert load_config(None, ["optim.lr=5e-4"]).optim.lr == 5e-4
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lr: 1e-3\n  weight_decay: 5E-4\n")
    cfg = load_config(recipe)
    assert (cfg.optim.lr, cfg.optim.weight_decay) == (1e-3, 5e-4)


def test_integer_given_for_float_is_coerced() -> None:
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0
    assert isinstance(load_config(None, ["optim.lr=1"]).optim.lr, float)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=0.1", "unknown config key 'optim.lrr'"),
        ("optimizer.lr=0.1", "unknown config key 'optimizer'"),
        ("optim.lr=fast", "optim.lr: expected a number"),
        ("train.batch_size=6.5", "train.batch_size: expected an integer"),
        ("train.channels_last=1", "expected true/false"),
        ("optim.lr", "must look like section.key=value"),
        ("optim=3", "optim: expected a mapping"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, [override])


def test_unknown_key_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("model:\n  backbone: mobilefacenet\n  embeding_size: 128\n")
    with pytest.raises(ConfigError, match="model.embeding_size"):
        load_config(path)


def test_missing_file_is_reported() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config("no/such/file.yaml")


def test_round_trip_through_yaml_and_dict(tmp_path: Path) -> None:
    cfg = load_config("quickstart", ["optim.lr=0.02"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_builtin_name_resolves() -> None:
    assert builtin_config_path("quickstart").is_file()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_yaml_loads_and_builds(path: Path) -> None:
    from faceforge.losses import build_loss
    from faceforge.models import backbone_names
    from faceforge.models.heads import build_head

    cfg = load_config(path)
    assert cfg.model.backbone in backbone_names()
    build_head(cfg.head, cfg.model.embedding_size, 10)
    build_loss(cfg.loss, cfg.model.embedding_size, 10)


def test_recipes_cover_the_seeds() -> None:
    names = {p.stem for p in SHIPPED}
    heads = {load_config(p).head.type for p in SHIPPED}
    assert "quickstart" in names
    assert {"arcface", "cosface", "sphereface"} <= heads
    assert any(load_config(p).loss.center_weight == 0.005 for p in SHIPPED)
