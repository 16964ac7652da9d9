"""``faceforge inspect MODEL``: checkpoints, ONNX files and other projects' weights told apart
and described, with the backbones a weights file fits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from faceforge import __version__
from faceforge.cli import main
from faceforge.config import load_config
from faceforge.core.checkpoint import Checkpoint
from faceforge.core.model_report import TRIED_SIZES, describe_model_file, is_model_file
from faceforge.core.preprocess import Preprocess
from faceforge.errors import CheckpointError
from faceforge.models import build_backbone
from faceforge.models.registry import BACKBONES
from tests.core.foreign_layouts import sphereface_mobilefacenet_keys


def _mobilefacenet(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone("mobilefacenet", embedding_size=32, **kwargs).eval()


def test_a_checkpoint_is_described_without_reading_its_head(tmp_path: Path) -> None:
    """Model, contract, step and the size of every part; the head is measured, never read
    or checked, so a damaged one does not stop the report (``load`` would refuse it)."""
    cfg = load_config(None, ["model.embedding_size=32", "train.max_steps=50"])
    backbone = _mobilefacenet().state_dict()
    head = {"weight": torch.ones(1000, 32)}
    Checkpoint(
        config=cfg, backbone=backbone, head=head, step=7, metrics={"lfw": {"accuracy": 0.9912}}
    ).save(tmp_path / "last.pt")
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    payload["head"]["weight"][0, 0] = 2.0
    torch.save(payload, tmp_path / "last.pt")
    lines = describe_model_file(tmp_path / "last.pt")
    assert lines[0].endswith(f"faceforge checkpoint, format 2, written by faceforge {__version__}")
    assert lines[1] == (
        "model: mobilefacenet, 32-d; input 112x112 RGB, mean [0.5, 0.5, 0.5], "
        "std [0.5, 0.5, 0.5], template arcface"
    )
    assert lines[2] == "training: step 7 of 50, head arcface"
    megabytes = sum(t.numel() * t.element_size() for t in backbone.values()) / 2**20
    assert f"backbone {len(backbone)} tensors, {megabytes:,.1f} MB" in lines[3]
    assert "head 1 tensors, 0.1 MB" in lines[3] and "optimizer" not in lines[3]
    assert lines[4:] == ["metrics:", "  lfw: accuracy 99.12 %"]
    with pytest.raises(CheckpointError, match="corrupt"):
        Checkpoint.load(tmp_path / "last.pt")


def test_an_onnx_model_says_where_it_comes_from(tmp_path: Path) -> None:
    from faceforge.inference.export import export_onnx

    export_onnx(_mobilefacenet(), Preprocess(), tmp_path / "m.onnx", backbone_name="mobilefacenet")
    lines = describe_model_file(tmp_path / "m.onnx")
    assert "ONNX model exported by faceforge from mobilefacenet" in lines[0]
    assert lines[1].startswith("model: 32-d; input 112x112 RGB")


def test_foreign_weights_name_the_backbones_they_fit(tmp_path: Path) -> None:
    """insightface's names fit IResNet-18 as they are; a SphereFace-style MobileFaceNet with
    its own key names fits MobileFaceNet at 112x96 only (its GDC kernel is 7x6)."""
    torch.save(build_backbone("iresnet18").state_dict(), tmp_path / "backbone.pth")
    lines = describe_model_file(tmp_path / "backbone.pth")
    assert "weights of another project" in lines[0] and "no preprocessing recorded" in lines[0]
    assert lines[2:] == ["  iresnet18 at 112x112, 512-d"]
    casia = sphereface_mobilefacenet_keys(_mobilefacenet(input_size=(112, 96)).state_dict())
    torch.save({"epoch": 68, "net_state_dict": casia}, tmp_path / "068.ckpt")
    assert describe_model_file(tmp_path / "068.ckpt")[2:] == ["  mobilefacenet at 112x96, 32-d"]
    torch.save({"w": torch.zeros(3, 3), "b": torch.zeros(3)}, tmp_path / "other.pth")
    assert "fits no faceforge backbone" in describe_model_file(tmp_path / "other.pth")[1]


@pytest.mark.parametrize("name", BACKBONES.names())
def test_the_input_size_changes_shapes_never_the_number_of_weights(name: str) -> None:
    """What the report relies on to try a backbone's other input sizes only when the first
    has as many weights as the file."""
    counts = set()
    for input_size in TRIED_SIZES:
        with torch.device("meta"):
            counts.add(len(build_backbone(name, input_size=input_size).state_dict()))
    assert len(counts) == 1


def test_weights_are_matched_without_loading_the_compiler(tmp_path: Path) -> None:
    """Backbones built on the meta device skip their initialisation: PyTorch's meta
    ``normal_`` imports ``torch._dynamo``, which more than doubled ``faceforge inspect``'s
    time (10 s against 5 s for an IResNet-18 file on a 2-core AVX2 CPU)."""
    torch.save(build_backbone("iresnet18").state_dict(), tmp_path / "backbone.pth")
    script = (
        "import sys; from faceforge.core.model_report import describe_model_file; "
        f"lines = describe_model_file({str(tmp_path / 'backbone.pth')!r}); "
        "assert lines[2:] == ['  iresnet18 at 112x112, 512-d'], lines; "
        "assert 'torch._dynamo' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_inspect_takes_model_files_and_datasets(tmp_path: Path, capsys) -> None:
    torch.save(build_backbone("iresnet18").state_dict(), tmp_path / "backbone.pth")
    assert is_model_file(tmp_path / "backbone.pth") and not is_model_file(tmp_path)
    assert main(["inspect", str(tmp_path / "missing.onnx")]) != 0
    err = capsys.readouterr().err
    assert "ONNX model" in err and "does not exist" in err
    assert main(["inspect", str(tmp_path / "backbone.pth")]) == 0
    assert "iresnet18 at 112x112, 512-d" in capsys.readouterr().out
    (tmp_path / "broken.pt").write_bytes(b"not a model")
    assert main(["inspect", str(tmp_path / "broken.pt")]) != 0
    assert "cannot load" in capsys.readouterr().err
