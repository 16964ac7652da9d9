"""``faceforge eval`` (verification and ``eval megaface``) and ``pack-bin`` end to end on tiny
inputs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from faceforge.cli import main
from faceforge.config import load_config
from faceforge.core.checkpoint import Checkpoint
from faceforge.core.model_source import load_model
from faceforge.core.precision import PRECISIONS
from faceforge.data.images import RESIZE_MODES
from faceforge.data.synthetic import SyntheticFaces, synthetic_verification_set
from faceforge.data.verification_set import VerificationSet
from faceforge.evaluation.bin_format import write_bin
from faceforge.evaluation.identification import megaface
from faceforge.evaluation.run import evaluate_model
from faceforge.models import build_backbone

OVERRIDES = [
    "model.embedding_size=32",
    "data.synthetic.val_identities=10",
    "data.synthetic.val_pairs=20",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random-init MobileFaceNet checkpoint whose stored metrics come from evaluate_model,
    as the trainer stores them."""
    torch.manual_seed(0)
    cfg = load_config(None, OVERRIDES)
    model = build_backbone("mobilefacenet", embedding_size=32).eval()
    recorded = evaluate_model(model, synthetic_verification_set(cfg.data.synthetic), batch_size=128)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    metrics = {"synthetic": recorded.to_dict()}
    Checkpoint(config=cfg, backbone=model.state_dict(), metrics=metrics).save(path)
    return path, recorded


def test_eval_reproduces_the_recorded_synthetic_accuracy(checkpoint, capsys, tmp_path):
    path, recorded = checkpoint
    out = tmp_path / "r.json"
    argv = ["eval", "--checkpoint", str(path), "--synthetic", "--no-progress", "--json", str(out)]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip().splitlines()[-2]
    acc = f"{100 * recorded.accuracy:.4f}"
    assert line.startswith(f"synthetic average acc: {acc} +- ")
    assert line.endswith(f"(checkpoint recorded {acc})")
    assert json.loads(out.read_text())["sets"]["synthetic"]["accuracy"] == recorded.accuracy


def test_eval_bin_and_pairs_with_json_and_roc(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    full = synthetic_verification_set(load_config(None, OVERRIDES).data.synthetic)
    vset = VerificationSet("toy", full.images[:16], full.issame[:8])
    write_bin(tmp_path / "toy.bin", vset, ext=".png")
    images = tmp_path / "images"
    lines = []
    for i in range(4):  # an LFW-style folder from the first pairs
        for j, name in enumerate((f"P{i}a", f"P{i}b")):
            (images / name).mkdir(parents=True)
            write_path = images / name / f"{name}_0001.png"
            cv2.imwrite(str(write_path), vset.images[2 * i + j][:, :, ::-1])
        lines.append(f"P{i}a\t1\tP{i}b\t1")
    (tmp_path / "pairs.txt").write_text("4\n" + "\n".join(lines) + "\n")
    argv = [
        "eval",
        "--checkpoint",
        str(path),
        "--bin",
        str(tmp_path / "toy.bin"),
        "--pairs",
        str(tmp_path / "pairs.txt"),
        "--images",
        str(images),
        "--folds",
        "2",
        "--precision",
        "fp32",
        "--no-progress",
        "--json",
        str(tmp_path / "r.json"),
        "--roc",
        str(tmp_path / "roc.png"),
    ]
    assert main(argv) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data["sets"]) == {"toy", "pairs"}
    loaded = load_model(path)
    expected = evaluate_model(loaded.backbone, vset, precision="fp32", folds=2)
    assert data["sets"]["toy"]["accuracy"] == expected.accuracy
    assert data["sets"]["pairs"]["num_pairs"] == 4
    assert data["meta"]["precision"] == "fp32"
    assert (tmp_path / "roc.png").stat().st_size > 0
    captured = capsys.readouterr()
    assert "toy average acc:" in captured.out
    # every pair of the pairs.txt is 'different': its folds hold one class, which is reported
    stored = [w for name in ("toy", "pairs") for w in data["sets"][name]["warnings"]]
    assert "2 of 2 folds hold only" in data["sets"]["pairs"]["warnings"][0]
    assert captured.err.splitlines() == [f"warning: {w}" for w in stored]


def test_eval_reports_missing_files_before_any_work(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    (tmp_path / "pairs.csv").write_text("a.jpg,b.jpg,1\n")
    argv = [
        "eval",
        "--checkpoint",
        str(path),
        "--bin",
        str(tmp_path / "lfw.bin"),
        str(tmp_path / "cfp.bin"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "lfw.bin" in err and "cfp.bin" in err
    assert (
        main(["eval", "--checkpoint", str(path), "--pair-list", str(tmp_path / "pairs.csv")]) == 2
    )
    assert "a.jpg" in capsys.readouterr().err
    # --images belongs to --pairs: with only a pair list it would be ignored, so it is refused
    argv = ["eval", "--checkpoint", str(path), "--pair-list", str(tmp_path / "pairs.csv")]
    assert main([*argv, "--images", str(tmp_path)]) == 2
    assert "the paths of --pair-list start from --root DIR" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(path)]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_unwritable_outputs_fail_before_any_work(tmp_path, capsys):
    """The checkpoint does not exist: reaching it would be another error."""
    (tmp_path / "file").write_text("")
    eval_args = ["eval", "--checkpoint", str(tmp_path / "none.pt"), "--synthetic"]
    cases = [
        (["--json", str(tmp_path)], f"argument --json: {tmp_path}: is a folder"),
        (["--json", str(tmp_path / "file" / "r.json")], "r.json: cannot write there"),
        (["--roc", str(tmp_path / "file" / "roc.png")], "roc.png: cannot write there"),
        (["--roc", str(tmp_path / "roc.txt")], "roc.txt: expected a file name ending in"),
    ]
    for extra, message in cases:
        assert main(eval_args + extra) == 2
        assert message in one_line(capsys.readouterr().err)
    pair_list = ["--pair-list", str(tmp_path / "none.csv")]
    assert main(["pack-bin", str(tmp_path), *pair_list]) == 2
    assert f"argument output: {tmp_path}: is a folder" in one_line(capsys.readouterr().err)
    assert main(["pack-bin", str(tmp_path / "x.bin"), *pair_list, "--size", "0"]) == 2
    assert "--size: must be an integer in 1..4096, got '0'" in one_line(capsys.readouterr().err)
    bench = ["eval", "megaface", "--json", str(tmp_path / "file" / "m.json")]
    assert main(bench) == 2
    assert "m.json: cannot write there" in one_line(capsys.readouterr().err)


def test_identify_bench_with_embeddings(tmp_path, capsys):
    rng = np.random.default_rng(0)
    probes = np.repeat(rng.normal(size=(6, 16)), 3, 0) + 0.5 * rng.normal(size=(18, 16))
    labels = np.repeat(np.arange(6), 3)
    distractors = rng.normal(size=(500, 16)).astype(np.float32)
    for name, array in [("p.npy", probes), ("l.npy", labels), ("d.npy", distractors)]:
        np.save(tmp_path / name, array)
    argv = [
        "eval",
        "megaface",
        "--probe-embeddings",
        str(tmp_path / "p.npy"),
        "--probe-labels",
        str(tmp_path / "l.npy"),
        "--distractor-embeddings",
        str(tmp_path / "d.npy"),
        "--json",
        str(tmp_path / "m.json"),
    ]
    assert main(argv) == 0
    expected = megaface(probes, labels, distractors).to_dict()
    assert json.loads((tmp_path / "m.json").read_text()) == json.loads(json.dumps(expected))
    assert "18 probes of 6 identities, 500 distractors" in capsys.readouterr().out


def test_identify_bench_with_synthetic_faces(checkpoint, capsys):
    path, _ = checkpoint
    argv = [
        "eval",
        "megaface",
        "--checkpoint",
        str(path),
        "--distractors",
        "20",
        "--identities",
        "3",
        "--images-per-identity",
        "2",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "6 probes of 3 identities, 20 distractors, 6 searches" in capsys.readouterr().out


def test_the_folds_of_a_pairs_file_header_are_the_default(tmp_path, capsys) -> None:
    """``faceforge pairs --folds 2 --per-fold 2`` writes ``2 2``: eval cuts 2 folds of 4 pairs
    (10 folds would each hold one class), and pack-bin says to evaluate its .bin so."""
    from tests.model_helpers import primed_model, write_checkpoint

    rng = np.random.default_rng(0)
    names = ["Ann_Lee", "Bo_Chen", "Cy_Dee", "Di_Eng"]
    for name in names:
        (tmp_path / "lfw" / name).mkdir(parents=True)
        for n in (1, 2):
            image = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
            cv2.imwrite(str(tmp_path / "lfw" / name / f"{name}_{n:04d}.png"), image)
    fold = [f"{names[0]} 1 2", f"{names[1]} 1 2", f"{names[0]} 1 {names[1]} 2"]
    fold += [f"{names[1]} 1 {names[0]} 2"]
    other = [line.replace(names[0], names[2]).replace(names[1], names[3]) for line in fold]
    (tmp_path / "pairs.txt").write_text("2 2\n" + "\n".join(fold + other) + "\n")
    model = write_checkpoint(tmp_path / "m.pt", primed_model())
    argv = ["eval", "--checkpoint", str(model), "--pairs", str(tmp_path / "pairs.txt")]
    argv += ["--images", str(tmp_path / "lfw"), "--no-progress", "--json", str(tmp_path / "r.json")]
    assert main(argv) == 0
    written = json.loads((tmp_path / "r.json").read_text())
    assert len(written["sets"]["pairs"]["fold_accuracies"]) == 2
    assert written["meta"]["folds"] == {"pairs": 2}
    assert written["meta"]["runtime"].startswith("torch on cpu, ")
    assert "folds hold only" not in capsys.readouterr().err
    assert main([*argv, "--folds", "4"]) == 0  # --folds wins
    assert (
        len(json.loads((tmp_path / "r.json").read_text())["sets"]["pairs"]["fold_accuracies"]) == 4
    )
    capsys.readouterr()
    pack = ["pack-bin", str(tmp_path / "p.bin"), *argv[3:7], "--no-progress"]
    assert main(pack) == 0
    assert capsys.readouterr().out.endswith(
        "its pairs are in 2 folds: evaluate it with --folds 2\n"
    )


def test_pack_bin_from_lfw_pairs_round_trips(tmp_path) -> None:
    from faceforge.evaluation.bin_format import load_bin

    rng = np.random.default_rng(0)
    images = {}
    for name in ("Ann_Lee", "Bo_Chen"):
        (tmp_path / "lfw" / name).mkdir(parents=True)
        for n in (1, 2):
            img = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
            images[(name, n)] = img
            cv2.imwrite(str(tmp_path / "lfw" / name / f"{name}_{n:04d}.png"), img[:, :, ::-1])
    (tmp_path / "pairs.txt").write_text("2\nAnn_Lee 1 2\nAnn_Lee 2 Bo_Chen 1\n")
    out = tmp_path / "mini.bin"
    code = main(
        [
            "pack-bin",
            str(out),
            "--pairs",
            str(tmp_path / "pairs.txt"),
            "--images",
            str(tmp_path / "lfw"),
            "--ext",
            ".png",
        ]
    )
    assert code == 0
    vset = load_bin(out)
    assert vset.issame.tolist() == [True, False]
    expected = [("Ann_Lee", 1), ("Ann_Lee", 2), ("Ann_Lee", 2), ("Bo_Chen", 1)]
    for got, key in zip(vset.images, expected, strict=True):
        assert np.array_equal(got, images[key])


def test_pack_bin_reports_missing_images(tmp_path, capsys) -> None:
    (tmp_path / "lfw").mkdir()
    (tmp_path / "pairs.txt").write_text("Nobody_Here 1 2\n")
    code = main(
        [
            "pack-bin",
            str(tmp_path / "x.bin"),
            "--pairs",
            str(tmp_path / "pairs.txt"),
            "--images",
            str(tmp_path / "lfw"),
        ]
    )
    assert code == 2
    assert "Nobody_Here" in capsys.readouterr().err
    assert not (tmp_path / "x.bin").exists()


@pytest.mark.parametrize("command", ["eval verification", "pack-bin", "eval megaface"])
def test_choices_come_from_the_registries(command, capsys) -> None:
    with pytest.raises(SystemExit):
        main([*command.split(), "--help"])
    text = " ".join(capsys.readouterr().out.split())
    if command != "eval megaface":
        assert "--resize MODE fit images" in text and ", ".join(RESIZE_MODES.names()) in text
    if command != "pack-bin":
        assert "--precision NAME" in text and ", ".join(PRECISIONS.names()) in text


def test_unknown_resize_mode_is_refused_before_any_work(checkpoint, capsys) -> None:
    path, _ = checkpoint
    assert main(["eval", "--checkpoint", str(path), "--synthetic", "--resize", "zoom"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("faceforge eval: error: argument --resize: invalid choice: 'zoom'")
    assert err.count("\n") == 1  # one line, no usage block


def test_pack_bin_from_a_tsv_pair_list_with_header(tmp_path, capsys) -> None:
    from faceforge.evaluation.bin_format import load_bin

    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (3, 112, 112, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        cv2.imwrite(str(tmp_path / f"{i}.png"), image[:, :, ::-1])
    (tmp_path / "pairs.tsv").write_text("img_a\timg_b\tsame\n0.png\t1.png\t0\n2.png\t2.png\t1\n")
    out = tmp_path / "list.bin"
    argv = ["pack-bin", str(out), "--pair-list", str(tmp_path / "pairs.tsv"), "--ext", ".png"]
    assert main(argv) == 0
    assert "pairs: 100%|██████████| 4/4" in capsys.readouterr().err  # decoding progress
    vset = load_bin(out)
    assert vset.issame.tolist() == [False, True]
    np.testing.assert_array_equal(vset.images, images[[0, 1, 2, 2]])
    assert main([*argv, "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    # --shuffle-pairs packs the pairs in PairList.shuffled's fixed order, images with them
    rows = [(0, 1, 0), (2, 2, 1), (1, 2, 0), (0, 0, 1), (1, 1, 1)]
    (tmp_path / "five.csv").write_text("".join(f"{a}.png,{b}.png,{same}\n" for a, b, same in rows))
    order = np.random.default_rng(0).permutation(len(rows))
    assert order.tolist() != sorted(order.tolist())
    argv = ["pack-bin", str(out), "--pair-list", str(tmp_path / "five.csv"), "--ext", ".png"]
    assert main([*argv, "--no-progress", "--shuffle-pairs"]) == 0
    packed = load_bin(out)
    assert packed.issame.tolist() == [bool(rows[i][2]) for i in order]
    expected = [images[rows[i][side]] for i in order for side in (0, 1)]
    np.testing.assert_array_equal(packed.images, np.stack(expected))


def test_eval_max_pixels_refuses_a_large_pair_list_image_by_name(checkpoint, tmp_path, capsys):
    """``eval --max-pixels`` is the budget of the pair-list photos: a 112x112 photo over a
    10,000-pixel budget is refused before decoding, in one line naming it."""
    path, _ = checkpoint
    face = np.zeros((112, 112, 3), np.uint8)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), face)
    (tmp_path / "pairs.csv").write_text("a.png,b.png,1\na.png,b.png,0\n")
    argv = ["eval", "--checkpoint", str(path), "--pair-list", str(tmp_path / "pairs.csv")]
    argv += ["--root", str(tmp_path), "--max-pixels", "10000", "--folds", "2"]
    assert main(argv) == 2  # bad input, as for every other refused file
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "a.png" in errors[0] and "12,544 pixels" in errors[0]


#: synthetic faces (identity, photo) MTCNN finds on a 160x160 canvas; same / different rows
ALIGN_PAIRS = [
    ((0, 0), (0, 1)), ((0, 0), (3, 0)), ((0, 1), (0, 2)), ((1, 1), (2, 2)),
    ((3, 0), (3, 1)), ((4, 2), (7, 0)), ((3, 1), (3, 2)), ((8, 1), (9, 2)),
    ((8, 1), (8, 2)), ((0, 2), (10, 1)), ((10, 1), (10, 2)), ((3, 2), (8, 2)),
]  # fmt: skip


def test_eval_align_detects_the_faces_of_raw_photos(tmp_path, capsys):
    from faceforge.core.embedder import load_embedder
    from faceforge.evaluation.pairs import read_pair_list
    from faceforge.evaluation.run import evaluate_embedder
    from faceforge.inference.detection.registry import build_detector
    from faceforge.inference.pipeline import FacePipeline
    from tests.model_helpers import primed_model, write_checkpoint

    faces = SyntheticFaces(0)
    for identity, photo in {face for pair in ALIGN_PAIRS for face in pair}:
        canvas = np.full((160, 160, 3), 90, np.uint8)  # a photo, not a face crop
        canvas[20:132, 30:142] = faces.render(identity, photo)
        cv2.imwrite(str(tmp_path / f"{identity}_{photo}.png"), canvas[..., ::-1])
    names = [[f"{i}_{k}.png" for i, k in pair] for pair in ALIGN_PAIRS]
    rows = [f"{a},{b},{int(a[0] == b[0])}" for a, b in names]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    model = write_checkpoint(tmp_path / "m.pt", primed_model())
    argv = ["eval", "--checkpoint", str(model), "--pair-list", str(tmp_path / "pairs.csv")]
    argv += ["--folds", "3", "--precision", "fp32", "--no-progress"]
    assert main(argv) == 2
    assert "160x160 but the model expects 112x112" in capsys.readouterr().err
    assert main([*argv, "--align", "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())["sets"]["pairs"]

    embedder = load_embedder(model, device="cpu", precision="fp32", flip=True)
    pairs = read_pair_list(tmp_path / "pairs.csv")
    files, index = pairs.unique()  # detected together, as eval does (MTCNN's float sums and
    # so its near-tie candidates shift slightly with the batch: landmarks up to 1.5 px)
    crops = FacePipeline(embedder, build_detector("mtcnn", "cpu")).align_batch(files)[index]
    vset = VerificationSet("pairs", crops, pairs.issame)
    expected = evaluate_embedder(embedder, vset, folds=3)
    assert result["accuracy"] == pytest.approx(expected.accuracy, abs=1e-9)
    assert result["auc"] == pytest.approx(expected.auc, abs=1e-6)
    write_bin(tmp_path / "x.bin", VerificationSet("x", crops[:4], pairs.issame[:2]))
    assert main([*argv[:3], "--bin", str(tmp_path / "x.bin"), "--align"]) == 2
    assert "--align detects faces in the photos of --pairs" in capsys.readouterr().err
    # a photo where the detector finds no face names the option that embeds it anyway
    cv2.imwrite(str(tmp_path / "0_0.png"), np.full((160, 160, 3), 90, np.uint8))
    assert main([*argv, "--align"]) == 2
    assert capsys.readouterr().err.endswith(
        f"{tmp_path / '0_0.png'}: no face found; --resize center-crop embeds the middle of "
        "the photos where the detector finds none\n"
    )
    assert main([*argv, "--align", "--resize", "center-crop"]) == 0
