"""Published IR-SE and MobileFaceNet weights in their own layouts (TreB1eN's
InsightFace_Pytorch, AdaFace) through ``faceforge import`` without user Python: the
imported checkpoint embeds as the network the file came from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from foreign_layouts import (
    IRNetwork,
    TreB1eNMobileFaceNet,
    assert_embeds_like,
    lightning_checkpoint,
    randomised_statistics,
)

from faceforge.cli import main
from faceforge.core.foreign_weights import match_state_dict
from faceforge.core.model_report import describe_model_file
from faceforge.core.model_source import ModelSource, load_model
from faceforge.errors import CheckpointError

IR_SE_50 = (3, 4, 14, 3)


def test_treb1en_ir_se50_imports_by_its_pretrained_name(tmp_path: Path, capsys) -> None:
    """TreB1eN's IR-SE-50 (no BatchNorm before PReLU, a max-pool shortcut, SE modules
    numbered with the block's layers) is se_iresnet50 with identity layers filled in; the
    report names that backbone for the bare file."""
    torch.manual_seed(3)
    network = randomised_statistics(IRNetwork(IR_SE_50, "treb1en", se=True))
    weights = tmp_path / "model_ir_se50.pth"
    torch.save(network.state_dict(), weights)
    report = describe_model_file(weights)
    assert "IR layout of TreB1eN's InsightFace_Pytorch" in report[1] and "BGR" in report[1]
    assert report[3:] == ["  se_iresnet50 at 112x112, 512-d"]
    argv = ["import", "--pretrained", "se_iresnet50.treb1en_ms1m", str(weights)]
    assert main([*argv, str(tmp_path / "irse.pt")]) == 0
    out, err = capsys.readouterr()
    assert "hash could not be verified" in err and "se_iresnet50, 512-d, 112x112 BGR" in out
    assert_embeds_like(network, tmp_path / "irse.pt")


def test_adaface_ir_se_weights_need_only_their_architecture(tmp_path: Path) -> None:
    """A Lightning checkpoint of AdaFace's IR-SE-50 (its SE module added as ``se_block``)
    is recognised by its keys when given with --arch: no pretrained entry, no key map."""
    torch.manual_seed(4)
    network = randomised_statistics(IRNetwork(IR_SE_50, "adaface", se=True))
    torch.save(lightning_checkpoint(network), tmp_path / "ir_se50.ckpt")
    argv = ["import", "--arch", "se_iresnet50", "--color", "BGR", str(tmp_path / "ir_se50.ckpt")]
    assert main([*argv, str(tmp_path / "irse.pt")]) == 0
    assert_embeds_like(network, tmp_path / "irse.pt")


def test_an_ir_layout_file_for_the_wrong_architecture_names_the_keys_left_over(
    tmp_path: Path,
) -> None:
    torch.manual_seed(5)
    torch.save(IRNetwork(se=True, style="treb1en").state_dict(), tmp_path / "ir_se18.pth")
    with pytest.raises(CheckpointError) as error:
        load_model(ModelSource(tmp_path / "ir_se18.pth", arch="iresnet18"))
    assert "unexpected (layer1.0.se.reduce.weight, layer1.0.se.expand.weight" in str(error.value)


def test_treb1en_mobilefacenet_imports_by_its_pretrained_name(tmp_path: Path) -> None:
    """TreB1eN's MobileFaceNet has faceforge's layers in the same order, but ends in a
    linear layer where faceforge has a 1x1 convolution: the same map."""
    torch.manual_seed(6)
    network = randomised_statistics(TreB1eNMobileFaceNet())
    torch.save(network.state_dict(), tmp_path / "model_mobilefacenet.pth")
    argv = ["import", "--pretrained", "mobilefacenet.treb1en_ms1m"]
    assert main([*argv, str(tmp_path / "model_mobilefacenet.pth"), str(tmp_path / "m.pt")]) == 0
    assert_embeds_like(network, tmp_path / "m.pt")


def test_a_linear_weight_fits_a_1x1_convolution_and_nothing_else_of_its_size() -> None:
    weight = torch.randn(4, 3)
    target = {"fc.weight": torch.zeros(4, 3, 1, 1)}
    matched = match_state_dict({"fc.weight": weight}, target, "tiny")
    assert matched["fc.weight"].shape == (4, 3, 1, 1)
    assert torch.equal(matched["fc.weight"].flatten(1), weight)
    renamed = match_state_dict({"linear.weight": weight}, target, "tiny")  # by order
    assert torch.equal(renamed["fc.weight"].flatten(1), weight)
    for other in (torch.randn(12), torch.randn(3, 4), torch.randn(4, 3, 1)):
        with pytest.raises(CheckpointError, match="wrongly shaped"):
            match_state_dict({"fc.weight": other}, target, "tiny")
