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
        ("optim.lr=fast", "optim.lr: expected a finite number"),
        ("optim.lr=inf", "optim.lr: expected a finite number, got 'inf'"),
        ("head.scale=.nan", "head.scale: expected a finite number"),
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


def test_a_section_given_as_a_mapping_changes_only_the_keys_it_names() -> None:
    """optim={lr: 0.05} replaced the whole section: the recipe's poly schedule and its
    10,116 warmup steps fell back to the defaults."""
    recipe = load_config("ms1mv3_iresnet50_arcface_pfc")
    changed = load_config("ms1mv3_iresnet50_arcface_pfc", ["optim={lr: 0.05}"])
    assert changed.optim.lr == 0.05 and recipe.optim.schedule == "poly"
    assert (changed.optim.schedule, changed.optim.warmup_steps) == (
        recipe.optim.schedule,
        recipe.optim.warmup_steps,
    )


def test_an_empty_override_empties_a_list() -> None:
    """eval.bins= became ('',), which then failed as a missing file."""
    assert load_config(None, ["eval.bins=[a.bin]", "eval.bins="]).eval.bins == ()


def test_a_section_written_twice_is_refused_not_half_dropped(tmp_path: Path) -> None:
    """YAML keeps the last of two keys: the first optim section's lr and schedule were lost."""
    path = tmp_path / "x.yaml"
    path.write_text("optim:\n  lr: 0.02\n  scheduler: poly\nmodel:\n  embedding_size: 128\n"
                    "optim:\n  momentum: 0.8\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"found the key 'optim' twice \(first at line 1\)"):
        load_config(path)
    path.write_text("base: &b {lr: 0.02, momentum: 0.8}\noptim:\n  <<: *b\n  lr: 0.05\n")
    with pytest.raises(ConfigError, match="base"):  # a merge may be overridden: the key is new
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


def alias_bomb(levels: int) -> str:
    """A YAML "billion laughs" in flow style: each level lists nine aliases of the level
    below, so a few dozen bytes per level stand for ``9 ** levels`` strings."""
    items = ["&l0 [" + ", ".join(["lol"] * 9) + "]"]
    items += [f"&l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]" for n in range(1, levels)]
    return "[" + ", ".join(items) + "]"


@pytest.mark.parametrize("where", ["file", "override"])
def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path, where: str) -> None:
    """Six levels (half a million strings; the issue's 465-byte file has nine, 387 million):
    refused while composing, and the message quotes none of it."""
    bomb = alias_bomb(6)
    assert len(bomb) == 306
    path = tmp_path / "bomb.yaml"
    path.write_text(f"data:\n  source: {bomb}\n")
    with pytest.raises(ConfigError) as info:
        if where == "file":
            load_config(path)
        else:
            load_config(None, [f"data.source={bomb}"])
    message = str(info.value)
    assert "expands to more than 10,000 values" in message
    assert len(message) < 400 and "\n" not in message


def test_anchors_and_merge_keys_within_the_bound_still_work(tmp_path: Path) -> None:
    path = tmp_path / "shared.yaml"
    path.write_text(
        "optim: &common {lr: 0.05, momentum: 0.8}\n"
        "eval: {bins: &bins [a.bin, b.bin], batch_size: 64}\n"
    )
    cfg = load_config(path, ["data.synthetic={<<: {seed: 3}, val_pairs: 10}"])
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.eval.bins) == (0.05, 0.8, ("a.bin", "b.bin"))
    assert (cfg.data.synthetic.seed, cfg.data.synthetic.val_pairs) == (3, 10)


@pytest.mark.parametrize(
    ("override", "quoted"),
    [
        ("data.source=[" + "x, " * 5000 + "]", "data.source: expected a string, got ['x', "),
        ("train.seed='" + "9" * 100_000 + "'", "train.seed: expected an integer, got '999"),
        ("model=" + "m" * 100_000, "model: expected a mapping, got 'mmm"),
    ],
)
def test_errors_quote_a_huge_value_cut_short(override: str, quoted: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert message.startswith(quoted) and "..." in message and len(message) < 150


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("data.source=[a, b", r"expected ',' or '\]', but got '<stream end>' \(line 1, column 6\)"),
        ("data.source=" + "[" * 5000, r"values nest deeper than 16 levels"),
        ("data.source=&a [*a]", r"an alias refers to the value that contains it"),
        ("data.source=*nowhere", r"found undefined alias 'nowhere'"),
        ("train.seed=" + "1" * 5000, r"Exceeds the limit \(4300 digits\)"),
        ("train.amp=2020-13-45", r"month must be in 1..12"),
    ],
)
def test_yaml_a_config_cannot_hold_is_one_config_error_line(override: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"override '.*': not valid YAML: " + problem) as info:
        load_config(None, [override])
    assert "\n" not in str(info.value)


def test_a_syntax_error_in_a_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: 0.1\n\tmomentum: 0.9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: not valid YAML: found character '\\t' that cannot start any token "
        "(line 3, column 1)"
    )


def test_a_file_larger_than_any_config_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * 110_000)  # 1.1 MB
    with pytest.raises(ConfigError, match="over 1 MiB, not a config file"):
        load_config(path)


def test_text_fields_take_overrides_that_look_like_numbers_as_written() -> None:
    """``output_dir=2024`` names a folder; YAML alone would read an integer."""
    cfg = load_config(None, ["train.output_dir=2024", "model.backbone= 1e3 ", "head.type=yes"])
    assert (cfg.train.output_dir, cfg.model.backbone, cfg.head.type) == ("2024", "1e3", "yes")
    assert load_config(None, ["train.seed=7"]).train.seed == 7


def test_a_number_where_a_file_wants_text_asks_for_quotes(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  output_dir: 2024\n")
    with pytest.raises(ConfigError, match=r"train.output_dir: expected a string, got 2024 \(put"):
        load_config(path)
    path.write_text("train:\n  output_dir: '2024'\n")
    assert load_config(path).train.output_dir == "2024"


@pytest.mark.parametrize(("text", "value"), [("010", 10), ("-007", -7), ("0", 0), ("0x10", 16)])
def test_integers_with_a_leading_zero_are_decimal(text: str, value: int) -> None:
    """YAML 1.1 (PyYAML) reads ``010`` as octal 8; YAML 1.2 and every user read ten."""
    assert load_config(None, [f"train.seed={text}"]).train.seed == value
