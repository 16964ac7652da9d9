"""Where the five landmarks sit in an aligned face crop: the ArcFace and FaceNet templates.

The ArcFace template is the one insightface's ``norm_crop`` warps to (eyes, nose tip, mouth
corners of a 112x112 crop). The FaceNet template serves facenet-pytorch's models, which were
fed crops of the MTCNN box, not landmark alignments (see :data:`FACENET_TEMPLATE`).
Alignment (:mod:`faceforge.data.alignment`) warps photos onto a template; training
augmentations that draw on the face (:mod:`faceforge.data.face_masks`) read from the ArcFace
one where the nose and mouth of an aligned training crop are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceforge.registry import Registry

#: landmark positions (x, y) in a 112x112 ArcFace crop, in detection landmark order
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

#: mean landmark positions (x, y) in a 160x160 facenet-pytorch crop: ``extract_face`` takes
#: the MTCNN box plus a 14-pixel margin (``MTCNN(image_size=160, margin=14)`` of its LFW
#: evaluation, examples/lfw_evaluate.ipynb) and resizes it to a square. Measured with
#: faceforge's MTCNN (the same weights) on 599 LFW View 1 images (every 8th); per-image spread
#: ~4 px vertically, ~12 px horizontally. MTCNN boxes are ~1.33x taller than wide, so those
#: crops stretch faces horizontally; a 5-point similarity cannot stretch, so crops aligned to
#: this template place the face as facenet-pytorch does on average but keep its proportions:
#: an approximation of its preprocessing (tests/data/test_alignment.py measures how close).
FACENET_TEMPLATE = np.array(
    [
        [51.2599, 64.9594],
        [116.4374, 63.9594],
        [84.2588, 93.2859],
        [56.1258, 118.6599],
        [113.7747, 117.7971],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class Template:
    """Landmark positions (5, 2) in a square crop of ``side`` pixels."""

    points: np.ndarray
    side: int


#: alignment template name -> its landmarks (``--template``, the preprocessing contract's)
TEMPLATES: Registry[Template] = Registry.of(
    "alignment template",
    {
        "arcface": lambda: Template(ARCFACE_TEMPLATE, 112),
        "facenet": lambda: Template(FACENET_TEMPLATE, 160),
    },
)


def template_points(size: tuple[int, int] = (112, 112), template: str = "arcface") -> np.ndarray:
    """Template landmarks (5, 2) for an output of ``size`` = (height, width).

    Square sizes that are multiples of the template's side (112 for ArcFace, 160 for FaceNet)
    scale the template. For ArcFace, multiples of 128 scale it by size/128 and centre it with
    an 8*size/128 pixel x offset (insightface's convention); (112k, 96k) scales by k and shifts
    x by -8k (the 112x96 crop).
    """
    found = TEMPLATES.get(template)()
    points, side = found.points, found.side
    height, width = size
    if height == width and height % side == 0:
        ratio, shift = height / side, 0.0
    elif template != "arcface":
        raise ValueError(
            f"no {template} template for a {height}x{width} crop; use {side}k x {side}k"
        )
    elif height == width and height % 128 == 0:
        ratio = height / 128
        shift = 8.0 * ratio
    elif height % 112 == 0 and width * 112 == height * 96:
        ratio = height / 112
        shift = -8.0 * ratio
    else:
        raise ValueError(
            f"no {template} template for a {height}x{width} crop; use 112k x 112k, "
            "128k x 128k or 112k x 96k"
        )
    return points * ratio + np.array([shift, 0.0])
