"""What the face pipeline answers: 1:1 decisions, 1:N identifications, enrollment counts."""

from __future__ import annotations

from dataclasses import dataclass, field

from faceforge.inference.matching.gallery import Match
from faceforge.inference.matching.threshold import Threshold

#: the answer of a search whose best match is below the threshold
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verification:
    """A 1:1 decision: cosine similarity, whether it passes, and the threshold used.

    ``error`` says why a pair could not be compared (only from
    :meth:`FacePipeline.verify_pairs` with ``report_errors``); similarity is then NaN and
    ``same`` False.
    """

    similarity: float
    same: bool
    threshold: Threshold
    error: str | None = None


@dataclass(frozen=True)
class Identification:
    """A 1:N answer: the best candidates and the identity decided (or ``"unknown"``);
    ``error`` says why a photo could not be searched (:meth:`FacePipeline.search_images`
    with ``report_errors``), with no matches."""

    identity: str
    matches: list[Match]
    threshold: Threshold
    error: str | None = None


@dataclass
class Enrollment:
    """What :meth:`FacePipeline.enroll_people` did."""

    #: images whose embeddings were added
    added: int = 0
    #: why each unusable image (no face, unreadable) was skipped
    skipped: list[str] = field(default_factory=list)
    #: people without a single usable image, not enrolled
    left_out: list[str] = field(default_factory=list)
