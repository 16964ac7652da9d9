"""The real SCRFD detector model in ../shared/models (tests skip when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SCRFD_MODEL = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "models"
    / "scrfd"
    / "scrfd_2.5g_bnkps.onnx"
)


@pytest.fixture(scope="session")
def scrfd_model() -> Path:
    """insightface's SCRFD-2.5GF with keypoints (research weights: used to test, never shipped)."""
    if not SCRFD_MODEL.is_file():
        pytest.skip(f"SCRFD model not available at {SCRFD_MODEL} (only in the dev workplace)")
    return SCRFD_MODEL
