"""Embed many aligned face images as fast as the hardware allows without losing accuracy.

The backbone runs on an eval-mode *copy* prepared for inference (the caller's model is never
modified): BatchNorm folded into the preceding convolution / linear layer, weights and inputs
in ``channels_last`` layout, ``torch.inference_mode``, and bfloat16 autocast on CPUs that
compute bf16 natively (AVX512-BF16 / AMX) or fp16 autocast on CUDA. On CPU the network sees
micro-batches of 16 images, which keeps activations in cache and measured faster than
larger batches. uint8 -> float normalisation happens in torch on the target device.

>>> import numpy as np
>>> from faceforge.models import build_backbone
>>> model = build_backbone("mobilefacenet", embedding_size=128)
>>> embed_images(model, np.zeros((3, 112, 112, 3), np.uint8)).shape
(3, 128)
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from faceforge.core.precision import resolve_precision
from faceforge.core.preprocess import Preprocess
from faceforge.errors import DataError

#: images per forward pass on CPU (see the module docstring)
CPU_MICRO_BATCH = 16


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a parameter-free module)."""
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Copy of an eval-mode ``model`` where each BatchNorm fed only by a convolution or linear
    layer is folded into that layer's weights (one op instead of two at inference).

    The model is traced with ``torch.fx``; tracing errors propagate to the caller.
    """
    traced = torch.fx.symbolic_trace(copy.deepcopy(model))
    modules = dict(traced.named_modules())
    for node in list(traced.graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        source = node.args[0] if node.args else None
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or not bn.track_running_stats:
            continue
        if not isinstance(source, torch.fx.Node) or source.op != "call_module":
            continue
        if len(source.users) != 1:
            continue
        layer = modules[source.target]
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            fused = fuse_conv_bn_eval(layer, bn)
        elif isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
            fused = fuse_linear_bn_eval(layer, bn)
        else:
            continue
        parent, _, name = source.target.rpartition(".")
        setattr(traced.get_submodule(parent) if parent else traced, name, fused)
        node.replace_all_uses_with(source)
        traced.graph.erase_node(node)
    traced.graph.lint()
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced


def inference_copy(
    model: nn.Module,
    device: torch.device,
    *,
    fold_bn: bool = True,
    channels_last: bool = True,
) -> nn.Module:
    """An eval-mode copy of ``model`` on ``device``, BatchNorm folded where possible.

    A model that ``torch.fx`` cannot trace is copied unfolded. The output is the same
    function up to floating-point rounding; ``model`` itself is left as it was.
    """
    was_training = model.training
    model.eval()
    try:
        prepared = None
        if fold_bn:
            with contextlib.suppress(Exception):  # untraceable model: keep it unfolded
                prepared = fold_batchnorm(model)
        if prepared is None:
            prepared = copy.deepcopy(model)
    finally:
        model.train(was_training)
    prepared.eval().to(device)
    if channels_last:
        prepared.to(memory_format=torch.channels_last)
    return prepared


@contextlib.contextmanager
def _inference_context(device: torch.device, autocast: torch.dtype | None) -> Iterator[None]:
    with torch.inference_mode():
        if autocast is None:
            yield
        else:
            # autocast caches the cast weights (leaf tensors requiring grad) within the region,
            # so the micro-batches of one call share them
            with torch.autocast(device.type, dtype=autocast):
                yield


class BatchEmbedder:
    """A backbone prepared once (:func:`inference_copy`) to embed many uint8 NHWC batches.

    See :func:`embed_images` for the options. Not thread-safe: use one per thread.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocess: Preprocess | None = None,
        *,
        device: str | torch.device | None = None,
        precision: str = "auto",
        channels_last: bool = True,
        fold_bn: bool = True,
        micro_batch: int | None = None,
    ) -> None:
        self.preprocess = preprocess or Preprocess()
        self.device = torch.device(device) if device is not None else model_device(model)
        self.autocast = resolve_precision(precision, self.device).dtype
        self.channels_last = channels_last
        self.model = inference_copy(
            model, self.device, fold_bn=fold_bn, channels_last=channels_last
        )
        if micro_batch is None:
            micro_batch = CPU_MICRO_BATCH if self.device.type == "cpu" else 1 << 30
        self.micro_batch = micro_batch
        self._scale, self._shift = self.preprocess.affine(self.device)

    def _input(self, images: np.ndarray) -> torch.Tensor:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise DataError(
                f"expected uint8 images of shape (N, H, W, 3), got {images.dtype} {images.shape}"
            )
        if tuple(images.shape[1:3]) != tuple(self.preprocess.input_size):
            raise DataError(
                f"images are {images.shape[2]}x{images.shape[1]} but the model expects "
                f"{self.preprocess.input_size[1]}x{self.preprocess.input_size[0]}"
            )
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: already channels_last
        if self.preprocess.color.upper() == "BGR":
            x = x.flip(1)
        x = x.float() if self.channels_last else x.contiguous().float()
        return x.mul_(self._scale).sub_(self._shift)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        step = self.micro_batch
        return torch.cat([self.model(x[i : i + step]) for i in range(0, len(x), step)]).float()

    def views(self, images: np.ndarray, flip: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw float32 embeddings of ``images`` and, with ``flip``, of their mirror images."""
        with _inference_context(self.device, self.autocast):
            x = self._input(np.asarray(images))
            plain = self._forward(x).cpu().numpy()
            mirrored = self._forward(x.flip(3)).cpu().numpy() if flip else None
        return plain, mirrored

    def embed(self, images: np.ndarray, flip: bool = False) -> np.ndarray:
        """Raw float32 embeddings, the mirrored view added when ``flip``."""
        plain, mirrored = self.views(images, flip)
        return plain if mirrored is None else plain + mirrored


def iter_embedding_views(
    model: nn.Module,
    batches: Iterable[np.ndarray],
    preprocess: Preprocess | None = None,
    *,
    flip: bool = False,
    device: str | torch.device | None = None,
    precision: str = "auto",
    channels_last: bool = True,
    fold_bn: bool = True,
    micro_batch: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield ``(embeddings, mirrored_embeddings or None)`` per uint8 (n, H, W, 3) RGB batch.

    Raw (unnormalised) float32 embeddings; the mirrored view is computed only with ``flip``.
    Use this for sets too large to hold in memory; see :func:`embed_images` for the options.
    """
    embedder = BatchEmbedder(
        model,
        preprocess,
        device=device,
        precision=precision,
        channels_last=channels_last,
        fold_bn=fold_bn,
        micro_batch=micro_batch,
    )
    for batch in batches:
        yield embedder.views(batch, flip)


def _batches(images: np.ndarray, batch_size: int, progress: bool, desc: str) -> Iterator[Any]:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(images), desc=desc, unit="img")
    try:
        for start in range(0, len(images), batch_size):
            yield images[start : start + batch_size]
            if bar is not None:
                bar.update(min(batch_size, len(images) - start))
    finally:
        if bar is not None:
            bar.close()


def embed_image_views(
    model: nn.Module,
    images: np.ndarray,
    preprocess: Preprocess | None = None,
    *,
    batch_size: int = 64,
    flip: bool = True,
    device: str | torch.device | None = None,
    precision: str = "auto",
    channels_last: bool = True,
    fold_bn: bool = True,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw float32 embeddings of ``images`` and (with ``flip``) of their mirror images.

    Evaluation needs both views separately for insightface's XNorm; otherwise use
    :func:`embed_images`.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be positive, got {batch_size}")
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise DataError(f"expected a non-empty (N, H, W, 3) image array, got {images.shape}")
    plain_parts: list[np.ndarray] = []
    mirrored_parts: list[np.ndarray] = []
    for plain, mirrored in iter_embedding_views(
        model,
        _batches(images, batch_size, progress, "embedding"),
        preprocess,
        flip=flip,
        device=device,
        precision=precision,
        channels_last=channels_last,
        fold_bn=fold_bn,
    ):
        plain_parts.append(plain)
        if mirrored is not None:
            mirrored_parts.append(mirrored)
    return np.concatenate(plain_parts), (np.concatenate(mirrored_parts) if flip else None)


def embed_images(
    model: nn.Module,
    images: np.ndarray,
    preprocess: Preprocess | None = None,
    *,
    batch_size: int = 64,
    flip: bool = False,
    device: str | torch.device | None = None,
    precision: str = "auto",
    channels_last: bool = True,
    fold_bn: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """Raw (unnormalised) float32 (N, D) embeddings of uint8 (N, H, W, 3) RGB aligned faces.

    ``flip`` adds the embedding of the mirrored image (insightface's flip test-time
    augmentation). ``preprocess`` defaults to 112x112 RGB mapped to [-1, 1]. ``device``
    defaults to the model's; ``precision`` is ``"auto"`` (bf16 autocast on CPUs with native
    bf16, fp16 on CUDA, else fp32), ``"fp32"``, ``"bf16"`` or ``"fp16"``. ``batch_size``
    images are converted at a time; on CPU the network runs them 16 at a time. The caller's
    model is not modified (nor left in another train/eval mode).
    """
    plain, mirrored = embed_image_views(
        model,
        images,
        preprocess,
        batch_size=batch_size,
        flip=flip,
        device=device,
        precision=precision,
        channels_last=channels_last,
        fold_bn=fold_bn,
        progress=progress,
    )
    return plain if mirrored is None else plain + mirrored
