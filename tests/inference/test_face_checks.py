"""Per-face checks in the pipeline: a MagFace model's feature norm joins the quality score,
refusals carry their figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceforge.config import Config, HeadConfig, ModelConfig
from faceforge.core.checkpoint import Checkpoint
from faceforge.core.embedder import load_embedder
from faceforge.data.quality import MAGFACE_NORMS
from faceforge.data.synthetic.faces import SyntheticFaces
from faceforge.inference.face_checks import LowQuality
from faceforge.inference.pipeline import FacePipeline
from tests.model_helpers import primed_model

#: a synthetic face MTCNN finds
FACE = SyntheticFaces(seed=0).render(0, 0)


def _checkpoint(path: Path, head: str) -> Path:
    Checkpoint(
        config=Config(
            model=ModelConfig(backbone="mobilefacenet", embedding_size=32),
            head=HeadConfig(type=head),
        ),
        backbone=primed_model().state_dict(),
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
