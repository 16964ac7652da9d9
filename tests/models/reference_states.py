"""Seeded state dicts in the layouts of other projects' networks, from recorded key/shape
lists (tests/models/fixtures/), for the strict-load and same-embedding tests.

- facenet-pytorch 2.6.0 ``InceptionResnetV1``, ``logits.*`` dropped;
- insightface arcface_torch's ``vit_t`` / ``vit_s`` / ``vit_b`` / ``vit_l`` and EdgeFace's
  ``edgeface_*`` networks (how each list was made is in its fixture's ``_how``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from faceforge.models import build_backbone

FIXTURES = Path(__file__).parent / "fixtures"
FACENET_KEYS = FIXTURES / "facenet_pytorch_inception_resnet_v1_keys.json"
VIT_KEYS = FIXTURES / "arcface_torch_vit_keys.json"
EDGEFACE_KEYS = FIXTURES / "edgeface_keys.json"


def seeded_state(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights (He-scaled), batch-norm statistics away from identity."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.long)
        elif key.endswith("running_var") or (key.endswith(".weight") and len(shape) == 1):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        elif len(shape) == 1:  # biases and running means
            state[key] = (torch.rand(shape, generator=generator) - 0.5) * 0.2
        else:
            fan_in = torch.tensor(shape[1:]).prod().item()
            state[key] = torch.randn(shape, generator=generator) * (2 / fan_in) ** 0.5
    return state


def facenet_state(seed: int = 0) -> dict[str, torch.Tensor]:
    return seeded_state(json.loads(FACENET_KEYS.read_text()), seed)


def recorded_shapes(fixture: Path, name: str) -> dict[str, list[int]]:
    """Recorded key -> shape of network ``name`` in a fixture of several networks."""
    return json.loads(fixture.read_text())[name]


def first_outputs(name: str, state: dict[str, torch.Tensor], size: tuple[int, int]) -> np.ndarray:
    """First 8 values of backbone ``name``'s L2-normalised eval-mode embedding, with ``state``
    loaded strictly, for the seeded image (generator seed 7, values in [-1, 1]) of ``size``;
    the same recipe produced the values recorded from each reference implementation."""
    model = build_backbone(name).eval()
    model.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(7)) * 2 - 1
    with torch.no_grad():
        return nn.functional.normalize(model(x), dim=1)[0, :8].numpy()


def on_meta(name: str, **kwargs: object) -> nn.Module:
    """Backbone ``name`` with shapes only: nothing allocated, even for ViT-L's 256M
    parameters."""
    with torch.device("meta"):
        return build_backbone(name, **kwargs)


def state_layout(model: nn.Module) -> list[tuple[str, list[int]]]:
    """(key, shape) of every state-dict entry, in order: what the fixtures record."""
    return [(key, list(value.shape)) for key, value in model.state_dict().items()]
