"""Silent face anti-spoofing: is the detected face live, or a print / screen replay?

Reproduces the published Silent-Face-Anti-Spoofing pipeline: for each model, the detector's
face box is scaled about its centre by the model's scale (reduced where it would not fit,
then shifted inside the photo), cropped, resized to the model input (80x80), given as BGR
0-255 floats; the models' softmax outputs are averaged and index 1 is the live probability.

The threshold trades the two errors of ISO/IEC 30107-3: raising it refuses more attacks
(lower APCER, attack presentations accepted as live) but also more genuine users (higher
BPCER, bona fide presentations rejected). 0.5 is the published decision; a stricter door
uses e.g. 0.8 and should measure its BPCER on its own users' photos.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from faceforge.core.foreign_weights import load_exactly, read_state_dict
from faceforge.errors import ConfigError, DataError
from faceforge.inference.detection.base import Detection, Detector, select_face
from faceforge.models.minifasnet import network_input
from faceforge.models.registry import build_antispoof_model

#: the published MiniFASNetV2 (scale 2.7) and V1SE (scale 4.0), shipped under Apache-2.0
SHIPPED_MODELS = tuple(
    Path(__file__).with_name("liveness_weights") / name
    for name in ("2.7_80x80_MiniFASNetV2.pth", "4_0_0_80x80_MiniFASNetV1SE.pth")
)
#: the decision used by the published pipeline (live when the averaged probability is above)
DEFAULT_THRESHOLD = 0.5
#: published file names: ``<scale>_<H>x<W>_MiniFASNet<kind>.pth`` (scale ``4_0_0`` is 4.0)
_PUBLISHED_NAME = re.compile(r"^(?P<scale>[\d_.]+)_(?P<h>\d+)x(?P<w>\d+)_MiniFASNet(?P<kind>\w+)$")


class SpoofRefused(DataError):
    """A face judged a presentation attack (print, screen replay), with its liveness score."""

    def __init__(self, name: str, score: float, threshold: float) -> None:
        super().__init__(
            f"{name}: refused as a presentation attack (liveness {score:.3f} < "
            f"threshold {threshold:g})"
        )
        self.details = {"liveness": round(score, 6), "liveness_threshold": threshold}


@dataclass(frozen=True)
class LivenessModel:
    """One anti-spoofing network with the face-box scale and input size it was trained at."""

    network: nn.Module
    scale: float
    size: tuple[int, int] = (80, 80)


@dataclass(frozen=True)
class LivenessResult:
    """The averaged live probability, the decision, and the crop the first model judged
    (HxWx3 uint8 RGB, for the user to see what was looked at)."""

    score: float
    live: bool
    crop: np.ndarray

    def as_dict(self) -> dict[str, float | bool]:
        return {"liveness": round(self.score, 6), "live": self.live}


def scaled_box(
    box: Sequence[float], scale: float, image_shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """The published crop window (x1, y1, x2, y2 inclusive) for an (x1, y1, x2, y2) box."""
    height, width = image_shape[:2]
    x, y = float(box[0]), float(box[1])
    box_w, box_h = max(float(box[2]) - x, 1.0), max(float(box[3]) - y, 1.0)
    scale = min((height - 1) / box_h, (width - 1) / box_w, scale)
    half_w, half_h = box_w * scale / 2, box_h * scale / 2
    cx, cy = x + box_w / 2, y + box_h / 2
    x1, x2 = _shift_inside(cx - half_w, cx + half_w, width - 1)
    y1, y2 = _shift_inside(cy - half_h, cy + half_h, height - 1)
    return int(x1), int(y1), int(x2), int(y2)


def _shift_inside(low: float, high: float, limit: float) -> tuple[float, float]:
    if low < 0:
        high, low = high - low, 0.0
    if high > limit:
        low, high = low - (high - limit), limit
    return low, high


def liveness_crop(
    image: np.ndarray, box: Sequence[float], scale: float, size: tuple[int, int] = (80, 80)
) -> np.ndarray:
    """The HxWx3 uint8 RGB crop a model with ``scale`` and input ``size`` judges."""
    x1, y1, x2, y2 = scaled_box(box, scale, image.shape)
    window = image[y1 : y2 + 1, x1 : x2 + 1]
    return cv2.resize(window, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


class LivenessChecker:
    """An ensemble of anti-spoofing models judging detected faces."""

    def __init__(self, models: Sequence[LivenessModel], threshold: float = DEFAULT_THRESHOLD):
        if not models:
            raise ConfigError("liveness needs at least one anti-spoofing model")
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"liveness threshold must be in [0, 1], got {threshold}")
        self.models = [LivenessModel(m.network.eval(), m.scale, m.size) for m in models]
        self.threshold = threshold

    @classmethod
    def load(
        cls, paths: Sequence[str | Path] = SHIPPED_MODELS, threshold: float = DEFAULT_THRESHOLD
    ) -> LivenessChecker:
        """Checker from published-style files (see :func:`load_liveness_model`); by default the
        two shipped Minivision models."""
        return cls([load_liveness_model(path) for path in paths], threshold)

    @torch.inference_mode()
    def check(self, image: np.ndarray, detection: Detection | Sequence[float]) -> LivenessResult:
        """Judge the face at ``detection`` (or an (x1, y1, x2, y2) box) in an RGB image."""
        box = detection.box if isinstance(detection, Detection) else detection
        crops = [liveness_crop(image, box, m.scale, m.size) for m in self.models]
        probabilities = [
            torch.softmax(m.network(network_input([crop])), dim=1)[0, 1].item()
            for m, crop in zip(self.models, crops, strict=True)
        ]
        score = float(np.mean(probabilities))
        return LivenessResult(score, score >= self.threshold, crops[0])


def face_cropper(
    detector: Detector, scale: float, size: tuple[int, int]
) -> Callable[[np.ndarray], np.ndarray | None]:
    """Anti-spoofing data from photos: the crop of each photo's largest face at ``scale`` and
    ``size``, cut as :class:`LivenessChecker` cuts it (``None`` when no face is found)."""

    def crop(image: np.ndarray) -> np.ndarray | None:
        face = select_face(detector.detect(image), image.shape, "largest")
        return None if face is None else liveness_crop(image, face.box, scale, size)

    return crop


def load_liveness_model(path: str | Path) -> LivenessModel:
    """A MiniFASNet weights file named as published (``2.7_80x80_MiniFASNetV2.pth``: scale,
    input size, architecture), loaded strictly through the safe loader; a ``module.`` prefix
    and a faceforge checkpoint's wrapper are removed."""
    path = Path(path)
    parsed = _PUBLISHED_NAME.match(path.stem)
    if parsed is None:
        raise ConfigError(
            f"{path.name}: name anti-spoofing weights <scale>_<H>x<W>_MiniFASNet<V1|V2|V1SE|V2SE>"
            ".pth (e.g. 2.7_80x80_MiniFASNetV2.pth), as published"
        )
    scale = float(parsed["scale"].replace("_", ".", 1).replace("_", ""))
    size = (int(parsed["h"]), int(parsed["w"]))
    state = read_state_dict(path)
    classes = state["prob.weight"].shape[0] if "prob.weight" in state else 3
    network = build_antispoof_model(
        f"minifasnet_{parsed['kind'].lower()}",
        num_classes=classes,
        conv6_kernel=(size[0] + 15) // 16,
    )
    load_exactly(network, state, f"{path}: not a MiniFASNet{parsed['kind']} file")
    return LivenessModel(network.eval(), scale, size)
