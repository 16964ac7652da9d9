"""A seeded state dict in facenet-pytorch's ``InceptionResnetV1`` layout (key/shape list
recorded from facenet-pytorch 2.6.0, ``logits.*`` dropped) for the compatibility test."""

from __future__ import annotations

import json
from pathlib import Path

import torch

KEYS = Path(__file__).parent / "fixtures" / "facenet_pytorch_inception_resnet_v1_keys.json"


def facenet_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights (He-scaled), batch-norm statistics away from identity."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in json.loads(KEYS.read_text()).items():
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
