"""The deploy commands end to end on a tiny checkpoint and real photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import faceforge.cli as cli
from faceforge.data.image_io import read_image
from faceforge.inference.matching.gallery import Gallery


@pytest.fixture()
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, mtcnn):
    """Run ``faceforge <args>`` in-process; returns (exit status, stdout, stderr)."""
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("faceforge.cli.deploy_commands",))

    def invoke(*args: str | Path) -> tuple[int, str, str]:
        status = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return status, out, err

    return invoke


def test_verify_two_photos(run, tiny_checkpoint: Path, lfw_images: list[Path]) -> None:
    status, out, _ = run("verify", lfw_images[0], lfw_images[0], "--checkpoint", tiny_checkpoint)
    assert status == 0
    assert "similarity 1.0000: same person" in out
    assert "threshold  0.5000 (best 10-fold threshold on synthetic" in out
    status, out, _ = run(
        "verify",
        lfw_images[0],
        lfw_images[1],
        "--checkpoint",
        tiny_checkpoint,
        "--threshold",
        "0.9999",
    )
    assert status == 0 and "different people" in out and "0.9999 (set explicitly)" in out


def test_verify_pairs_file(
    run, tiny_checkpoint: Path, lfw_images: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"garbage")
    pairs = tmp_path / "pairs.csv"
    rows = [("image_a", "image_b"), (lfw_images[0], lfw_images[0]), (broken, lfw_images[1])]
    pairs.write_text("".join(f"{a},{b}\n" for a, b in rows))
    status, out, err = run("verify", "--pairs", pairs, "--checkpoint", tiny_checkpoint)
    lines = out.strip().splitlines()
    assert lines[0] == "image_a,image_b,similarity,same,error"
    assert lines[1].endswith(",1.0000,1,")
    assert "broken.jpg: not a readable image" in lines[2]
    assert status == 1 and "2 pairs: 1 same, 0 different, 1 failed" in err


def test_user_errors_are_one_line_messages(run, tiny_checkpoint: Path, tmp_path: Path) -> None:
    status, _, err = run("verify", tmp_path / "missing.jpg", "--checkpoint", tiny_checkpoint)
    assert status == 2 and "two images, or --pairs" in err
    status, _, err = run(
        "verify", tmp_path / "a.jpg", tmp_path / "b.jpg", "--checkpoint", tmp_path / "none.pt"
    )
    assert status == 2 and "does not exist" in err and "Traceback" not in err


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
    assert status == 0 and "2 people; added 2 images, skipped 1" in out
    assert "broken.jpg" in err
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

    status, out, _ = run(
        "enroll", "--gallery", gallery, "--remove", "guiel", "--checkpoint", tiny_checkpoint
    )
    assert status == 0 and "removed guiel" in out
    assert Gallery.load(gallery).names == ["cook"]


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
    assert status == 2 and "built with model iresnet50" in err


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


def test_align_command(run, lfw_images: list[Path], tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "person").mkdir(parents=True)
    shutil.copy(lfw_images[0], src / "person")
    status, out, _ = run("align", src, tmp_path / "dst", "--no-progress")
    assert status == 0 and "aligned 1 images" in out
    assert read_image(tmp_path / "dst" / "person" / lfw_images[0].name).shape == (112, 112, 3)
