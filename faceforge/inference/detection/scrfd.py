"""SCRFD face detector files (insightface ``det_*.onnx``) run with ONNX Runtime.

Guo et al., "Sample and Computation Redistribution for Efficient Face Detection", ICLR 2022,
https://arxiv.org/abs/2105.04714. The graph predicts, for every anchor centre of each feature
stride, a face score, the distances from the centre to the four box edges and the offsets of
the five landmarks, all in units of the stride. The outputs come in insightface's order:
scores of every stride, then boxes, then landmarks (9 outputs for strides 8/16/32 with two
anchors per cell; 15 for strides 8..128 with one).

The image is letterboxed into the model input (scaled to fit, top-left, zero padding) and
normalised as ``(RGB - 127.5) / 128``, as the released models expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from faceforge.errors import CheckpointError, DataError
from faceforge.inference.detection.base import Detection
from faceforge.inference.detection.boxes import nms

#: number of graph outputs -> (strides, anchors per cell); only keypoint models are usable
OUTPUT_LAYOUTS = {9: ((8, 16, 32), 2), 15: ((8, 16, 32, 64, 128), 1)}


def anchor_centers(height: int, width: int, stride: int, anchors: int) -> np.ndarray:
    """(height*width*anchors, 2) (x, y) centres in input pixels, cell-major then anchor."""
    ys, xs = np.mgrid[:height, :width]
    centers = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centers, anchors, axis=0)


def distance_to_box(centers: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """(N, 4) boxes from centres and (left, top, right, bottom) distances."""
    return np.concatenate([centers - distances[:, :2], centers + distances[:, 2:]], axis=1)


def distance_to_points(centers: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(N, K, 2) points from centres and (N, 2K) interleaved (dx, dy) offsets."""
    return centers[:, None, :] + offsets.reshape(len(offsets), offsets.shape[1] // 2, 2)


class SCRFD:
    """A :class:`~faceforge.inference.detection.base.Detector` for SCRFD ONNX files with keypoints.

    ``input_size`` (width, height) is used when the graph's input size is dynamic, each side
    rounded up to a multiple of 32 (the largest stride: other sizes give feature maps the
    anchor grid cannot know); faces whose box is narrower or shorter than ``min_face_size``
    pixels are dropped; ``threads`` bounds ONNX Runtime's intra-op threads (0: its default,
    one per core).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        input_size: tuple[int, int] = (640, 640),
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        min_face_size: float = 0.0,
        providers: list[str] | None = None,
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"SCRFD model {str(path)!r} does not exist")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise CheckpointError(f"{path}: not a loadable ONNX model ({exc})") from None
        outputs = self.session.get_outputs()
        if len(outputs) not in OUTPUT_LAYOUTS:
            raise CheckpointError(
                f"{path}: {len(outputs)} outputs; expected an SCRFD model with keypoints "
                f"({' or '.join(map(str, OUTPUT_LAYOUTS))} outputs, e.g. det_10g.onnx)"
            )
        self.strides, self.anchors = OUTPUT_LAYOUTS[len(outputs)]
        self.output_names = [o.name for o in outputs]
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        height, width = graph_input.shape[2:4]
        fixed = isinstance(width, int) and isinstance(height, int)
        largest = max(self.strides)
        self.input_size = (
            (width, height)
            if fixed
            else tuple(-(-side // largest) * largest for side in input_size)
        )
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.min_face_size = min_face_size

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The image scaled into the input's top-left corner, and the (x, y) scales: each
        side is rounded down to whole pixels, so the two differ (insightface divides both
        by the y scale, which shifted x by up to 17 px on a 3000 px wide photo)."""
        width, height = self.input_size
        if image.shape[0] / image.shape[1] > height / width:  # a side of 1 px at least
            new_h, new_w = height, max(1, int(height * image.shape[1] / image.shape[0]))
        else:
            new_w, new_h = width, max(1, int(width * image.shape[0] / image.shape[1]))
        canvas = np.zeros((height, width, 3), np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
        return canvas, np.array([new_w / image.shape[1], new_h / image.shape[0]], np.float32)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in one uint8 (H, W, 3) RGB image, highest score first."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f"expected uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
        canvas, scale = self._letterbox(image)
        blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outputs = self.session.run(self.output_names, {self.input_name: blob})
        count = len(self.strides)
        width, height = self.input_size
        all_scores, all_boxes, all_points = [], [], []
        for level, stride in enumerate(self.strides):
            scores = outputs[level].reshape(-1)
            centers = anchor_centers(height // stride, width // stride, stride, self.anchors)
            keep = scores >= self.score_threshold
            distances = outputs[level + count].reshape(-1, 4)[keep] * stride
            offsets = outputs[level + 2 * count].reshape(-1, 10)[keep] * stride
            all_scores.append(scores[keep])
            all_boxes.append(distance_to_box(centers[keep], distances))
            all_points.append(distance_to_points(centers[keep], offsets))
        scores = np.concatenate(all_scores)
        boxes = np.concatenate(all_boxes) / np.tile(scale, 2)
        points = np.concatenate(all_points) / scale
        kept = nms(torch.from_numpy(boxes), torch.from_numpy(scores), self.nms_threshold).numpy()
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        return [
            Detection(tuple(float(v) for v in boxes[i]), float(scores[i]), points[i])
            for i in kept
            if sides[i] >= self.min_face_size
        ]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each image (the released graphs take one image at a time)."""
        return [self.detect(image) for image in images]
