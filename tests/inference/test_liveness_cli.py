"""``faceforge liveness`` and ``--anti-spoof`` / ``--min-quality`` on the deploy commands."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
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
    report = tmp_path / "live.json"
    argv = ("liveness", lfw_images[0], "--json", report, "--save-crops", tmp_path)
    status, out, _ = run(*argv)
    (record,) = json.loads(report.read_text())["photos"]
    assert record["photo"] == str(lfw_images[0]) and record["error"] is None
    assert 0.0 <= record["liveness"] <= 1.0 and record["live"] == (record["liveness"] >= 0.5)
    assert status == (0 if record["live"] else 1)
    decision = "live" if record["live"] else "SPOOF"
    assert out.splitlines() == [
        f"{lfw_images[0]}: {decision} (liveness {record['liveness']:.4f}, threshold 0.5)",
        f"wrote {report}",
    ]
    crop = read_image(tmp_path / f"{lfw_images[0].stem}_judged.png")
    assert crop.shape == (80, 80, 3)
    # the old bare flag still prints one JSON line per photo, with a deprecation line
    status, out, err = run("liveness", lfw_images[0], "--json")
    assert json.loads(out) == {k: record[k] for k in ("photo", "liveness", "live")}
    assert "'liveness --json' is deprecated, use 'liveness --json FILE'" in err


def test_a_photo_without_a_face_is_said_and_the_others_judged(
    run, lfw_images: list[Path], tmp_path: Path
) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 120, 3), 128, np.uint8))
    report = tmp_path / "live.json"
    status, out, err = run("liveness", blank, lfw_images[0], "--json", report, "--no-progress")
    assert status == 1 and err == f"faceforge liveness: {blank}: no face found\n"
    failed, judged = json.loads(report.read_text())["photos"]
    assert failed == {"photo": str(blank), "liveness": None, "live": None,
                      "error": f"{blank}: no face found"}  # fmt: skip
    assert judged["photo"] == str(lfw_images[0]) and judged["error"] is None
    assert out.startswith(f"{lfw_images[0]}: ")


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
