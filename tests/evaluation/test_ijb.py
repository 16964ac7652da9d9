"""IJB-B/C: the IJB_release layout, template pooling, TAR@FAR and 1:N, checked against an
independent loop-by-loop reimplementation (ijb_reference.py) and by hand."""

from __future__ import annotations

import json
import tracemalloc
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceforge.cli import main
from faceforge.core.embedder import load_embedder
from faceforge.data.alignment import ARCFACE_TEMPLATE
from faceforge.errors import DataError
from faceforge.evaluation import ijb, ijb_layout
from faceforge.evaluation.ijb import (
    FAR_TARGETS,
    FPIR_TARGETS,
    RANKS,
    identify_templates,
    tar_at_far,
    verify_templates,
)
from faceforge.evaluation.ijb_layout import read_ijb
from tests.evaluation import ijb_reference as reference
from tests.model_helpers import primed_model, write_checkpoint

SUBJECTS = 6
OFFSET = np.array([20.0, 30.0])  # where each face sits inside its loose crop


def layout(seed: int = 0, subjects: int = SUBJECTS):
    """Images of ``subjects`` people: two templates each (gallery, probe), one to three
    medias per template, one to three images per media; all template pairs."""
    rng = np.random.default_rng(seed)
    rows = []  # (image index, subject, template, media)
    for subject in range(subjects):
        for role in (0, 1):
            template = 100 + 2 * subject + role
            for media in range(int(rng.integers(1, 4))):
                for _ in range(int(rng.integers(1, 4))):
                    rows.append((len(rows), subject, template, 1000 + 10 * template + media))
    subject_of = {template: subject for _, subject, template, _ in rows}
    pairs = list(combinations(sorted(subject_of), 2))
    labels = [int(subject_of[a] == subject_of[b]) for a, b in pairs]
    return rows, np.array(pairs), np.array(labels), subject_of


def write_ijb_release(root: Path, target: str, rows, pairs, labels, subject_of, faceness) -> None:
    """The IJB_release files of ``target``, written from the format's description."""
    from faceforge.data.synthetic import SyntheticFaces

    (root / "loose_crop").mkdir(parents=True)
    faces = SyntheticFaces(7)
    for index, subject, _, _ in rows:
        canvas = np.zeros((160, 150, 3), np.uint8)
        canvas[30:142, 20:132] = faces.render(subject, index)
        cv2.imwrite(str(root / "loose_crop" / f"{index + 1}.png"), canvas[:, :, ::-1])
    write_meta(root, target, rows, pairs, labels, faceness)


def write_meta(root: Path, target: str, rows, pairs, labels, faceness) -> Path:
    """The meta/ files of an IJB_release ``target`` folder; returns their common prefix."""
    (root / "meta").mkdir(parents=True, exist_ok=True)
    points = (ARCFACE_TEMPLATE + OFFSET).reshape(-1)
    tid_mid, five_points = [], []
    for index, _, template, media in rows:
        name = f"{index + 1}.png"
        tid_mid.append(f"{name} {template} {media}")
        coords = " ".join(f"{p:.4f}" for p in points)
        five_points.append(f"{name} {coords} {faceness[index]:.6f}")
    prefix = root / "meta" / target.lower()
    Path(f"{prefix}_face_tid_mid.txt").write_text("\n".join(tid_mid) + "\n")
    Path(f"{prefix}_name_5pts_score.txt").write_text("\n".join(five_points) + "\n")
    lines = [f"{a} {b} {label}" for (a, b), label in zip(pairs, labels, strict=True)]
    Path(f"{prefix}_template_pair_label.txt").write_text("\n".join(lines) + "\n")
    first, second = ("S1", "S2") if target == "IJBB" else ("G1", "G2")
    for name, role, keep in ((first, 0, 0), (second, 0, 1), ("probe_mixed", 1, None)):
        csv = ["TEMPLATE_ID,SUBJECT_ID,FILENAME"]
        for index, subject, template, _ in rows:
            if (template - 100) % 2 == role and (keep is None or subject % 2 == keep):
                csv.append(f"{template},{subject},img/{index + 1}.png")
        Path(f"{prefix}_1N_{'gallery_' + name if keep is not None else name}.csv").write_text(
            "\n".join(csv) + "\n"
        )
    return prefix


def random_protocol(seed: int):
    rows, pairs, labels, _ = layout(seed, subjects=12)
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, 16))
    features = np.stack([centres[s] + rng.normal(scale=1.5, size=16) for _, s, _, _ in rows])
    faceness = rng.uniform(0.3, 1.0, len(rows)).astype(np.float32)
    template_ids = np.array([t for _, _, t, _ in rows])
    media_ids = np.array([m for _, _, _, m in rows])
    return features.astype(np.float32), faceness, template_ids, media_ids, pairs, labels, rows


def roles(rows) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``(gallery, probes)``, each ``(template ids, subject ids)``: the even templates are
    the gallery, the odd ones the probes."""
    found = []
    for role in (0, 1):
        chosen = [(template, subject) for _, subject, template, _ in rows if template % 2 == role]
        found.append((np.array([t for t, _ in chosen]), np.array([s for _, s in chosen])))
    return found[0], found[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("use_faceness", [True, False])
def test_verification_matches_the_reference(seed: int, use_faceness: bool) -> None:
    features, faceness, templates, medias, pairs, labels, _ = random_protocol(seed)
    scale = faceness if use_faceness else None
    result = verify_templates(features, scale, templates, medias, pairs, labels)
    scores, nearest, interpolated = reference.verify(
        features, scale, templates, medias, pairs, labels, FAR_TARGETS
    )
    np.testing.assert_allclose(result.scores, scores, rtol=0, atol=1e-12)
    assert result.tar_at_far == nearest
    assert result.interpolated == pytest.approx(interpolated, abs=1e-12)


def test_normalised_mode_matches_the_reference() -> None:
    features, faceness, templates, medias, pairs, labels, _ = random_protocol(3)
    result = verify_templates(features, faceness, templates, medias, pairs, labels, normalise=True)
    weighted = reference.weighted(features, faceness, normalise=True)
    pooled = reference.pool_templates(weighted, templates, medias)
    scores = [reference.dot(pooled[a], pooled[b]) for a, b in pairs]
    np.testing.assert_allclose(result.scores, scores, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 4])
def test_identification_matches_the_reference(seed: int) -> None:
    features, faceness, templates, medias, _, _, rows = random_protocol(seed)
    gallery, probes = roles(rows)
    result = identify_templates(features, faceness, templates, medias, gallery, probes)
    accuracy, tpir = reference.identify(
        features, faceness, templates, medias, gallery, probes, RANKS, FPIR_TARGETS
    )
    assert result.rank_accuracy == accuracy
    assert result.tpir_at_fpir == tpir
    assert (result.num_probes, result.num_gallery) == (12, 12)


def test_a_probe_template_of_zeros_finds_no_one() -> None:
    """Faceness 0 on every image of a probe gives an all-zero template that ties every
    gallery subject at 0: a miss (insightface's argsort puts the mate anywhere), never a
    rank-1 hit."""
    features = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.5, 0.5]])
    faceness = np.array([1.0, 1.0, 1.0, 0.0])
    result = identify_templates(
        features, faceness, [1, 2, 3, 4], [1, 2, 3, 4], ([1, 2], [10, 20]), ([3, 4], [10, 20])
    )
    assert result.rank_accuracy[1] == 0.5 and result.rank_accuracy[5] == 1.0


def test_non_finite_image_features_are_refused() -> None:
    features = np.array([[1.0, 0.0], [np.nan, 1.0]])
    with pytest.raises(DataError, match="image features: 1 of 2 embeddings contain NaN"):
        verify_templates(features, None, [1, 2], [1, 2], [[1, 2]], [1])


def test_tar_is_read_at_the_nearest_roc_point_by_hand() -> None:
    # points (0,0) (0,.5) (.5,.5) (.5,1) (1,1); ties go to the later point (larger TAR):
    # FAR 0.5 -> (.5,1); FAR 0.25 is 0.25 from the first four points -> (.5,1); 0.2 -> (0,.5)
    nearest, interpolated = tar_at_far(
        np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.5, 0.1]), (0.5, 0.25, 0.2)
    )
    assert nearest == {0.5: 1.0, 0.25: 1.0, 0.2: 0.5}
    assert interpolated[0.25] == 0.5
    with pytest.raises(DataError, match="both genuine and impostor"):
        tar_at_far(np.array([1, 1]), np.array([0.1, 0.2]))


def test_pooling_averages_medias_and_sums_templates_by_hand() -> None:
    # template 1: media 10 = mean((2,0), (0,0)) = (1,0); media 11 = (0,3): sum (1,3)
    features = np.array([[2.0, 0.0], [0.0, 0.0], [0.0, 3.0], [1.0, 3.0]])
    result = verify_templates(
        features, None, [1, 1, 1, 2], [10, 10, 11, 12], np.array([[1, 2], [1, 2]]), [1, 0]
    )
    assert result.scores == pytest.approx([1.0, 1.0])
    with pytest.raises(DataError, match="template 3 has no images"):
        verify_templates(features, None, [1, 1, 1, 2], [10, 10, 11, 12], [[1, 3]], [1])


def test_normalised_mode_keeps_an_all_zero_image_at_zero() -> None:
    # as scikit-learn's normalize in insightface's script: the zero row adds nothing (no NaN);
    # template 1 = mean((1,0), (0,0)) + (0,1) = (0.5,1), template 2 = (1,3)
    features = np.array([[2.0, 0.0], [0.0, 0.0], [0.0, 3.0], [1.0, 3.0]])
    result = verify_templates(
        features, None, [1, 1, 1, 2], [10, 10, 11, 12], [[1, 2], [1, 2]], [1, 0], normalise=True
    )
    assert result.scores == pytest.approx([3.5 / np.sqrt(1.25 * 10)] * 2, abs=1e-12)


@pytest.mark.parametrize("target", ["IJBC", "IJBB"])
def test_eval_ijb_reads_the_release_layout_end_to_end(tmp_path: Path, target: str) -> None:
    rows, pairs, labels, subject_of = layout()
    faceness = np.random.default_rng(1).uniform(0.5, 1.0, len(rows)).astype(np.float32)
    root = tmp_path / "IJB_release" / target
    write_ijb_release(root, target, rows, pairs, labels, subject_of, faceness)
    meta = read_ijb(root, target)
    assert meta.images[0] == "1.png" and len(meta.images) == len(rows)
    np.testing.assert_allclose(meta.landmarks[3], ARCFACE_TEMPLATE + OFFSET, atol=1e-4)
    np.testing.assert_array_equal(meta.pairs, pairs)
    assert meta.gallery is not None and len(np.unique(meta.gallery[0])) == SUBJECTS

    checkpoint = write_checkpoint(tmp_path / "model.pt", primed_model())
    out = tmp_path / "ijb.json"
    argv = ["eval", "ijb", "--checkpoint", str(checkpoint), "--root", str(root), "--target"]
    assert main([*argv, target, "--precision", "fp32", "--json", str(out)]) == 0
    report = json.loads(out.read_text())

    # independently: the faces sit at the template, so alignment is the inner 112x112 crop
    embedder = load_embedder(checkpoint, device="cpu", precision="fp32")
    crops = np.stack(
        [cv2.imread(str(root / "loose_crop" / n))[30:142, 20:132, ::-1] for n in meta.images]
    )
    features = embedder.embed_raw(crops) + embedder.embed_raw(crops[:, :, ::-1].copy())
    ids = (meta.template_ids, meta.media_ids)
    _, nearest, _ = reference.verify(features, meta.faceness, *ids, pairs, labels, FAR_TARGETS)
    assert report["1:1"]["tar_at_far"] == pytest.approx({f"{k:g}": v for k, v in nearest.items()})
    accuracy, _ = reference.identify(
        features, meta.faceness, *ids, meta.gallery, meta.probes, RANKS, FPIR_TARGETS
    )
    assert report["1:N"]["rank_accuracy"] == {str(k): v for k, v in accuracy.items()}


def test_a_missing_meta_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not an IJB_release folder"):
        read_ijb(tmp_path, "IJBC")
    with pytest.raises(DataError, match="unknown IJB target"):
        read_ijb(tmp_path, "IJBA")


def _meta_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A meta-only IJB-C folder of the six-subject layout and its file prefix."""
    rows, pairs, labels, _ = layout()
    root = tmp_path / "IJBC"
    return root, write_meta(root, "IJBC", rows, pairs, labels, np.full(len(rows), 0.9))


def test_a_byte_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    root, prefix = _meta_folder(tmp_path)
    path = Path(f"{prefix}_face_tid_mid.txt")
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b".png", b".p\xffg")
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError) as info:
        read_ijb(root, "IJBC")
    assert str(info.value) == (
        f"{path}:3: byte 0xff at column 4 is not UTF-8 text (not an IJB meta file?)"
    )


@pytest.mark.parametrize(
    ("name", "line", "text", "expected"),
    [
        ("template_pair_label.txt", 4, "100 103 2", "'<template 1> <template 2> <1 same | 0 "),
        ("template_pair_label.txt", 2, "100 x 0", "'<template 1> <template 2> <1 same | 0 "),
        ("name_5pts_score.txt", 5, "5.png 1 2 3 4 5 6 7 8 9 10 nan", "all finite"),
        ("name_5pts_score.txt", 1, "1.png 1 2", "'<image> x1 y1 ... x5 y5 <faceness>'"),
        ("face_tid_mid.txt", 3, "3.png 100 1000 7", "'<image> <template id> <media id>'"),
        ("1N_probe_mixed.csv", 3, "101,zero,img/3.png", "'TEMPLATE_ID,SUBJECT_ID,...'"),
    ],
)
def test_a_malformed_line_names_the_file_and_line(
    tmp_path: Path, name: str, line: int, text: str, expected: str
) -> None:
    """Wrong labels and non-finite scores too: they would silently skew TAR and pooling."""
    root, prefix = _meta_folder(tmp_path)
    path = Path(f"{prefix}_{name}")
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        read_ijb(root, "IJBC")
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: expected ") and expected in message
    assert message.endswith(f"got {text!r}")


def test_reading_in_small_blocks_gives_the_same_meta(tmp_path: Path, monkeypatch) -> None:
    """Blocks end mid-file, Windows line ends and blank lines change nothing; a bad line is
    still named by its number in the whole file."""
    root, prefix = _meta_folder(tmp_path)
    whole = read_ijb(root, "IJBC")
    path = Path(f"{prefix}_template_pair_label.txt")
    path.write_text(path.read_text().replace("\n", "\r\n\n"))
    monkeypatch.setattr(ijb_layout, "BLOCK_BYTES", 16)
    blocked = read_ijb(root, "IJBC")
    assert blocked.images == whole.images
    for field in ("landmarks", "faceness", "template_ids", "media_ids", "pairs", "labels"):
        np.testing.assert_array_equal(getattr(blocked, field), getattr(whole, field))
    lines = path.read_text().splitlines()
    lines[40] = "1 2 3"
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=f"{path.name}:41: expected"):
        read_ijb(root, "IJBC")


def test_scoring_memory_stays_near_the_pairs_not_pairs_x_features() -> None:
    """The issue's 8M-pair file asked for 30.5 GiB = 8M x 512 floats x 8 bytes: each pair's
    two template features gathered at once. 200k pairs of 128-d templates would be 400 MB."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(64, 128))
    templates = np.arange(64) // 2
    pairs = rng.integers(0, 32, size=(200_000, 2))
    labels = (pairs[:, 0] == pairs[:, 1]).astype(np.int64)
    tracemalloc.start()
    try:
        result = verify_templates(features, None, templates, np.arange(64), pairs, labels)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20  # the blocks (2 x 8 MB), scores, labels and the ROC's sort
    pooled = reference.pool_templates(features, templates, np.arange(64))
    expected = [reference.dot(pooled[a], pooled[b]) for a, b in pairs[:100]]
    np.testing.assert_allclose(result.scores[:100], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_scoring_in_small_blocks_gives_the_same_results(seed: int, monkeypatch) -> None:
    features, faceness, templates, medias, pairs, labels, rows = random_protocol(seed)
    gallery, probes = roles(rows)
    ids = (templates, medias)
    whole = verify_templates(features, faceness, *ids, pairs, labels)
    found = identify_templates(features, faceness, *ids, gallery, probes)
    monkeypatch.setattr(ijb, "BLOCK_VALUES", 40)  # 2 pairs or 3 probes of 16-d / 12 templates
    blocked = verify_templates(features, faceness, *ids, pairs, labels)
    np.testing.assert_allclose(blocked.scores, whole.scores, rtol=0, atol=1e-12)
    assert blocked.tar_at_far == whole.tar_at_far
    assert identify_templates(features, faceness, *ids, gallery, probes) == found
