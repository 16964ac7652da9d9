"""Face detectors by name: a spec ``name`` or ``name:ARGUMENT`` builds one backend.

``mtcnn`` (PyTorch, with the weights shipped in faceforge; the argument, optional, is a
folder with other ``pnet.pt``, ``rnet.pt``, ``onet.pt``) and ``scrfd`` (ONNX Runtime; the
argument, required, is an insightface SCRFD ``.onnx`` file with keypoints). The same spec
is accepted by :class:`FacePipeline.load <faceforge.inference.pipeline.FacePipeline>`, the
dataset aligner and ``--detector``.

>>> detector = build_detector("scrfd:models/det_10g.onnx", device="cpu")  # doctest: +SKIP
>>> [round(face.score, 2) for face in detector.detect(read_image("photo.jpg"))]  # doctest: +SKIP
[0.87]
"""

from __future__ import annotations

from pathlib import Path

import torch

from faceforge.core.onnx_model import onnx_providers
from faceforge.errors import ConfigError
from faceforge.inference.detection.base import Detector
from faceforge.inference.detection.mtcnn import MTCNN
from faceforge.inference.detection.scrfd import SCRFD
from faceforge.registry import Registry

#: the specs :func:`build_detector` accepts, for help texts
DETECTOR_SPECS = (
    "mtcnn, mtcnn:DIR (folder with pnet.pt, rnet.pt, onet.pt) or scrfd:PATH.onnx "
    "(an insightface SCRFD model with keypoints)"
)

Device = str | torch.device | None


def _mtcnn(argument: str | None, device: Device, min_face_size: float, threads: int) -> MTCNN:
    """MTCNN with the weights in folder ``argument`` (default: the shipped ones); PyTorch's
    thread count is the process's (``torch.set_num_threads``)."""
    return MTCNN.from_weights(argument, device=device, min_face_size=min_face_size)


def _scrfd(argument: str | None, device: Device, min_face_size: float, threads: int) -> SCRFD:
    """SCRFD from the ``.onnx`` file ``argument``, on CUDA when ``device`` is a GPU and ONNX
    Runtime has the CUDA provider."""
    if not argument:
        raise ConfigError(
            "the scrfd detector needs its model file: write scrfd:PATH.onnx "
            "(an insightface SCRFD model with keypoints, e.g. scrfd:det_10g.onnx)"
        )
    return SCRFD(
        Path(argument),
        min_face_size=min_face_size,
        providers=onnx_providers(device),
        threads=threads,
    )


#: detector name -> factory of (argument or None, device, min_face_size, threads)
DETECTORS: Registry[Detector] = Registry.of("detector", {"mtcnn": _mtcnn, "scrfd": _scrfd})


def parse_detector_spec(spec: str) -> tuple[str, str | None]:
    """``(name, argument or None)`` of ``name`` / ``name:ARGUMENT`` (split at the first
    colon); an unknown name raises :class:`~faceforge.errors.UnknownChoiceError`."""
    name, _, argument = spec.partition(":")
    DETECTORS.get(name, field="--detector")
    return name, argument or None


def build_detector(
    spec: str, device: Device = None, *, min_face_size: float = 20.0, threads: int = 0
) -> Detector:
    """The detector ``spec`` names (see the module docs), on ``device`` (``None``/``"auto"``:
    CUDA when available). Faces smaller than ``min_face_size`` pixels are not reported;
    ``threads`` bounds ONNX Runtime's threads (0: one per core)."""
    name, argument = parse_detector_spec(spec)
    return DETECTORS.get(name)(argument, device, min_face_size, threads)
