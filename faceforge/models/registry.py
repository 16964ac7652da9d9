"""Backbone registry and the public factory :func:`build_backbone`."""

from __future__ import annotations

from typing import Any

from torch import nn

from faceforge.models import (
    edgeface,
    inception_resnet,
    iresnet,
    minifasnet,
    mobilefacenet,
    mobilenet,
    resnet,
    sknet,
    sphereface,
    vit,
)
from faceforge.registry import Registry

BACKBONES: Registry[nn.Module] = Registry.of(
    "backbone",
    {
        "mobilefacenet": mobilefacenet.mobilefacenet,
        "iresnet18": iresnet.iresnet18,
        "iresnet34": iresnet.iresnet34,
        "iresnet50": iresnet.iresnet50,
        "iresnet100": iresnet.iresnet100,
        "iresnet200": iresnet.iresnet200,
        "se_iresnet50": iresnet.se_iresnet50,
        "mobilenetv1_1_0": mobilenet.mobilenetv1_1_0,
        "mobilenetv1_0_5": mobilenet.mobilenetv1_0_5,
        "mobilenetv1_0_25": mobilenet.mobilenetv1_0_25,
        "resnet50": resnet.resnet50,
        "sknet50": sknet.sknet50,
        "inception_resnet_v1": inception_resnet.inception_resnet_v1,
        "sphereface20": sphereface.sphereface20,
        "sphereface36": sphereface.sphereface36,
        "sphereface64": sphereface.sphereface64,
        "edgeface_xxs": edgeface.edgeface_xxs,
        "edgeface_xs_gamma_06": edgeface.edgeface_xs_gamma_06,
        "edgeface_s_gamma_05": edgeface.edgeface_s_gamma_05,
        "edgeface_base": edgeface.edgeface_base,
        "vit_t": vit.vit_t,
        "vit_s": vit.vit_s,
        "vit_b": vit.vit_b,
        "vit_l": vit.vit_l,
    },
    elsewhere={
        **{f"r{d}": f"arcface_torch's r{d} is iresnet{d}" for d in (18, 34, 50, 100, 200)},
        "mbf": "arcface_torch's mbf is mobilefacenet",
        **{f"ir_{d}": f"AdaFace's ir_{d} is iresnet{d}" for d in (18, 34, 50)},
        "ir_101": "AdaFace's ir_101 is iresnet100",
        "ir_se_50": "AdaFace's and TreB1eN's ir_se_50 is se_iresnet50",
        "vit_l_dp005_mask_005": "arcface_torch's vit_l_dp005_mask_005 is vit_l",
        **{
            f"vit_{size}_dp005_{mask}": f"arcface_torch's vit_{size}_dp005_{mask} is vit_{size}, "
            f"trained with drop_path=0.05, mask_ratio={rate}"
            for size, mask, rate in (("t", "mask0", 0), ("s", "mask_0", 0), ("b", "mask_005", 0.05))
        },
        "sphere20a": "SphereFace's sphere20a is sphereface20",
        "InceptionResnetV1": "facenet-pytorch's InceptionResnetV1 is inception_resnet_v1",
    },
)


def backbone_names() -> list[str]:
    """Sorted names accepted by :func:`build_backbone`."""
    return BACKBONES.names()


def build_backbone(name: str, embedding_size: int = 512, **kwargs: Any) -> nn.Module:
    """Build a face embedding backbone by name.

    Every backbone maps float (N, 3, H, W) images in [-1, 1] to raw, unnormalised
    (N, embedding_size) embeddings. ``kwargs`` go to the architecture: all accept
    ``dropout`` (applied just before the final embedding layer) and ``input_size``
    ((H, W), default (112, 112); (112, 96) for SphereFace-style crops). An unknown name raises a
    :class:`~faceforge.errors.UnknownChoiceError` listing the available ones.

    >>> import torch
    >>> model = build_backbone("mobilefacenet", embedding_size=128).eval()
    >>> model(torch.zeros(2, 3, 112, 112)).shape
    torch.Size([2, 128])
    """
    return BACKBONES.get(name)(embedding_size=embedding_size, **kwargs)


#: silent anti-spoofing classifiers (80x80 BGR 0-255 input, logits with index 1 = live)
ANTISPOOF_MODELS: Registry[nn.Module] = Registry.of(
    "anti-spoofing model",
    {
        "minifasnet_v1": minifasnet.minifasnet_v1,
        "minifasnet_v2": minifasnet.minifasnet_v2,
        "minifasnet_v1se": minifasnet.minifasnet_v1se,
        "minifasnet_v2se": minifasnet.minifasnet_v2se,
    },
)


def build_antispoof_model(name: str, num_classes: int = 3, **kwargs: Any) -> nn.Module:
    """Build a MiniFASNet anti-spoofing classifier by name (see :mod:`faceforge.models.minifasnet`);
    ``conv6_kernel`` must be the input size / 16 (5 for 80x80)."""
    return ANTISPOOF_MODELS.get(name)(num_classes=num_classes, **kwargs)
