"""What is checked of a detected face before it is used: liveness (a presentation attack is
refused with its score) and quality (a face below a minimum is refused with its parts).

A MagFace model's feature norm is part of the quality (:mod:`faceforge.data.quality`) and is
known only once the face is embedded, so callers judge liveness and the image-based quality
parts first (:meth:`FaceChecks.report`, :meth:`FaceChecks.refuse_spoof`), add the norm to the
report when the model is MagFace (:meth:`FaceReport.with_feature_norm`) and refuse low
quality last (:meth:`FaceChecks.refuse_low_quality`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from faceforge.data.quality import FaceQuality, face_quality
from faceforge.errors import DataError
from faceforge.inference.detection.base import Detection
from faceforge.inference.liveness import LivenessChecker, LivenessResult, SpoofRefused


class NoFace(DataError):
    """No face was found in a photo and no fallback fits it to the model."""

    def __init__(self, photo: str, fallbacks: Iterable[str]) -> None:
        super().__init__(
            f"{photo}: no face found; for photos that are already face crops choose a "
            f"fallback ({', '.join(fallbacks)})"
        )
        self.photo = photo


class Unjudged(DataError):
    """No face was found in a photo, so the liveness or quality asked for cannot be judged:
    fitting the whole photo by the fallback would let it pass unchecked."""

    def __init__(self, photo: str, judged: str) -> None:
        super().__init__(
            f"{photo}: no face found, so its {judged} cannot be judged (the no-face fallback "
            "is not used while it is checked); use a photo in which the face is detected"
        )
        self.photo = photo


class LowQuality(DataError):
    """A face whose quality total is below the minimum asked for."""

    def __init__(self, name: str, quality: FaceQuality, minimum: float) -> None:
        parts = ", ".join(f"{k} {v}" for k, v in quality.as_dict().items() if v is not None)
        super().__init__(f"{name}: face quality {quality.total:.3f} < {minimum:g} ({parts})")
        self.details = {"quality": quality.as_dict(), "min_quality": minimum}


@dataclass(frozen=True)
class FaceReport:
    """One detected face with its quality parts and optional liveness."""

    detection: Detection
    quality: FaceQuality
    liveness: LivenessResult | None = None

    def as_dict(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"box": [round(float(v), 1) for v in self.detection.box]}
        fields["quality"] = self.quality.as_dict()
        if self.liveness is not None:
            fields.update(self.liveness.as_dict())
        return fields

    def with_feature_norm(self, norm: float) -> FaceReport:
        """This report with a MagFace feature norm added to the quality."""
        return replace(self, quality=self.quality.with_feature_norm(norm))


@dataclass(frozen=True)
class FaceChecks:
    """The checks a pipeline applies: ``liveness`` (``None``: off), ``min_quality``
    (``None``: off); ``magface`` says the model's feature norm belongs in the quality."""

    liveness: LivenessChecker | None = None
    min_quality: float | None = None
    magface: bool = False

    @property
    def judged(self) -> str:
        """What these checks judge of a detected face: "liveness", "quality", both joined
        by "and", or "" when they are off."""
        on = {"liveness": self.liveness is not None, "quality": self.min_quality is not None}
        return " and ".join(name for name, checked in on.items() if checked)

    def report(self, image: np.ndarray, face: Detection) -> FaceReport:
        """Quality (without the feature norm) and, when checked, liveness of ``face``."""
        quality = face_quality(image, face.box, face.landmarks)
        judged = self.liveness.check(image, face) if self.liveness is not None else None
        return FaceReport(face, quality, judged)

    def refuse_spoof(self, report: FaceReport, name: str) -> None:
        """:class:`SpoofRefused` (with the score) when the face was judged an attack."""
        if self.liveness is not None and report.liveness and not report.liveness.live:
            raise SpoofRefused(name, report.liveness.score, self.liveness.threshold)

    def refuse_low_quality(self, report: FaceReport, name: str) -> None:
        """:class:`LowQuality` when the total is below ``min_quality``."""
        if self.min_quality is not None and report.quality.total < self.min_quality:
            raise LowQuality(name, report.quality, self.min_quality)
