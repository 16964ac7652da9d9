"""One way to name a model: checkpoint, backbone.pth + --arch, ONNX and imported checkpoints
give the same accuracy in ``eval`` and the same embeddings through ``load_embedder``;
``create_model`` is the same loading path."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from faceforge.cli import main
from faceforge.core.checkpoint import Checkpoint
from faceforge.core.embedder import load_embedder
from faceforge.core.model_source import ModelSource, create_model, import_weights, load_model
from faceforge.core.preprocess import Preprocess
from faceforge.data.synthetic import SyntheticFaces
from faceforge.errors import CheckpointError
from faceforge.inference.export import export_checkpoint
from tests.model_helpers import primed_model, write_checkpoint, write_lfw_folder


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """One model saved as a checkpoint, a backbone.pth, an ONNX file and an imported
    checkpoint, as the ``--checkpoint ...`` arguments that name each."""
    root = tmp_path_factory.mktemp("sources")
    model = primed_model()
    checkpoint = write_checkpoint(root / "model.pt", model)
    torch.save(model.state_dict(), root / "backbone.pth")
    export_checkpoint(checkpoint, root / "model.onnx")
    pth = ["--checkpoint", str(root / "backbone.pth"), "--arch", "mobilefacenet"]
    pth += ["--embedding-size", "32"]
    assert main(["import", *pth[2:], str(root / "backbone.pth"), str(root / "imported.pt")]) == 0
    return {
        "checkpoint": ["--checkpoint", str(checkpoint)],
        "backbone.pth": pth,
        "onnx": ["--checkpoint", str(root / "model.onnx")],
        "imported": ["--checkpoint", str(root / "imported.pt")],
    }


def _accuracy(argv: list[str], pairs: Path, images: Path, out: Path) -> dict:
    common = ["--pairs", str(pairs), "--images", str(images), "--folds", "5", "--no-progress"]
    assert main(["eval", *argv, *common, "--precision", "fp32", "--json", str(out)]) == 0
    return json.loads(out.read_text())["sets"]["pairs"]


def test_eval_gives_the_same_accuracy_for_every_model_source(sources, tmp_path) -> None:
    pairs, images = write_lfw_folder(tmp_path)
    results = {
        name: _accuracy(argv, pairs, images, tmp_path / f"{name}.json")
        for name, argv in sources.items()
    }
    reference = results["checkpoint"]
    assert 0.0 < reference["accuracy"] <= 1.0
    for name, result in results.items():
        assert result["accuracy"] == reference["accuracy"], name
        assert result["best_threshold"] == pytest.approx(reference["best_threshold"], abs=1e-3)


def test_every_source_embeds_alike(sources) -> None:
    faces = np.stack([SyntheticFaces(5).render(i, 0) for i in range(6)])
    embedded = {}
    for name, argv in sources.items():
        arch = argv[argv.index("--arch") + 1] if "--arch" in argv else None
        source = ModelSource(argv[1], arch, 32)
        embedder = load_embedder(source, device="cpu", precision="fp32")
        embedded[name] = embedder.embed(faces)
    np.testing.assert_array_equal(embedded["backbone.pth"], embedded["checkpoint"])
    np.testing.assert_array_equal(embedded["imported"], embedded["checkpoint"])
    np.testing.assert_allclose(embedded["onnx"], embedded["checkpoint"], atol=1e-5)


def test_import_keeps_the_given_contract(tmp_path) -> None:
    torch.save(primed_model().state_dict(), tmp_path / "backbone.pth")
    argv = ["import", "--arch", "mobilefacenet", "--embedding-size", "32", "--color", "BGR"]
    argv += ["--mean", "0.4", "0.5", "0.6", "--std", "0.25", "0.25", "0.25"]
    assert main([*argv, str(tmp_path / "backbone.pth"), str(tmp_path / "out.pt")]) == 0
    ckpt = Checkpoint.load(tmp_path / "out.pt")
    assert ckpt.preprocess == Preprocess(color="BGR", mean=(0.4, 0.5, 0.6), std=(0.25,) * 3)
    assert (ckpt.config.model.backbone, ckpt.config.model.embedding_size) == ("mobilefacenet", 32)


def test_source_kinds_and_errors(tmp_path, capsys) -> None:
    assert ModelSource(Path("m.ONNX")).kind == "onnx"
    assert ModelSource(Path("b.pth"), arch="iresnet50").kind == "weights"
    assert ModelSource(Path("b.pth"), pretrained="iresnet50.ms1mv3_arcface").kind == "pretrained"
    assert ModelSource(Path("m.pt")).kind == "checkpoint"
    with pytest.raises(CheckpointError, match="ONNX model has no PyTorch backbone"):
        load_model(ModelSource(tmp_path / "m.onnx"))
    with pytest.raises(CheckpointError, match="needs the architecture"):
        import_weights(ModelSource(tmp_path / "m.pt"), tmp_path / "out.pt")
    with pytest.raises(CheckpointError, match="either the pretrained name or the architecture"):
        ModelSource(Path("b.pth"), "iresnet50", pretrained="iresnet50.ms1mv3_arcface")
    torch.save(primed_model().state_dict(), tmp_path / "backbone.pth")
    yuv = ModelSource(tmp_path / "backbone.pth", "mobilefacenet", 32, Preprocess(color="YUV"))
    with pytest.raises(CheckpointError, match="unknown colour order"):
        import_weights(yuv, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
    argv = ["eval", "--checkpoint", "m.pt", "--color", "BGR", "--synthetic"]
    assert main(argv) == 2
    assert "--color describe a weights file and need --arch" in capsys.readouterr().err
    argv = ["eval", "--checkpoint", "m.pt", "--pretrained", "iresnet50.ms1mv3_arcface"]
    assert main([*argv, "--arch", "iresnet50", "--synthetic"]) == 2
    assert "brings its own architecture and preprocessing; drop --arch" in capsys.readouterr().err


def test_export_takes_a_backbone_pth(tmp_path, capsys) -> None:
    torch.save(primed_model().state_dict(), tmp_path / "backbone.pth")
    argv = ["export", "--checkpoint", str(tmp_path / "backbone.pth"), "--arch", "mobilefacenet"]
    assert main([*argv, "--embedding-size", "32", "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert "OK" in capsys.readouterr().out
    assert load_embedder(tmp_path / "m.onnx").embedding_size == 32


def _identity_folders(root: Path, identities: range, index: int) -> Path:
    faces = SyntheticFaces(9)
    for identity in identities:
        (root / f"id{identity}").mkdir(parents=True)
        cv2.imwrite(str(root / f"id{identity}" / "a.png"), faces.render(identity, index)[..., ::-1])
    return root


def test_identify_prints_cmc_and_open_set_rates(sources, tmp_path, capsys) -> None:
    gallery = _identity_folders(tmp_path / "gallery", range(6), 0)
    probes = _identity_folders(tmp_path / "probes", range(8), 1)  # id6, id7 not enrolled
    model = sources["checkpoint"] + ["--aligned", "--precision", "fp32"]
    out, plot = tmp_path / "id.json", tmp_path / "cmc.png"
    argv = ["eval", "identify", *model, "--gallery", str(gallery), "--probes", str(probes)]
    assert main([*argv, "--json", str(out), "--plot", str(plot)]) == 0
    result = json.loads(out.read_text())
    assert (result["num_mated"], result["num_non_mated"]) == (6, 2)
    assert plot.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "rank-1" in printed
    assert "note: 2 non-mated probes cannot resolve FPIR=0.1 (it needs 10)" in printed

    embedder = load_embedder(sources["checkpoint"][1], device="cpu", precision="fp32", flip=True)
    faces = SyntheticFaces(9)
    enrolled = embedder.embed(np.stack([faces.render(i, 0) for i in range(6)]))
    searched = embedder.embed(np.stack([faces.render(i, 1) for i in range(6)]))
    rank_of_mate = [1 + int((row > row[i]).sum()) for i, row in enumerate(searched @ enrolled.T)]
    for k in (1, 5, 10):
        assert result["cmc"][str(k)] == pytest.approx(np.mean(np.array(rank_of_mate) <= k))

    enrolled_dir = tmp_path / "enrolled"
    assert main(["enroll", str(gallery), "--gallery", str(enrolled_dir), *model]) == 0
    argv = ["eval", "identify", *model, "--gallery", str(enrolled_dir), "--probes", str(probes)]
    assert main([*argv, "--json", str(tmp_path / "enrolled.json")]) == 0
    assert json.loads((tmp_path / "enrolled.json").read_text()) == result


def test_megaface_hides_probe_photos_among_distractor_photos(sources, tmp_path, capsys) -> None:
    probes = _identity_folders(tmp_path / "probes", range(3), 0)
    _identity_folders(tmp_path / "probes", range(3, 4), 0)  # one photo: impostor only
    for identity in range(3):
        face = SyntheticFaces(9).render(identity, 1)[..., ::-1]
        cv2.imwrite(str(probes / f"id{identity}" / "b.png"), face)
    distractors = _identity_folders(tmp_path / "distractors" / "nested", range(10, 15), 0)
    (distractors / "broken.jpg").write_bytes(b"not a jpeg")
    model = sources["checkpoint"] + ["--aligned", "--precision", "fp32", "--no-progress"]
    saved, out = tmp_path / "embeddings", tmp_path / "m.json"
    photos = ["--probes", str(probes), "--distractor-images", str(tmp_path / "distractors")]
    argv = ["eval", "megaface", *model, *photos, "--save-embeddings", str(saved)]
    assert main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr()
    assert f"warning: {distractors / 'broken.jpg'}: not a readable image" in printed.err
    assert printed.err.count("broken.jpg") == 1
    assert "7 probes of 4 identities, 5 distractors, 6 searches" in printed.out
    assert "note: 35 impostor pairs cannot resolve FAR=1e-06 (it needs 1000000)" in printed.out
    result = json.loads(out.read_text())

    embedder = load_embedder(sources["checkpoint"][1], device="cpu", precision="fp32", flip=True)
    faces = SyntheticFaces(9)
    labels = np.load(saved / "probe_labels.npy")
    assert sorted(labels) == ["id0", "id0", "id1", "id1", "id2", "id2", "id3"]
    rendered = [
        faces.render(int(name[2:]), k) for name, k in zip(labels, [0, 1] * 3 + [0], strict=True)
    ]
    np.testing.assert_allclose(
        np.load(saved / "probes.npy"), embedder.embed(np.stack(rendered)), atol=1e-5
    )
    expected = embedder.embed(np.stack([faces.render(i, 0) for i in range(10, 15)]))
    np.testing.assert_allclose(np.load(saved / "distractors.npy"), expected, atol=1e-5)

    again = ["--probe-embeddings", str(saved / "probes.npy"), "--probe-labels"]
    again += [str(saved / "probe_labels.npy"), "--distractor-embeddings"]
    again += [str(saved / "distractors.npy"), "--json", str(tmp_path / "again.json")]
    assert main(["eval", "megaface", *again]) == 0
    assert json.loads((tmp_path / "again.json").read_text()) == result
    assert main(["eval", "megaface", *model, "--probes", str(probes)]) == 2
    assert "need both --probes DIR and --distractor-images DIR" in capsys.readouterr().err


def test_create_model_is_the_one_loading_path(sources, tmp_path) -> None:
    pth = sources["backbone.pth"][1]
    fresh = create_model("mobilefacenet", embedding_size=32, input_size=(112, 96))
    assert fresh.training and fresh.gdc[0].kernel_size == (7, 6)
    loaded = create_model("mobilefacenet", pth, embedding_size=32)
    reference = load_model(sources["checkpoint"][1]).backbone
    assert not loaded.training
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(CheckpointError, match="downloads nothing: get ms1mv3_arcface_r50"):
        create_model("iresnet50.ms1mv3_arcface")
