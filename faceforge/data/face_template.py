"""Where the five landmarks sit in an aligned face crop: the ArcFace template.

The template is the one insightface's ``norm_crop`` warps to (eyes, nose tip, mouth corners
of a 112x112 crop). Alignment (:mod:`faceforge.data.alignment`) warps photos onto it;
training augmentations that draw on the face (:mod:`faceforge.data.face_masks`) read from it
where the nose and mouth of an aligned training crop are.
"""

from __future__ import annotations

import numpy as np

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

TEMPLATES = {"arcface": ARCFACE_TEMPLATE}


def template_points(size: tuple[int, int] = (112, 112), template: str = "arcface") -> np.ndarray:
    """Template landmarks (5, 2) for an output of ``size`` = (height, width).

    Square sizes that are multiples of 112 scale the template; multiples of 128 scale it by
    size/128 and centre it with an 8*size/128 pixel x offset (insightface's convention);
    (112k, 96k) scales by k and shifts x by -8k (the 112x96 crop).
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown alignment template {template!r}; known: {sorted(TEMPLATES)}")
    points = TEMPLATES[template]
    height, width = size
    if height == width and height % 112 == 0:
        ratio, shift = height / 112, 0.0
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
