"""The pretrained registry: every entry loads into a registered backbone with a usable
contract; published hashes are checked, missing ones said; ``faceforge models`` lists all."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import pytest
import torch

from faceforge.cli import main
from faceforge.core.model_source import ModelSource, load_model
from faceforge.core.pretrained import PRETRAINED, file_sha256, pretrained_weights, verify_file
from faceforge.core.weight_adapters import WEIGHT_ADAPTERS
from faceforge.errors import CheckpointError, UnknownChoiceError
from faceforge.models import backbone_names, build_backbone
from tests.models.reference_states import facenet_state


@pytest.mark.parametrize("name", PRETRAINED.names())
def test_every_entry_is_complete_and_loadable(name: str) -> None:
    entry = pretrained_weights(name)
    assert entry.name == name and name.split(".")[0] == entry.arch
    assert entry.arch in backbone_names()
    entry.preprocess.check(name)
    assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
    assert entry.adapter is None or entry.adapter in WEIGHT_ADAPTERS
    assert entry.licence and entry.source.startswith("https://") and entry.file
    assert entry.accuracy and all(50 < value <= 100 for value in entry.accuracy.values())


@pytest.mark.parametrize("project", [".adaface_", ".treb1en_"])
def test_models_trained_on_bgr_record_their_bgr_input(project: str) -> None:
    """AdaFace's and TreB1eN's pipelines fed their networks BGR images."""
    names = [n for n in PRETRAINED.names() if project in n]
    assert names and all(pretrained_weights(n).preprocess.color == "BGR" for n in names)
    assert pretrained_weights("iresnet50.ms1mv3_arcface").preprocess.color == "RGB"


def test_hashes_are_verified_or_reported_unverifiable(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(b"published bytes" * 100_000)  # more than one read chunk
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_sha256(path) == digest
    entry = dataclasses.replace(pretrained_weights("iresnet50.ms1mv3_arcface"), sha256=digest)
    verify_file(entry, path)
    path.write_bytes(b"another release")
    with pytest.raises(CheckpointError, match=f"not the published .* expected {digest}"):
        verify_file(entry, path)
    with pytest.warns(UserWarning, match="hash could not be verified .*ms1mv3_arcface_r50_fp16"):
        verify_file(dataclasses.replace(entry, sha256=None), path)
    with pytest.raises(CheckpointError, match="does not exist; get ms1mv3_arcface_r50_fp16"):
        verify_file(entry, tmp_path / "missing.pth")
    with pytest.raises(UnknownChoiceError, match="--pretrained='r50'; valid choices: inception"):
        pretrained_weights("r50")


def test_models_lists_backbones_and_pretrained_entries(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in backbone_names() + PRETRAINED.names():
        assert f"  {name} " in out or f"  {name}\n" in out, name
    assert "112x96 RGB; LFW 99.3" in out and "sha256 checked" in out
    # a description that wraps in the docstring is printed whole on its line
    assert "8 heads, lower stochastic depth and masking rates (0.05).\n" in out


def test_facenet_entries_record_facenet_pytorchs_contract() -> None:
    for name in ("inception_resnet_v1.vggface2", "inception_resnet_v1.casia_webface"):
        contract = pretrained_weights(name).preprocess
        assert contract.input_size == (160, 160) and contract.color == "RGB"
        assert contract.template == "facenet"
        # fixed_image_standardization: (x - 127.5) / 128 for every pixel value x
        pixels = torch.arange(256, dtype=torch.uint8).expand(1, 3, 1, 256)
        expected = (torch.arange(256.0) - 127.5) / 128
        torch.testing.assert_close(contract.apply(pixels)[0, :, 0], expected.expand(3, 256))
    assert pretrained_weights("inception_resnet_v1.vggface2").accuracy == {"LFW": 99.65}


def test_facenet_file_loads_with_its_logits_dropped(tmp_path: Path) -> None:
    """A file in facenet-pytorch's published layout (with its CASIA 10,575-way logits) loads
    through the entry and embeds as the same state without logits."""
    state = facenet_state(seed=1)
    published = state | {
        "logits.weight": torch.randn(10_575, 512),
        "logits.bias": torch.zeros(10_575),
    }
    path = tmp_path / "20180408-102900-casia-webface.pt"
    torch.save(published, path)
    with pytest.warns(UserWarning, match="hash could not be verified"):
        loaded = load_model(ModelSource(path, pretrained="inception_resnet_v1.casia_webface"))
    reference = build_backbone("inception_resnet_v1").eval()
    reference.load_state_dict(state, strict=True)
    x = torch.rand(2, 3, 160, 160) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.backbone(x), reference(x), rtol=0, atol=0)
    assert loaded.preprocess.template == "facenet"
    with pytest.raises(CheckpointError, match="not the published inception_resnet_v1.vggface2"):
        load_model(ModelSource(path, pretrained="inception_resnet_v1.vggface2"))
