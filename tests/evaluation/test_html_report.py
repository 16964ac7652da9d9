"""``eval --report``: the self-contained HTML page, its numbers against the ROC, its figures
decodable as PNGs, and the hardest errors it picks."""

from __future__ import annotations

import base64
import re

import cv2
import numpy as np
import pytest

from faceforge.cli import main
from faceforge.data.verification_set import VerificationSet
from faceforge.evaluation.bin_format import write_bin
from faceforge.evaluation.html_report import far_table, hardest_pairs, write_html_report
from faceforge.evaluation.verification import FAR_TARGETS, evaluate


@pytest.fixture(scope="module")
def scored() -> tuple:
    """400 pairs of 16-d embeddings: same pairs closer, with overlap."""
    rng = np.random.default_rng(0)
    issame = np.arange(400) % 2 == 0
    a = rng.normal(size=(400, 16))
    b = np.where(issame[:, None], a + 1.2 * rng.normal(size=a.shape), rng.normal(size=a.shape))
    return evaluate(a, b, issame), issame


def test_far_table_matches_the_operating_points_and_the_json(scored) -> None:
    result, issame = scored
    distances = result.distances
    measurable = [row for row in far_table(result) if row.target * (~issame).sum() >= 1]
    assert len(measurable) == 2  # 1e-1 and 1e-2 of 200 different pairs
    for row in measurable:
        accepted = distances < row.threshold
        far = np.count_nonzero(accepted & ~issame) / np.count_nonzero(~issame)
        tar = np.count_nonzero(accepted & issame) / np.count_nonzero(issame)
        assert far == row.far <= row.target
        assert tar == row.tar == result.tar_at_far[row.target]
        assert row.threshold == result.far_thresholds[row.target]  # the JSON's number
    assert [row.target for row in far_table(result)] == list(FAR_TARGETS)


def test_a_set_of_one_kind_of_pair_shows_no_numbers_it_cannot_have(tmp_path) -> None:
    """With same pairs only, FAR is undefined: the table showed TAR 0.00 where the JSON
    says null."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 8))
    result = evaluate(a, a + 0.1 * rng.normal(size=a.shape), np.ones(20, bool))
    rows = far_table(result)
    assert all(np.isnan([row.tar, row.threshold, row.far]).all() for row in rows)


def test_hardest_pairs_are_the_extreme_distances(scored) -> None:
    result, issame = scored
    accepts, rejects = hardest_pairs(result, issame, count=5)
    distances = result.distances
    assert not issame[accepts].any() and issame[rejects].all()
    assert distances[accepts].tolist() == sorted(distances[~issame])[:5]
    assert distances[rejects].tolist() == sorted(distances[issame], reverse=True)[:5]


def embedded_images(page: str) -> list[np.ndarray]:
    """Every inlined image, decoded (a PNG that does not decode fails the test)."""
    images = []
    for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page):
        raw = base64.b64decode(data, validate=True)
        assert raw.startswith(b"\x89PNG\r\n\x1a\n")
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.size > 0
        images.append(image)
    return images


def test_page_holds_every_section_and_image(scored, tmp_path) -> None:
    result, issame = scored
    images = np.random.default_rng(1).integers(0, 256, (2 * len(issame), 112, 112, 3), np.uint8)
    vset = VerificationSet("toy", images, issame)
    name = "toy_$x^$"  # a .bin named so: a $ pair drawn as a formula failed every figure
    path = write_html_report(tmp_path / "out", {name: result}, {name: vset}, {"flip": True})
    page = path.read_text()
    assert path.name == "report.html" and "<script" not in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from elsewhere
    headings = ("ROC and DET", "TAR and threshold at each FAR", "accuracy per fold",
                "hardest false accepts", "hardest false rejects")  # fmt: skip
    assert all(heading in page for heading in headings)
    decoded = embedded_images(page)
    assert len(decoded) == 2 + 2 + 2 * 8  # ROC, DET; histogram, folds; 8 + 8 thumbnails
    first = hardest_pairs(result, issame)[0][0]  # the two faces of a pair side by side
    np.testing.assert_array_equal(
        decoded[4][:, :, ::-1], np.hstack(images[2 * first : 2 * first + 2])
    )
    shown = np.concatenate(hardest_pairs(result, issame))
    wrong = (result.distances[shown] < result.best_threshold) != issame[shown]
    assert page.count('<figcaption class="wrong">') == np.count_nonzero(wrong) > 0
    assert f"{100 * result.accuracy:.2f} &plusmn;" in page


def test_eval_writes_the_report(tiny_checkpoint, tmp_path, capsys) -> None:
    rng = np.random.default_rng(2)
    issame = np.arange(20) % 2 == 0
    images = rng.integers(0, 256, (40, 112, 112, 3), np.uint8)
    write_bin(tmp_path / "toy.bin", VerificationSet("toy", images, issame), ext=".png")
    argv = ["eval", "--checkpoint", str(tiny_checkpoint), "--bin", str(tmp_path / "toy.bin")]
    assert main([*argv, "--folds", "2", "--no-progress", "--report", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "<h2>toy</h2>" in page and len(embedded_images(page)) == 2 + 2 + 8 + 8
    assert f"wrote {tmp_path / 'rep' / 'report.html'}" in capsys.readouterr().out


def test_report_folder_is_checked_before_any_work(tmp_path, capsys) -> None:
    (tmp_path / "taken").write_text("")
    argv = ["eval", "--checkpoint", str(tmp_path / "none.pt"), "--synthetic"]
    assert main([*argv, "--report", str(tmp_path / "taken")]) == 2
    assert f"--report: {tmp_path / 'taken'}: is a file" in capsys.readouterr().err
