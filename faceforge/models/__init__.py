"""Face embedding backbones, their input contract and size figures."""

from __future__ import annotations

from faceforge.models.complexity import count_macs, count_parameters
from faceforge.models.preprocess import Preprocess
from faceforge.models.registry import backbone_names, build_backbone

__all__ = ["Preprocess", "backbone_names", "build_backbone", "count_macs", "count_parameters"]
