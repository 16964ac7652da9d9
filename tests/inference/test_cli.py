"""The deploy commands end to end on a tiny checkpoint and real photos."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_bombs import DECLARED, forbid_decoding, png_bomb

import faceforge.cli as cli
from faceforge.data.alignment import ARCFACE_TEMPLATE
from faceforge.data.image_io import read_image
from faceforge.data.synthetic import SyntheticFaces
from faceforge.inference.matching.gallery import Gallery
from faceforge.inference.pipeline import FacePipeline


@pytest.fixture()
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, mtcnn):
    """Run ``faceforge <args>`` in-process; returns (exit status, stdout, stderr)."""
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("faceforge.cli.deploy_commands",))

    def invoke(*args: str | Path) -> tuple[int, str, str]:
        status = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return status, out, err

    return invoke


def one_line(err: str) -> str:
    """The only line written to stderr (a user error must not print a traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


SYNTHETIC_WARNING = "warning: the decision threshold was tuned on the demo's synthetic faces"


def test_verify_two_photos(
    run, tiny_checkpoint: Path, lfw_images: list[Path], tmp_path: Path
) -> None:
    status, out, err = run("verify", lfw_images[0], lfw_images[0], "--checkpoint", tiny_checkpoint)
    assert status == 0
    assert "similarity 1.0000: same person" in out
    assert "threshold  0.5000 (best 10-fold threshold on synthetic" in out
    warning = one_line(err)  # the stored threshold comes from the synthetic demo set
    assert warning.startswith(SYNTHETIC_WARNING) and "pass --threshold" in warning
    status, out, err = run(
        "verify",
        lfw_images[0],
        lfw_images[1],
        "--checkpoint",
        tiny_checkpoint,
        "--threshold",
        "0.9999",
    )
    assert status == 0 and "different people" in out and "0.9999 (set explicitly)" in out
    assert err == ""
    status, out, _ = run(
        "verify", *lfw_images[:2], "--checkpoint", tiny_checkpoint, "--json", tmp_path / "v.json"
    )
    similarity = float(out.split()[1].rstrip(":"))
    written = json.loads((tmp_path / "v.json").read_text())
    assert written["similarity"] == pytest.approx(similarity, abs=5e-5)
    assert (written["same"], written["error"]) == (similarity > 0.5, None)
    assert written["image_a"] == str(lfw_images[0]) and written["image_b"] == str(lfw_images[1])
    assert written["threshold"]["cosine"] == 0.5 and written["threshold"]["eval_set"] == "synthetic"
    assert out.endswith(f"wrote {tmp_path / 'v.json'}\n")


@pytest.mark.parametrize("flip", [None, True, False])
def test_verify_flips_by_default_as_the_threshold_was_calibrated(
    run, tiny_checkpoint: Path, lfw_images: list[Path], flip: bool | None
) -> None:
    """Unset, ``--flip`` is the model's recorded ``eval.flip`` (on); ``--no-flip`` turns it off."""
    options = {None: [], True: ["--flip"], False: ["--no-flip"]}[flip]
    status, out, _ = run("verify", *lfw_images[:2], "--checkpoint", tiny_checkpoint, *options)
    reference = FacePipeline.load(tiny_checkpoint, device="cpu", flip=flip is not False)
    expected = reference.verify(lfw_images[0], lfw_images[1]).similarity
    assert status == 0 and out.startswith(f"similarity {expected:.4f}: ")


def test_verify_pairs_file(
    run, tiny_checkpoint: Path, lfw_images: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"garbage")
    pairs = tmp_path / "pairs.csv"
    rows = [("image_a", "image_b"), (lfw_images[0], lfw_images[0]), (broken, lfw_images[1])]
    pairs.write_text("".join(f"{a},{b}\n" for a, b in rows))
    status, out, err = run("verify", "--pair-list", pairs, "--checkpoint", tiny_checkpoint)
    lines = out.strip().splitlines()
    assert lines[0] == "image_a,image_b,similarity,same,error"
    assert lines[1].endswith(",1.0000,1,")
    assert "broken.jpg: not a readable image" in lines[2]
    assert status == 1 and "2 pairs: 1 same, 0 different, 1 failed" in err
    assert "embedding: 100%" in err and "3/3" in err  # a bar over the 3 distinct images
    assert err.count(SYNTHETIC_WARNING) == 1
    options = ("--checkpoint", tiny_checkpoint, "--threshold", "0.5", "--no-progress")
    status, out, err = run("verify", "--pair-list", pairs, *options, "--json", tmp_path / "p.json")
    assert status == 1 and err.splitlines()[0].startswith("2 pairs: 1 same")
    assert err.splitlines()[1:] == [f"wrote {tmp_path / 'p.json'}"]
    assert out.count("\n") == 3  # stdout holds the CSV alone
    written = json.loads((tmp_path / "p.json").read_text())
    good, bad = written["pairs"]
    assert (good["similarity"], good["same"], good["error"]) == (
        pytest.approx(1.0, abs=1e-4),
        True,
        None,
    )
    assert (bad["image_a"], bad["similarity"], bad["same"]) == (str(broken), None, None)
    assert "not a readable image" in bad["error"] and written["threshold"]["cosine"] == 0.5


def test_user_errors_are_one_line_messages(run, tiny_checkpoint: Path, tmp_path: Path) -> None:
    status, _, err = run("verify", tmp_path / "missing.jpg", "--checkpoint", tiny_checkpoint)
    assert status == 2 and "two images, or --pair-list" in err
    status, _, err = run(
        "verify", "--pair-list", tmp_path / "p.csv", tmp_path / "x.jpg", "--checkpoint", "m.pt"
    )
    assert status == 2 and "not both" in err  # the image was silently ignored
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"")
    status, _, err = run(
        "verify", tmp_path / "a.jpg", tmp_path / "b.jpg", "--checkpoint", tmp_path / "none.pt"
    )
    assert status == 2 and "does not exist" in err and "Traceback" not in err


def test_a_bomb_photo_is_one_line_and_the_budget_an_option(
    run, tiny_checkpoint: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    (tmp_path / "bomb.png").write_bytes(png_bomb())
    face = tmp_path / "face.png"
    face.write_bytes(cv2.imencode(".png", np.zeros((112, 112, 3), np.uint8))[1].tobytes())
    forbid_decoding(monkeypatch, png_bomb())
    options = ["--checkpoint", tiny_checkpoint, "--aligned", "--threshold", "0.5"]
    status, _, err = run("verify", tmp_path / "bomb.png", face, *options)
    assert status == 2 and one_line(err) == (
        f"faceforge verify: error: {tmp_path / 'bomb.png'}: the image declares {DECLARED} = "
        "900,000,000 pixels, more than the 67,108,864 allowed; refused before decoding (raise "
        "--max-pixels or data.max_pixels if it is genuine)"
    )
    status, _, err = run("verify", face, face, *options, "--max-pixels", "12543")
    assert status == 2 and "declares 112x112 = 12,544 pixels, more than the 12,543" in err
    status, out, _ = run("verify", face, face, *options, "--max-pixels", "12544")
    assert status == 0 and "same person" in out
    status, _, err = run("verify", face, face, *options, "--max-pixels", "0")
    assert status == 2 and "--max-pixels: must be an integer >= 1, got '0'" in err


def test_verify_names_a_missing_image_before_loading_the_model(
    run, lfw_images: list[Path], tmp_path: Path
) -> None:
    missing = tmp_path / "typo.jpg"
    status, _, err = run("verify", lfw_images[0], missing, "--checkpoint", tmp_path / "no.pt")
    assert status == 2
    assert one_line(err) == f"faceforge verify: error: {missing}: no such image file"


def test_enroll_search_remove(
    run, tiny_checkpoint: Path, lfw_images: list[Path], tmp_path: Path
) -> None:
    people = tmp_path / "people"
    for name, path in (("cook", lfw_images[0]), ("guiel", lfw_images[1])):
        (people / name).mkdir(parents=True)
        shutil.copy(path, people / name)
    (people / "guiel" / "broken.jpg").write_bytes(b"garbage")
    gallery = tmp_path / "gallery"
    status, out, err = run("enroll", people, "--gallery", gallery, "--checkpoint", tiny_checkpoint)
    assert status == 1 and "2 people; added 2 images, skipped 1" in out  # saved, partly failed
    assert "broken.jpg" in err and "enrolling: 100%" in err and "3/3" in err
    assert Gallery.load(gallery).names == ["cook", "guiel"]

    status, out, _ = run(
        "search",
        lfw_images[1],
        "--gallery",
        gallery,
        "--checkpoint",
        tiny_checkpoint,
        "--top-k",
        "2",
    )
    lines = out.splitlines()
    assert status == 0 and lines[0] == f"{lfw_images[1]}: guiel"
    assert lines[1].startswith("  1. guiel  1.0000") and lines[2].startswith("  2. cook")
    status, out, _ = run(
        "search",
        lfw_images[2],
        "--gallery",
        gallery,
        "--checkpoint",
        tiny_checkpoint,
        "--threshold",
        "0.9999",
    )
    assert out.splitlines()[0] == f"{lfw_images[2]}: unknown"
    broken = people / "guiel" / "broken.jpg"  # one bad photo among several: the rest answered
    status, out, err = run(
        "search", lfw_images[1], broken, lfw_images[0], "--gallery", gallery,
        "--checkpoint", tiny_checkpoint, "--top-k", "1", "--no-progress",
    )  # fmt: skip
    answers = [line for line in out.splitlines() if not line.startswith(("  ", "threshold"))]
    assert status == 1 and answers == [f"{lfw_images[1]}: guiel", f"{lfw_images[0]}: cook"]
    assert f"faceforge search: {broken}" in err and "1 of 3 images could not be searched" in err
    status, _, _ = run(
        "search", lfw_images[1], broken, "--gallery", gallery, "--checkpoint", tiny_checkpoint,
        "--top-k", "2", "--no-progress", "--json", tmp_path / "s.json",
    )  # fmt: skip
    found, failed = json.loads((tmp_path / "s.json").read_text())["results"]
    assert found["image"] == str(lfw_images[1]) and found["identity"] == "guiel"
    assert [m["name"] for m in found["matches"]] == ["guiel", "cook"]
    assert found["matches"][0]["score"] == pytest.approx(1.0, abs=1e-4) and found["error"] is None
    assert (failed["identity"], failed["matches"]) == (None, [])
    assert failed["error"].startswith(f"{broken}: not a readable image")

    status, out, err = run(
        "enroll",
        "--gallery",
        gallery,
        "--remove",
        "guiel",
        "--checkpoint",
        tiny_checkpoint,
        "--no-progress",
    )
    assert status == 0 and "removed guiel" in out and err == ""
    assert Gallery.load(gallery).names == ["cook"]


def test_search_refuses_a_top_k_below_one(run, tiny_checkpoint: Path, tmp_path: Path) -> None:
    options = ("--gallery", tmp_path, "--checkpoint", tiny_checkpoint)
    for top_k in ("0", "-2"):
        status, _, err = run("search", tmp_path / "a.jpg", *options, "--top-k", top_k)
        expected = (
            f"faceforge search: error: argument --top-k: must be an integer >= 1, got '{top_k}'"
        )
        assert status == 2 and one_line(err) == expected


def test_a_tampered_gallery_is_one_line(
    run, tiny_checkpoint: Path, lfw_images: list[Path], tmp_path: Path
) -> None:
    gallery = Gallery(32, "fp")
    gallery.add("x", [[1.0] * 32])
    gallery.save(tmp_path / "gallery")
    data_file = next((tmp_path / "gallery").glob("gallery-*.npz"))
    data_file.write_bytes(data_file.read_bytes()[:-1] + b"!")
    options = ("--gallery", tmp_path / "gallery", "--checkpoint", tiny_checkpoint)
    status, _, err = run("search", lfw_images[0], *options)
    assert status == 2 and "the gallery data was modified or corrupted" in one_line(err)
    status, _, err = run("enroll", *options, "--remove", "x")
    assert status == 2 and "enroll the people again" in one_line(err)


def test_gallery_of_another_model_is_refused(
    run, tiny_checkpoint: Path, tmp_path: Path, lfw_images: list[Path]
) -> None:
    gallery = Gallery(32, "some-other-model", model="iresnet50")
    gallery.add("x", [[1.0] * 32])
    gallery.save(tmp_path / "gallery")
    status, _, err = run(
        "search",
        lfw_images[0],
        "--gallery",
        tmp_path / "gallery",
        "--checkpoint",
        tiny_checkpoint,
    )
    assert status == 2 and "was built with model iresnet50" in one_line(err)


def test_export_then_use_the_onnx_model(
    run, tiny_checkpoint: Path, lfw_images: list[Path], tmp_path: Path
) -> None:
    onnx_path = tmp_path / "tiny.onnx"
    status, out, _ = run("export", "--checkpoint", tiny_checkpoint, "--onnx", onnx_path)
    assert status == 0 and f"wrote {onnx_path}" in out and ": OK" in out
    status, out, _ = run("verify", lfw_images[0], lfw_images[0], "--checkpoint", onnx_path)
    assert status == 0 and "similarity 1.0000: same person" in out
    assert "best 10-fold threshold on synthetic" in out  # the metrics travelled with the model
    status, _, err = run("export", "--checkpoint", tiny_checkpoint, "--onnx", onnx_path, "--int8")
    assert status == 2 and "--calibration" in err
    bad = {  # options that did nothing, or failed after the fp32 file was written
        ("--calibration", str(tmp_path)): "--calibration and --int8-output go with --int8",
        ("--int8", "--calibration", str(onnx_path)): "not a folder of aligned faces",
    }
    for extra, message in bad.items():
        status, _, err = run("export", "--checkpoint", tiny_checkpoint, "--onnx", "x.onnx", *extra)
        assert status == 2 and message in err and not Path("x.onnx").exists()
    status, _, err = run(
        "export", "--checkpoint", tiny_checkpoint, "--onnx", "x.onnx", "--opset", "6"
    )
    assert status == 2 and "--opset" in err and "Traceback" not in err


def test_export_to_a_folder_or_below_a_file_is_one_line(
    run, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    status, _, err = run("export", "--checkpoint", tiny_checkpoint, "--onnx", tmp_path)
    assert status == 2 and f"{tmp_path}: is a folder" in one_line(err)
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "model.onnx"
    status, _, err = run("export", "--checkpoint", tiny_checkpoint, "--onnx", target)
    assert status == 2 and one_line(err).startswith("faceforge export: error:")


def test_align_command(run, lfw_images: list[Path], tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "person").mkdir(parents=True)
    shutil.copy(lfw_images[0], src / "person")
    status, out, _ = run("align", src, tmp_path / "dst", "--no-progress")
    assert status == 0 and "aligned 1 images" in out
    assert read_image(tmp_path / "dst" / "person" / lfw_images[0].name).shape == (112, 112, 3)


@pytest.mark.parametrize(
    ("option", "wanted"),
    [
        (("--size", "0"), "an integer in 1..4096"),
        (("--width", "100000"), "an integer in 1..4096"),
        (("--workers", "-2"), "an integer >= 1"),
        (("--min-face-size", "nan"), "a finite number >= 1"),
    ],
)
def test_align_refuses_out_of_range_numbers_before_any_work(
    run, tmp_path: Path, option: tuple[str, str], wanted: str
) -> None:
    status, _, err = run("align", tmp_path, tmp_path / "dst", *option)
    flag, value = option
    assert status == 2
    expected = f"faceforge align: error: argument {flag}: must be {wanted}, got {value!r}"
    assert one_line(err) == expected
    assert not (tmp_path / "dst").exists()


def test_align_into_a_file_is_one_line(run, lfw_images: list[Path], tmp_path: Path) -> None:
    src = tmp_path / "src" / "person"
    src.mkdir(parents=True)
    shutil.copy(lfw_images[0], src)
    (tmp_path / "file").write_text("")
    status, _, err = run("align", tmp_path / "src", tmp_path / "file", "--no-progress")
    assert status == 2 and "file: is a file; give a folder" in one_line(err)
    status, _, err = run("align", tmp_path / "src", tmp_path / "file" / "dst", "--no-progress")
    assert status == 2 and "dst: cannot write there" in one_line(err)


def test_verify_with_scrfd_on_real_photos(
    run, tiny_checkpoint: Path, lfw_images: list[Path], scrfd_model: Path
) -> None:
    detector = f"scrfd:{scrfd_model}"
    options = ("--checkpoint", tiny_checkpoint, "--detector", detector, "--device", "cpu")
    status, out, _ = run("verify", lfw_images[0], lfw_images[0], *options)
    assert status == 0 and "similarity 1.0000: same person" in out
    status, out, _ = run("verify", lfw_images[0], lfw_images[1], *options)
    pipeline = FacePipeline.load(tiny_checkpoint, detector=detector, device="cpu", flip=True)
    expected = pipeline.verify(lfw_images[0], lfw_images[1]).similarity
    assert status == 0 and out.startswith(f"similarity {expected:.4f}: ")


def test_align_with_scrfd_puts_the_landmarks_on_the_template(
    run, mtcnn, lfw_images: list[Path], scrfd_model: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "people").mkdir(parents=True)
    for path in lfw_images[:2]:
        shutil.copy(path, src / "people")
    detector = f"scrfd:{scrfd_model}"
    status, out, _ = run("align", src, tmp_path / "dst", "--detector", detector, "--no-progress")
    assert status == 0 and "aligned 2 images" in out
    for path in lfw_images[:2]:
        crop = read_image(tmp_path / "dst" / "people" / path.name)
        assert crop.shape == (112, 112, 3)
        # an independent detector finds the face's points near the ArcFace template (a
        # similarity transform fits five points of a turned head only roughly: the nose most)
        distances = np.linalg.norm(mtcnn.detect(crop)[0].landmarks - ARCFACE_TEMPLATE, axis=1)
        assert distances.mean() < 4 and distances.max() < 8, (path, distances)


def test_mtcnn_weights_means_a_mtcnn_spec(
    run, tiny_checkpoint: Path, lfw_images: list[Path], mtcnn_folder: Path, tmp_path: Path
) -> None:
    weights = mtcnn_folder
    image = lfw_images[0]
    status, out, _ = run(
        "verify", image, image, "--checkpoint", tiny_checkpoint, "--mtcnn-weights", weights
    )
    assert status == 0 and "same person" in out
    status, out, _ = run(
        "verify", image, image, "--checkpoint", tiny_checkpoint, "--detector", f"mtcnn:{weights}"
    )
    assert status == 0 and "same person" in out
    status, _, err = run(
        "verify", image, image, "--checkpoint", tiny_checkpoint, "--mtcnn-weights", tmp_path
    )
    assert status == 2 and "MTCNN weights" in err and "not found" in err
    both = ("--mtcnn-weights", weights, "--detector", "scrfd:x.onnx")
    status, _, err = run("align", tmp_path, tmp_path / "out", *both)
    assert status == 2 and "cannot be combined with --detector scrfd:x.onnx" in err


def test_bad_detector_specs_are_one_line_errors(
    run, tiny_checkpoint: Path, lfw_images: list[Path], tmp_path: Path
) -> None:
    images = (lfw_images[0], lfw_images[1], "--checkpoint", tiny_checkpoint)
    status, _, err = run("verify", *images, "--detector", "retinaface")
    assert status == 2
    assert "unknown detector --detector='retinaface'; valid choices: mtcnn, scrfd" in err
    status, _, err = run("verify", *images, "--detector", "scrfd")
    assert status == 2 and "write scrfd:PATH.onnx" in err
    status, _, err = run("verify", *images, "--detector", f"scrfd:{tmp_path / 'none.onnx'}")
    assert status == 2 and "none.onnx' does not exist" in err
    status, _, err = run("align", tmp_path, tmp_path / "out", "--detector", "dlib")
    assert status == 2 and "valid choices: mtcnn, scrfd" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("verify", ["mtcnn:DIR", "scrfd:PATH.onnx", "best, central, largest (default best)"]),
        ("verify", ["center-crop, letterbox, stretch", "auto, bf16, fp16, fp32, int8"]),
        (
            "enroll",
            [
                "--detector SPEC",
                "flat, hnsw, ivf, pq (default flat; an existing gallery",
                "mean, all",
            ],
        ),
        ("search", ["--detector SPEC", "mtcnn:DIR"]),
        ("align", ["best, central, largest, skip", "center-crop, letterbox, skip, stretch"]),
        ("align", ["--detector SPEC", "scrfd:PATH.onnx"]),
    ],
)
def test_help_shows_the_registered_choices(
    run, capsys: pytest.CaptureFixture, command: str, shown: list[str]
) -> None:
    with pytest.raises(SystemExit):
        run(command, "--help")
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps long lines
    for choice in shown:
        assert choice in text


def test_an_interrupted_enrollment_keeps_who_is_done_and_continues(
    run, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    people, gallery = tmp_path / "people", tmp_path / "gallery"
    faces = SyntheticFaces(3)
    for k, name in enumerate(("ann", "bob", "cid")):
        (people / name).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(people / name / f"{i}.png"), faces.render(k, i)[..., ::-1])
    embed = FacePipeline.try_embed

    def ctrl_c_while_embedding(self, images, progress=None):
        signal.raise_signal(signal.SIGINT)
        return embed(self, images, progress)

    monkeypatch.setattr(FacePipeline, "try_embed", ctrl_c_while_embedding)
    options = ["--gallery", gallery, "--checkpoint", tiny_checkpoint, "--aligned", "--no-progress"]
    status, out, err = run("enroll", people, *options)
    assert status == 128 + signal.SIGINT
    assert f"interrupted after 1 of 3 people, who are saved in {gallery}" in err
    assert "1 people; added 2 images" in out and Gallery.load(gallery).names == ["ann"]

    monkeypatch.setattr(FacePipeline, "try_embed", embed)
    status, out, err = run("enroll", people, *options, "--skip-enrolled")
    assert status == 0 and "3 people; added 4 images, skipped 0, kept 1 people already" in out
    assert "enrolled before" not in err
    enrolled = Gallery.load(gallery)
    assert [enrolled.num_images(name) for name in enrolled.names] == [2, 2, 2]  # none twice
    status, out, err = run("enroll", people / ".." / "people", *options)  # again, by mistake
    assert status == 0 and "3 of these people were enrolled before" in err
    assert Gallery.load(gallery).num_images("ann") == 4
