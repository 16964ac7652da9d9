"""Face embedding backbones and their size figures."""

from __future__ import annotations

from faceforge.models.complexity import count_macs, count_parameters
from faceforge.models.registry import backbone_names, build_backbone

__all__ = ["backbone_names", "build_backbone", "count_macs", "count_parameters"]
