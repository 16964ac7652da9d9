"""MTCNN face detector: a P-Net / R-Net / O-Net cascade with five landmarks, in PyTorch.

Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks", 2016, https://arxiv.org/abs/1604.02878. P-Net scans an image pyramid for
candidate windows, R-Net rejects most of them, O-Net refines the survivors and predicts the
eyes, nose and mouth corners. Every stage calibrates its boxes with a regression and prunes
them with NMS; R-Net and O-Net run on the crops of all images of a batch at once.

The published weights ship with faceforge (``weights/mtcnn.npz``: facenet-pytorch's
``pnet.pt``, ``rnet.pt``, ``onet.pt``, converted from the original Caffe model; MIT licence,
see ``weights/NOTICE``), so detection works straight after ``pip install``; a folder with
other ``.pt`` files of the same layout can be named instead (``mtcnn:DIR``). The weights
expect images in normal (row = y) orientation, but their dense layers were trained on
feature maps flattened in (width, height, channel) order, which :func:`_flatten_wh` mirrors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceforge.core.foreign_weights import load_exactly
from faceforge.core.safe_load import load_weights_only
from faceforge.device import resolve_device
from faceforge.errors import CheckpointError, DataError
from faceforge.inference.detection.base import Detection
from faceforge.inference.detection.boxes import apply_box_regression, batched_nms, square_boxes

NETWORKS = ("pnet", "rnet", "onet")
#: the published weights of the three networks, shipped with the package
PACKAGED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "mtcnn.npz"


def _flatten_wh(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, W*H*C) in the (width, height, channel) order the weights expect."""
    return x.permute(0, 3, 2, 1).flatten(1)


def _face_probability(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=1)[:, 1]


class PNet(nn.Module):
    """Proposal network: fully convolutional, one 12x12 window per output cell (stride 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Face probability (N, H', W') and box offsets (N, 4, H', W')."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return _face_probability(self.conv4_1(x)), self.conv4_2(x)


class RNet(nn.Module):
    """Refinement network on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Face probability (N,) and box offsets (N, 4)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_flatten_wh(self.prelu3(self.conv3(x)))))
        return _face_probability(self.dense5_1(x)), self.dense5_2(x)


class ONet(nn.Module):
    """Output network on 48x48 crops: final score, box offsets and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Face probability (N,), box offsets (N, 4), landmarks (N, 10) as x1..x5, y1..y5
        fractions of the crop."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_wh(self.prelu4(self.conv4(x)))))
        return _face_probability(self.dense6_1(x)), self.dense6_2(x), self.dense6_3(x)


def packaged_weights() -> dict[str, dict[str, torch.Tensor]]:
    """The published weights shipped in ``weights/mtcnn.npz``, per network (a plain NumPy
    archive: reading it unpickles nothing)."""
    states: dict[str, dict[str, torch.Tensor]] = {name: {} for name in NETWORKS}
    with np.load(PACKAGED_WEIGHTS, allow_pickle=False) as archive:
        for key in archive.files:
            net, _, parameter = key.partition(".")
            states[net][parameter] = torch.from_numpy(archive[key].copy())
    return states


def folder_weights(directory: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """The state dicts of ``pnet.pt``, ``rnet.pt``, ``onet.pt`` in ``directory`` (the
    facenet-pytorch layout), read with the safe unpickler."""
    folder = Path(directory)
    missing = [f"{net}.pt" for net in NETWORKS if not (folder / f"{net}.pt").is_file()]
    if missing:
        raise CheckpointError(
            f"MTCNN weights {', '.join(missing)} not found in {folder}; name a folder holding "
            "pnet.pt, rnet.pt and onet.pt, or use the weights shipped with faceforge (mtcnn)"
        )
    return {net: _read_state_dict(folder / f"{net}.pt") for net in NETWORKS}


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = load_weights_only(path, what="MTCNN weights")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a plain state dict of tensors")
    return state


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """Scales at which P-Net's 12-pixel window sees faces from ``min_face_size`` pixels up to
    the whole image."""
    scale = 12.0 / min_face_size
    side = min(height, width) * scale
    scales = []
    while side >= 12:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def _integer_squares(boxes: torch.Tensor) -> torch.Tensor:
    """Square boxes snapped to whole pixels (side >= 1), as the networks were trained on."""
    squares = square_boxes(boxes)
    top_left = squares[:, :2].round()
    side = (squares[:, 2:3] - squares[:, 0:1]).round().clamp(min=1)
    return torch.cat([top_left, top_left + side], dim=1)


def _crop_resize(
    images: list[torch.Tensor], image_ids: torch.Tensor, boxes: torch.Tensor, size: int
) -> torch.Tensor:
    """Crops of integer boxes (zero outside the image) resized to ``size`` x ``size``."""
    crops = []
    for image_id, box in zip(image_ids.tolist(), boxes.long().tolist(), strict=True):
        image = images[image_id]
        height, width = image.shape[-2:]
        x1, y1, x2, y2 = box
        # Negative padding crops, positive padding adds zeros: one call for both cases.
        crop = F.pad(image, (-x1, x2 - width, -y1, y2 - height))
        crops.append(F.interpolate(crop[None], size=(size, size), mode="area"))
    return torch.cat(crops)


def _normalize(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 127.5) * 0.0078125


class MTCNN(nn.Module):
    """The MTCNN cascade as a :class:`~faceforge.inference.detection.base.Detector`.

    ``min_face_size`` is in pixels of the original image; images whose longer side exceeds
    ``max_image_size`` are downscaled for detection (faces then need at least 12 pixels in the
    downscaled image) and the results mapped back. Defaults follow the paper's released
    detector: thresholds (0.6, 0.7, 0.7), pyramid factor 0.709, 20-pixel faces.

    >>> detector = MTCNN.from_weights()  # the shipped weights  # doctest: +SKIP
    >>> [d.score for d in detector.detect(read_image("photo.jpg"))]  # doctest: +SKIP
    [0.9998]
    """

    def __init__(
        self,
        min_face_size: float = 20.0,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        max_image_size: int = 1600,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        if not 0 < scale_factor < 1:
            raise ValueError(f"scale_factor must be in (0, 1), got {scale_factor}")
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.scale_factor = scale_factor
        self.max_image_size = max_image_size
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.eval().to(resolve_device(device))

    @classmethod
    def from_weights(
        cls, directory: str | Path | None = None, device: str | torch.device | None = None, **kwargs
    ) -> MTCNN:
        """The detector with the shipped weights, or with those in ``directory``
        (:func:`folder_weights`)."""
        states = packaged_weights() if directory is None else folder_weights(directory)
        where = "the shipped MTCNN weights" if directory is None else str(directory)
        detector = cls(device="cpu", **kwargs)
        for name in NETWORKS:
            load_exactly(getattr(detector, name), states[name], f"{where} ({name})")
        return detector.to(resolve_device(device))

    @property
    def device(self) -> torch.device:
        return self.pnet.conv1.weight.device

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in one uint8 (H, W, 3) RGB image, highest score first."""
        return self.detect_batch([image])[0]

    @torch.inference_mode()
    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each image (any sizes; equal-sized images share P-Net passes)."""
        tensors, factors = [], []
        for index, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise DataError(
                    f"image {index}: expected uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}"
                )
            factor = min(1.0, self.max_image_size / max(image.shape[:2]))
            if factor < 1.0:
                size = tuple(max(1, round(side * factor)) for side in image.shape[1::-1])
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            tensor = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
            tensors.append(tensor.permute(2, 0, 1).float())
            factors.append(factor)
        if not tensors:
            return []
        boxes, image_ids = self._propose(tensors, factors)
        boxes, image_ids = self._refine(tensors, boxes, image_ids)
        boxes, scores, landmarks, image_ids = self._output(tensors, boxes, image_ids)
        results: list[list[Detection]] = [[] for _ in tensors]
        for box, score, points, image_id in zip(
            boxes.cpu().numpy(),
            scores.tolist(),
            landmarks.cpu().numpy(),
            image_ids.tolist(),
            strict=True,
        ):
            detection = Detection(tuple(float(v) for v in box), float(score), points)
            results[image_id].append(detection.scaled(1.0 / factors[image_id]))
        return [sorted(found, key=lambda d: -d.score) for found in results]

    def _propose(
        self, images: list[torch.Tensor], factors: list[float]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: P-Net over each image's pyramid; calibrated integer square boxes."""
        # one pyramid per shape and downscale factor: the smallest face sought scales with the
        # factor, so a photo must not take the pyramid of a larger one shrunk to its shape
        by_shape: dict[tuple[int, int, float], list[int]] = {}
        for index, image in enumerate(images):
            by_shape.setdefault((*image.shape[-2:], factors[index]), []).append(index)
        all_boxes, all_scores, all_offsets, all_ids = [], [], [], []
        for (height, width, factor), indices in by_shape.items():
            batch = torch.stack([images[i] for i in indices])
            ids = torch.tensor(indices, device=self.device)
            min_face = max(self.min_face_size * factor, 12.0)
            for scale in pyramid_scales(height, width, min_face, self.scale_factor):
                size = (math.ceil(height * scale), math.ceil(width * scale))
                resized = F.interpolate(batch, size=size, mode="area")
                probability, offsets = self.pnet(_normalize(resized))
                where = (probability >= self.thresholds[0]).nonzero()
                if where.numel() == 0:
                    continue
                b, row, col = where.unbind(1)
                cell = torch.stack([col, row, col, row], dim=1).float() * 2
                cell[:, 2:] += 12
                boxes = cell / torch.tensor(
                    [size[1] / width, size[0] / height] * 2, device=self.device
                )
                scores = probability[b, row, col]
                keep = batched_nms(boxes, scores, b, 0.5)
                all_boxes.append(boxes[keep])
                all_scores.append(scores[keep])
                all_offsets.append(offsets[b, :, row, col][keep])
                all_ids.append(ids[b[keep]])
        if not all_boxes:
            empty_ids = torch.zeros(0, dtype=torch.long, device=self.device)
            return torch.zeros(0, 4, device=self.device), empty_ids
        boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
        offsets, image_ids = torch.cat(all_offsets), torch.cat(all_ids)
        keep = batched_nms(boxes, scores, image_ids, 0.7)
        boxes = apply_box_regression(boxes[keep], offsets[keep])
        return _integer_squares(boxes), image_ids[keep]

    def _refine(
        self, images: list[torch.Tensor], boxes: torch.Tensor, image_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2: R-Net on 24x24 crops of every candidate of every image."""
        if len(boxes) == 0:
            return boxes, image_ids
        probability, offsets = self.rnet(_normalize(_crop_resize(images, image_ids, boxes, 24)))
        passed = probability > self.thresholds[1]
        boxes, scores, offsets = boxes[passed], probability[passed], offsets[passed]
        image_ids = image_ids[passed]
        keep = batched_nms(boxes, scores, image_ids, 0.7)
        boxes = apply_box_regression(boxes[keep], offsets[keep])
        return _integer_squares(boxes), image_ids[keep]

    def _output(
        self, images: list[torch.Tensor], boxes: torch.Tensor, image_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage 3: O-Net scores, final boxes and landmarks (N, 5, 2) in pixels."""
        if len(boxes) == 0:
            return boxes, boxes[:, 0], boxes.new_zeros(0, 5, 2), image_ids
        crops = _normalize(_crop_resize(images, image_ids, boxes, 48))
        probability, offsets, points = self.onet(crops)
        passed = probability > self.thresholds[2]
        boxes, scores, offsets = boxes[passed], probability[passed], offsets[passed]
        points, image_ids = points[passed], image_ids[passed]
        size = boxes[:, 2:] - boxes[:, :2]
        landmarks = torch.stack(
            [
                boxes[:, None, 0] + size[:, None, 0] * points[:, :5],
                boxes[:, None, 1] + size[:, None, 1] * points[:, 5:],
            ],
            dim=2,
        )
        boxes = apply_box_regression(boxes, offsets)
        keep = batched_nms(boxes, scores, image_ids, 0.7, mode="min")
        return boxes[keep], scores[keep], landmarks[keep], image_ids[keep]
