"""A tiny ONNX graph that emits fixed tensors in SCRFD's output layout (scores x3, boxes x3,
keypoints x3 for strides 8/16/32): SCRFD decoding checked against hand-computed boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 64  # model input: strides 8/16/32 give 8x8, 4x4 and 2x2 cells, two anchors each


def write_graph(path: Path, tensors: list[np.ndarray]) -> None:
    """A graph whose outputs are the given constants (its image input is accepted, unused)."""
    nodes, outputs = [], []
    for i, value in enumerate(tensors):
        name = f"out{i}"
        nodes.append(
            helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))
        )
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, value.shape))
    graph = helper.make_graph(
        nodes,
        "scrfd_stub",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        outputs,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def scrfd_outputs() -> list[np.ndarray]:
    counts = [(SIZE // s) ** 2 * 2 for s in (8, 16, 32)]
    scores = [np.zeros((n, 1), np.float32) for n in counts]
    boxes = [np.zeros((n, 4), np.float32) for n in counts]
    points = [np.zeros((n, 10), np.float32) for n in counts]
    # stride 16, cell (row 1, col 2), second anchor: centre (32, 16)
    index = (1 * 4 + 2) * 2 + 1
    scores[1][index] = 0.9
    boxes[1][index] = [1.0, 0.5, 1.0, 1.5]  # left, top, right, bottom in strides
    points[1][index] = [-0.5, -0.25, 0.5, -0.25, 0.0, 0.25, -0.25, 0.75, 0.25, 0.75]
    # stride 8, cell (row 2, col 4), first anchor: centre (32, 16); an overlapping box
    index = (2 * 8 + 4) * 2
    scores[0][index] = 0.8
    boxes[0][index] = [2.0, 1.0, 2.0, 2.0]  # (16, 8, 48, 32): IoU 0.75 with the first
    # below the score threshold: ignored
    scores[2][0] = 0.3
    return [*scores, *boxes, *points]
