"""Recipes are checked at load time: every named choice against its registry, the device."""

from __future__ import annotations

import pytest

from faceforge.cli import main
from faceforge.config import builtin_config_path
from faceforge.errors import ConfigError, UnknownChoiceError
from faceforge.train.recipe import CHOICES, load_recipe

SHIPPED = sorted(p.stem for p in builtin_config_path("quickstart").parent.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_recipe_names_valid_choices(name: str) -> None:
    load_recipe(name)


@pytest.mark.parametrize("name", list(CHOICES))
def test_an_unknown_choice_names_the_field_and_the_valid_choices(name: str) -> None:
    registry = CHOICES[name]
    with pytest.raises(UnknownChoiceError) as error:
        load_recipe("quickstart", [f"{name}=nonsense"])
    message = str(error.value)
    assert f"{name}='nonsense'" in message
    assert f"valid choices: {', '.join(registry.names())}" in message


def test_a_typo_in_data_source_fails_before_anything_is_built() -> None:
    with pytest.raises(
        ConfigError, match=r"data.source='foldr' \(did you mean folder\?\); valid choices: folder,"
    ):
        load_recipe(None, ["data.source=foldr"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=0", "train.batch_size=0: must be >= 1"),
        ("optim.lr=-1", "optim.lr=-1.0: must be > 0"),
        ("model.embedding_size=0", "model.embedding_size=0: must be >= 1"),
        ("data.image_size=50", "data.image_size=50: must be 112"),
        ("augment.hflip=2.0", "augment.hflip=2.0: must be a probability"),
        ("data.synthetic.num_identities=1", "num_identities=1: must be >= 2"),
        ("head.margin=2.0", "head.margin for arcface"),
        ("loss.focal_gamma=-1", "loss.focal_gamma must be >= 0"),
        ("train.collective_timeout_minutes=0", "collective_timeout_minutes=0.0: must be > 0"),
        ("train.seed=-1", "train.seed=-1: must be >= 0"),  # crashed in numpy after a save
        ("optim.power=-1", "optim.power=-1.0: must be > 0"),  # ZeroDivisionError at the end
        ("optim.milestones=[0.9, 0.5]", "must be increasing fractions in"),
        ("loss.center_lr=-1", "loss.center_lr=-1.0: must be > 0"),
    ],
)
def test_out_of_range_values_fail_at_load(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_recipe("quickstart", [override])


def test_a_folder_given_as_config_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="is a folder, not a YAML file"):
        load_recipe(tmp_path)


def test_device_and_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        load_recipe(None, ["train.device=gpu"])
    assert load_recipe(None, ["optim.lr=5e-4"]).optim.lr == 5e-4
    assert main(["train", "model.backbone=resnet5000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("faceforge train: error: unknown backbone model.backbone='resnet5000'")
    assert len(err.splitlines()) == 1


def test_center_loss_needs_sgd() -> None:
    """AdamW moves each center about its learning rate (0.5) whatever the gradient: one
    step took a center to 0.5 instead of 0.0033 toward a feature at 0.01."""
    with pytest.raises(ConfigError, match="loss.center_weight=0.005 needs optim.name=sgd"):
        load_recipe("quickstart", ["optim.name=adamw", "loss.center_weight=0.005"])
    assert load_recipe("quickstart", ["loss.center_weight=0.005"]).optim.name == "sgd"


@pytest.mark.parametrize("loss", ["loss.focal_gamma=2", "loss.triplet_weight=0.1"])
def test_partial_fc_refuses_loss_terms_it_cannot_weigh(loss: str) -> None:
    """Partial FC sums the backbone's gradients over processes: a per-process triplet term
    would count once per GPU."""
    with pytest.raises(
        ConfigError, match=rf"head.partial_fc trains with plain cross-entropy; set {loss}"
    ):
        load_recipe("quickstart", ["head.partial_fc=true", loss])
