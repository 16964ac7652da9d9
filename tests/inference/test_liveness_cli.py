"""``faceforge liveness`` and ``--anti-spoof`` / ``--min-quality`` on the deploy commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import faceforge.cli as cli
from faceforge.data.image_io import read_image


@pytest.fixture()
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, mtcnn):
    modules = ("faceforge.cli.deploy_commands", "faceforge.cli.liveness_commands")
    modules += ("faceforge.cli.eval_commands",)
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", modules)

    def invoke(*args: str | Path) -> tuple[int, str, str]:
        status = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return status, out, err

    return invoke


def test_liveness_json_and_judged_crop(run, lfw_images: list[Path], tmp_path: Path) -> None:
    status, out, _ = run("liveness", lfw_images[0], "--json", "--save-crops", tmp_path)
    record = json.loads(out)
    assert record["photo"] == str(lfw_images[0])
    assert 0.0 <= record["liveness"] <= 1.0 and record["live"] == (record["liveness"] >= 0.5)
    assert status == (0 if record["live"] else 1)
    crop = read_image(tmp_path / f"{lfw_images[0].stem}_judged.png")
    assert crop.shape == (80, 80, 3)


def test_strict_threshold_calls_everything_a_spoof(run, lfw_images: list[Path]) -> None:
    status, out, _ = run("liveness", lfw_images[1], "--liveness-threshold", "1")
    assert status == 1 and "SPOOF (liveness" in out


def test_verify_refuses_a_spoof_with_its_score(
    run, tiny_checkpoint: Path, lfw_images: list[Path]
) -> None:
    args = ("verify", lfw_images[0], lfw_images[1], "--checkpoint", tiny_checkpoint)
    status, out, err = run(*args, "--threshold", "0.5", "--anti-spoof")
    assert status == 0 and "similarity" in out
    status, _, err = run(*args, "--threshold", "0.5", "--anti-spoof", "--liveness-threshold", "1")
    assert status == 2 and "refused as a presentation attack (liveness" in err
    assert len(err.strip().splitlines()) == 1


def test_enroll_min_quality_leaves_out_poor_faces(
    run, tiny_checkpoint: Path, lfw_images: list[Path], tmp_path: Path
) -> None:
    person = tmp_path / "people" / "someone"
    person.mkdir(parents=True)
    (person / "a.jpg").write_bytes(lfw_images[0].read_bytes())
    gallery = tmp_path / "gallery"
    common = ("enroll", tmp_path / "people", "--gallery", gallery, "--checkpoint", tiny_checkpoint)
    _, _, err = run(*common, "--min-quality", "1", "--no-progress")
    assert "face quality" in err


def test_eval_quality_plots_the_error_versus_reject_curve(
    run, tiny_checkpoint: Path, lfw_images: list[Path], tmp_path: Path
) -> None:
    a, b, c, d = lfw_images
    rows = [f"{a}\t{a}\t1", f"{b}\t{b}\t1", f"{a}\t{c}\t0", f"{b}\t{d}\t0"]
    (tmp_path / "pairs.tsv").write_text("\n".join(rows) + "\n")
    plot = tmp_path / "erc.png"
    args = ("eval", "--quality", "--pair-list", tmp_path / "pairs.tsv", "--plot", plot)
    status, out, _ = run(*args, "--checkpoint", tiny_checkpoint, "--threshold", "0.5")
    assert status == 0 and out.startswith("4 of 4 pairs usable (2 same)")
    assert "\nrejected  FNMR\n" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"
