"""Per-face checks in the pipeline: a MagFace model's feature norm joins the quality score,
refusals carry their figures, and quality is scored on the very face that is embedded."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceforge.config import Config, HeadConfig, ModelConfig
from faceforge.core.checkpoint import Checkpoint
from faceforge.core.embedder import load_embedder
from faceforge.data.quality import MAGFACE_NORMS
from faceforge.data.synthetic.faces import SyntheticFaces
from faceforge.errors import ConfigError
from faceforge.inference.detection.registry import build_detector
from faceforge.inference.face_checks import LowQuality, Unjudged
from faceforge.inference.pipeline import FacePipeline
from faceforge.inference.quality_scores import embed_with_quality
from tests.model_helpers import primed_model

#: a synthetic face MTCNN finds
FACE = SyntheticFaces(seed=0).render(0, 0)


def _checkpoint(path: Path, head: str, scale: float = 1.0) -> Path:
    """A random MobileFaceNet; ``scale`` multiplies its raw embeddings (norms about 7 x it)."""
    state = primed_model().state_dict()
    for key in ("embedding.1.weight", "embedding.1.bias"):  # the final BatchNorm1d
        state[key] = state[key] * scale
    Checkpoint(
        config=Config(
            model=ModelConfig(backbone="mobilefacenet", embedding_size=32),
            head=HeadConfig(type=head),
        ),
        backbone=state,
    ).save(path)
    return path


def test_magface_norm_is_part_of_the_quality(tmp_path: Path, mtcnn) -> None:
    magface = FacePipeline(load_embedder(_checkpoint(tmp_path / "m.pt", "magface")), mtcnn)
    (report,) = magface.assess_faces(FACE)[:1]
    raw = magface.embedder.embed_raw(magface.align(FACE, report.detection))[0]
    norm = float(np.linalg.norm(raw))
    assert report.quality.feature_norm == pytest.approx(norm, rel=1e-5)
    q = report.quality
    low, high = MAGFACE_NORMS
    parts = [q.size, q.pose, q.sharpness, q.exposure, np.clip((norm - low) / (high - low), 0, 1)]
    assert q.total == pytest.approx(np.prod(parts) ** (1 / 5), rel=1e-5)
    assert report.as_dict()["quality"]["feature_norm"] == pytest.approx(norm, abs=1e-4)

    arcface = FacePipeline(load_embedder(_checkpoint(tmp_path / "a.pt", "arcface")), mtcnn)
    plain = arcface.assess_faces(FACE)[0].quality
    assert plain.feature_norm is None and plain.sharpness == q.sharpness

    strict = FacePipeline(magface.embedder, mtcnn, min_quality=0.999)
    with pytest.raises(LowQuality, match=r"face quality .* < 0.999 \(.*feature_norm") as refused:
        strict.embed([FACE])
    assert refused.value.details["quality"]["feature_norm"] == pytest.approx(norm, abs=1e-4)


def _photos(folder: Path) -> list[str]:
    """A synthetic face, the same face blurred, a blank image and a missing file."""
    blurred = cv2.GaussianBlur(FACE, (0, 0), 1.5)
    for name, image in [("sharp", FACE), ("blurred", blurred), ("blank", np.full_like(FACE, 128))]:
        cv2.imwrite(str(folder / f"{name}.png"), image[..., ::-1])
    return [str(folder / f"{name}.png") for name in ("sharp", "blurred", "blank", "missing")]


@pytest.mark.parametrize("head", ["arcface", "magface"])
def test_quality_is_scored_on_the_face_that_is_embedded(tmp_path: Path, mtcnn, head) -> None:
    paths = _photos(tmp_path)
    # MagFace norms inside its 10..110 range, so the norm part of the quality is not 0
    checkpoint = _checkpoint(tmp_path / "m.pt", head, scale=8.0)
    pipeline = FacePipeline(load_embedder(checkpoint), mtcnn)
    scored = embed_with_quality(pipeline, paths)
    assert scored.errors[:2] == [None, None]
    assert "blank.png: no face found" in scored.errors[2]
    assert "missing.png: cannot read file" in scored.errors[3]
    np.testing.assert_allclose(scored.embeddings[:2], pipeline.embed(paths[:2]), atol=1e-5)
    assert np.isnan(scored.embeddings[2:]).all()
    for row in (0, 1):  # each face alone: its norm differs from the batch's by fp32 kernel
        # noise, which this untrained network amplifies (1.1e-4 of the norm, 3e-5 of the
        # quality with oneDNN's AVX2 kernels); the other face's quality is 20 % away
        expected = pipeline.assess_faces(paths[row])[0].quality.total  # with MagFace's norm
        assert scored.quality[row] == pytest.approx(expected, rel=1e-3)
    assert scored.quality[1] < scored.quality[0] and list(scored.quality[2:]) == [0, 0]
    fitted = FacePipeline(pipeline.embedder, mtcnn, fallback="center-crop")
    scored = embed_with_quality(fitted, paths[:3])
    assert scored.errors == [None, None, None] and scored.quality[2] == 0.0  # no face: lowest


def test_eval_quality_prints_the_curve_of_usable_pairs(tmp_path: Path, capsys) -> None:
    from faceforge.cli import main
    from faceforge.evaluation.erc import error_versus_reject

    sharp, blurred, blank, _ = _photos(tmp_path)
    other = tmp_path / "other.png"
    cv2.imwrite(str(other), SyntheticFaces(seed=0).render(2, 0)[..., ::-1])  # MTCNN finds it
    rows = [(sharp, blurred, 1), (sharp, str(other), 0), (blank, sharp, 1), (blurred, sharp, 1)]
    (tmp_path / "pairs.csv").write_text("".join(f"{a},{b},{s}\n" for a, b, s in rows))
    checkpoint = _checkpoint(tmp_path / "m.pt", "arcface")
    argv = ["eval", "quality", "--checkpoint", str(checkpoint), "--threshold", "0.3"]
    argv += ["--pair-list", str(tmp_path / "pairs.csv"), "--plot", str(tmp_path / "erc.png")]
    assert main([*argv, "--json", str(tmp_path / "erc.json"), "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "3 of 4 pairs usable (2 same); FNMR at cosine > 0.3000" in printed.out
    assert "blank.png: no face found" in printed.err and "its pairs left out" in printed.err
    pipeline = FacePipeline(load_embedder(checkpoint), build_detector("mtcnn"))
    scored = embed_with_quality(pipeline, [sharp, blurred, str(other)])
    e, q = scored.embeddings, scored.quality
    similarity = [e[0] @ e[1], e[0] @ e[2], e[1] @ e[0]]
    quality = [min(q[0], q[1]), min(q[0], q[2]), min(q[1], q[0])]
    expected = error_versus_reject(similarity, [True, False, True], quality, 0.3)
    assert json.loads((tmp_path / "erc.json").read_text())["fnmr"] == expected.tolist()
    assert (tmp_path / "erc.png").read_bytes()[:4] == b"\x89PNG"
    # a photo that is not there stops the run before anything is embedded, as in eval
    (tmp_path / "gone.csv").write_text(f"{sharp},{tmp_path / 'gone.png'},1\n")
    assert main([*argv[:6], "--pair-list", str(tmp_path / "gone.csv"), "--no-progress"]) == 2
    assert f"gone.csv: 1 image file(s) not found (relative paths start from {tmp_path}" in (
        capsys.readouterr().err
    )


def test_a_photo_without_a_detected_face_is_not_let_through_unjudged(tmp_path: Path, mtcnn):
    """The no-face fallback fits a whole photo to the model: with liveness or a minimum
    quality asked for, that let any photo in which the detector found nothing pass."""
    embedder = load_embedder(_checkpoint(tmp_path / "a.pt", "arcface"))
    blank = np.full_like(FACE, 128)
    lenient = FacePipeline(embedder, mtcnn, fallback="letterbox")
    assert np.isfinite(lenient.embed([blank])).all()  # unchecked: fitted by the fallback
    checked = FacePipeline(embedder, mtcnn, fallback="letterbox", min_quality=0.1)
    with pytest.raises(Unjudged, match=r"image 0: no face found, so its quality cannot be"):
        checked.embed([blank])
    assert checked.try_embed([FACE, blank])[1][1].startswith("image 1: no face found, so its")
    with pytest.raises(ConfigError, match="the quality check judges detected faces: a pipeline"):
        FacePipeline(embedder, None, min_quality=0.1)  # --aligned: every photo is a crop
