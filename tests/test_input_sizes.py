"""112x112 and SphereFace-style 112x96 inputs: backbones, template, training, export, eval."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from model_helpers import TINY_CLI

from faceforge.cli import main
from faceforge.config import load_config
from faceforge.core.checkpoint import Checkpoint
from faceforge.core.embedder import load_embedder
from faceforge.core.preprocess import Preprocess
from faceforge.data.alignment import ARCFACE_TEMPLATE, norm_crop, template_points
from faceforge.data.synthetic import SyntheticFaces
from faceforge.errors import ConfigError
from faceforge.models import build_backbone
from faceforge.train.main import fit, setup

NARROW = (112, 96)


@pytest.mark.parametrize(
    "size, final_map", [((112, 112), (7, 7)), (NARROW, (7, 6))], ids=["112x112", "112x96"]
)
@pytest.mark.parametrize("name", ["mobilefacenet", "iresnet18"])
def test_the_embedding_layer_follows_the_final_feature_map(name, size, final_map) -> None:
    model = build_backbone(name, embedding_size=16, input_size=size).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, *size)).shape == (2, 16)
    state = model.state_dict()
    if name == "mobilefacenet":
        assert state["gdc.0.weight"].shape == (512, 1, *final_map)
    else:
        assert state["fc.weight"].shape == (16, 512 * final_map[0] * final_map[1])


def test_the_default_input_size_keeps_the_112x112_shapes() -> None:
    square = build_backbone("mobilefacenet").state_dict()
    explicit = build_backbone("mobilefacenet", input_size=(112, 112)).state_dict()
    assert {k: v.shape for k, v in square.items()} == {k: v.shape for k, v in explicit.items()}
    with pytest.raises(ConfigError, match="positive"):
        build_backbone("iresnet18", input_size=(0, 96))


def test_the_112x96_template_is_the_arcface_one_shifted_8_pixels_left() -> None:
    np.testing.assert_allclose(template_points(NARROW), ARCFACE_TEMPLATE - [8.0, 0.0])
    face = SyntheticFaces(1).render(0, 0)
    crop = norm_crop(face, ARCFACE_TEMPLATE, NARROW)  # landmarks already at the template
    np.testing.assert_array_equal(crop[:, 2:-2], face[:, 10:-10])


def narrow_config(tmp_path: Path):
    return load_config(
        None,
        [
            "data.image_width=96",
            "data.synthetic.num_identities=4",
            "data.synthetic.val_identities=4",
            "data.synthetic.val_pairs=20",
            *TINY_CLI,
            "train.max_steps=2",
            f"train.output_dir={tmp_path}",
        ],
    )


def test_a_112x96_mobilefacenet_trains_exports_and_evaluates(tmp_path: Path) -> None:
    run, state = setup(narrow_config(tmp_path / "run"), log=lambda _: None)
    assert run.preprocess.input_size == NARROW
    assert run.dataset[0][0].shape == (3, *NARROW)  # the centre 96 columns of each image
    assert fit(run, state).steps == 2
    ckpt = tmp_path / "run" / "last.pt"
    assert Checkpoint.load(ckpt).preprocess == Preprocess(input_size=NARROW)

    onnx = tmp_path / "narrow.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(onnx)]) == 0
    faces = np.stack([SyntheticFaces(2).render(i, 0)[:, 8:104] for i in range(4)])
    torch_embedder = load_embedder(ckpt, device="cpu", precision="fp32")
    onnx_embedder = load_embedder(onnx)
    assert onnx_embedder.input_size == NARROW
    np.testing.assert_allclose(onnx_embedder.embed(faces), torch_embedder.embed(faces), atol=1e-5)

    pairs, folder = _narrow_lfw(tmp_path)
    accuracies = []
    for model in (ckpt, onnx):
        out = tmp_path / f"{model.suffix[1:]}.json"
        argv = ["eval", "--checkpoint", str(model), "--pairs", str(pairs), "--images"]
        argv += [str(folder), "--folds", "2", "--precision", "fp32", "--no-progress"]
        argv += ["--json", str(out)]
        assert main(argv) == 0
        accuracies.append(json.loads(out.read_text())["sets"]["pairs"]["accuracy"])
    assert accuracies[0] == accuracies[1]
    synthetic = ["eval", "--checkpoint", str(ckpt), "--synthetic", "--no-progress"]
    assert main([*synthetic, "--resize", "center-crop"]) == 0  # 112x112 renders, centre 96


def _narrow_lfw(root: Path) -> tuple[Path, Path]:
    """Four identities of 112x96 crops and their LFW pairs.txt."""
    faces, folder = SyntheticFaces(4), root / "aligned"
    for identity in range(4):
        (folder / f"P{identity}").mkdir(parents=True)
        for number in (1, 2):
            crop = faces.render(identity, number)[:, 8:104, ::-1]
            cv2.imwrite(str(folder / f"P{identity}" / f"P{identity}_{number:04d}.png"), crop)
    lines = [f"P{i}\t1\t2" for i in range(4)] + [f"P{i}\t1\tP{(i + 1) % 4}\t2" for i in range(4)]
    (root / "pairs.txt").write_text("1\t4\n" + "\n".join(lines) + "\n")
    return root / "pairs.txt", folder


def test_image_width_is_checked_by_the_recipe(tmp_path: Path) -> None:
    from faceforge.train.recipe import check_config

    with pytest.raises(ConfigError, match="image_width"):
        check_config(load_config(None, ["data.image_width=100"]))


def test_training_at_112x96_evaluates_on_the_square_synthetic_pairs(tmp_path: Path) -> None:
    """The held-out pairs are rendered at 112x112; training evaluation centre-crops them
    exactly as the training images are, and load_model rebuilds the 112x96 model."""
    from faceforge.core.model_source import load_model

    vset = SyntheticFaces(5).verification_set(num_identities=10, num_pairs=20)
    summary = fit(*setup(narrow_config(tmp_path), log=lambda _: None), [vset])
    assert 0.0 <= summary.results["synthetic"].accuracy <= 1.0
    loaded = load_model(tmp_path / "last.pt")
    assert tuple(loaded.preprocess.input_size) == (112, 96)
    with torch.no_grad():
        assert loaded.backbone(torch.zeros(1, 3, 112, 96)).shape == (1, 16)


def test_images_stored_at_112x96_are_not_stretched() -> None:
    from faceforge.data.dataset import FaceDataset
    from faceforge.data.transforms import Compose

    class Stored:
        labels = np.zeros(2, np.int64)
        num_classes = 1

        def __len__(self) -> int:
            return 2

        def load(self, index: int) -> np.ndarray:
            size = (112, 96) if index == 0 else (112, 112)
            return np.arange(size[0] * size[1] * 3, dtype=np.uint8).reshape(*size, 3)

    dataset = FaceDataset(Stored(), Compose(()), input_size=(112, 96))
    narrow, square = dataset[0][0], dataset[1][0]
    assert torch.equal(narrow, torch.from_numpy(Stored().load(0).transpose(2, 0, 1).copy()))
    centre = Stored().load(1)[:, 8:104].transpose(2, 0, 1)
    assert torch.equal(square, torch.from_numpy(np.ascontiguousarray(centre)))
