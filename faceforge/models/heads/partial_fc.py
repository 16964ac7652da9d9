"""Partial FC: a margin-based cosine classifier whose class centres are sharded across ranks,
optionally sampling a fraction of the negative centres each step.
An et al. 2021, https://arxiv.org/abs/2010.05222."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from faceforge.errors import ConfigError
from faceforge.models.heads.dist_softmax import gather_rows, gather_with_grad, sharded_cross_entropy
from faceforge.models.heads.margins import Margin


def _shard_sizes(num_classes: int, world_size: int) -> list[int]:
    """Class rows held by each rank: contiguous shards, the first ``num_classes % world_size``
    ranks holding one row more (as in insightface)."""
    base, extra = divmod(num_classes, world_size)
    return [base + (rank < extra) for rank in range(world_size)]


class PartialFC(nn.Module):
    """Cosine FC layer + margin + softmax cross-entropy for very many classes (Partial FC).

    Rank ``r`` of ``world_size`` holds only the class centres
    ``[class_start, class_start + num_local)`` in ``weight`` (N(0, 0.01) like
    :class:`~faceforge.models.heads.classifier.CosineClassifier`), so the weight, its gradient
    and optimizer state take O(num_classes / world_size) memory per rank. ``forward``
    all-gathers the embeddings (gradients flow back to each rank) and labels of every rank,
    computes the cosines of the whole batch against this rank's centres, applies ``margin``
    (any shardable :class:`~faceforge.models.heads.margins.Margin`, given the cosines, labels
    and the gathered embeddings' norms; rows whose class is on another rank are labelled -1
    and left without margin), and returns the softmax cross-entropy over all classes of all
    ranks, computed without gathering the logits.

    With ``sample_rate < 1`` in training mode, each rank keeps the centres of every class in
    the global batch that it holds and random other centres of its shard, up to
    ``max(ceil(sample_rate * num_local), positives)`` rows, and computes logits for these only
    (the paper's PFC-r). The draw uses the default generator on the weight's device.

    Every rank passes a batch of the same size. The weight belongs to this rank alone: keep
    this module out of ``DistributedDataParallel``, which would average different classes'
    gradients. :meth:`shard` and :meth:`gather` convert full ``(num_classes, ...)`` tensors
    (the weight, its optimizer state) to this rank's rows and back, e.g. for checkpoints.

    >>> import torch
    >>> from faceforge.models.heads import ArcFace
    >>> head = PartialFC(ArcFace(64.0, 0.5), 128, num_classes=1000, sample_rate=0.1)
    >>> loss = head(torch.randn(8, 128), torch.randint(0, 1000, (8,)))
    >>> loss.shape, head.weight.shape
    (torch.Size([]), torch.Size([1000, 128]))
    """

    def __init__(
        self,
        margin: Margin,
        embedding_size: int,
        num_classes: int,
        sample_rate: float = 1.0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        _check_arguments(num_classes, sample_rate, rank, world_size)
        self.margin = margin
        # a row's target cosine lives on one rank only (CurricularFace gathers it)
        margin.sharded = world_size > 1
        self.num_classes = num_classes
        self.sample_rate = sample_rate
        self.rank, self.world_size = rank, world_size
        self.shard_sizes = _shard_sizes(num_classes, world_size)
        self.num_local = self.shard_sizes[rank]
        self.class_start = sum(self.shard_sizes[:rank])
        self.weight = nn.Parameter(torch.empty(self.num_local, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The mean cross-entropy over the global batch (every rank's ``embeddings`` (B, D) and
        ``labels`` (B,) in ``[0, num_classes)``): a 0-d tensor, the same on every rank.

        Computed in float32 (float64 stays float64) with autocast off, as in
        :class:`~faceforge.models.heads.base.Head`.
        """
        if embeddings.dim() != 2 or labels.shape != embeddings.shape[:1]:
            raise ValueError(
                f"expected embeddings (B, D) and labels (B,); got {tuple(embeddings.shape)} "
                f"and {tuple(labels.shape)}"
            )
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        with torch.autocast(embeddings.device.type, enabled=False):
            embeddings, labels = self._global_batch(embeddings.to(dtype), labels.long())
            weight, labels = self._sample(self._local_labels(labels))
            cosine = _cosine(embeddings, weight.to(dtype))
            logits = self.margin(cosine, labels, embeddings.norm(dim=1))
            return sharded_cross_entropy(logits, labels, self.world_size > 1)

    def shard(self, full: Tensor) -> Tensor:
        """This rank's rows (a view) of a ``(num_classes, ...)`` tensor."""
        if full.shape[:1] != (self.num_classes,):
            raise ValueError(f"expected {self.num_classes} rows; got shape {tuple(full.shape)}")
        return full.narrow(0, self.class_start, self.num_local)

    def gather(self, local: Tensor) -> Tensor:
        """The ``(num_classes, ...)`` tensor made of every rank's ``(num_local, ...)`` rows; a
        collective that every rank calls (``local`` itself when ``world_size`` is 1)."""
        if local.shape[:1] != (self.num_local,):
            raise ValueError(f"expected {self.num_local} rows; got shape {tuple(local.shape)}")
        if self.world_size == 1:
            return local
        self._check_process_group()
        return gather_rows(local, self.shard_sizes)

    def _global_batch(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Every rank's batch concatenated in rank order."""
        if self.world_size == 1:
            return embeddings, labels
        self._check_process_group()
        counts = [labels.shape[0]] * self.world_size
        return gather_with_grad(embeddings), gather_rows(labels, counts)

    def _local_labels(self, labels: Tensor) -> Tensor:
        """Global class ids as rows of this shard, -1 for classes held by other ranks."""
        local = labels - self.class_start
        return torch.where((local >= 0) & (local < self.num_local), local, -1)

    def _sample(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The centres to score (all, or the positives plus random negatives when sampling in
        training) and ``labels`` remapped to their rows."""
        if not self.training or self.sample_rate == 1.0:
            return self.weight, labels
        with torch.no_grad():
            held = labels != -1
            positives = labels[held].unique()
            count = max(math.ceil(self.sample_rate * self.num_local), positives.numel())
            score = torch.rand(self.num_local, device=self.weight.device)
            score[positives] = 2.0  # above every random score: positives are always kept
            rows = score.topk(count).indices.sort().values
            labels = torch.where(held, torch.searchsorted(rows, labels), -1)
        return self.weight[rows], labels

    def _check_process_group(self) -> None:
        group = (dist.get_rank(), dist.get_world_size())
        if group != (self.rank, self.world_size):
            raise RuntimeError(
                f"PartialFC was built for rank {self.rank} of {self.world_size}, but this "
                f"process is rank {group[0]} of {group[1]} in the default process group"
            )


def _cosine(embeddings: Tensor, weight: Tensor) -> Tensor:
    """Cosines (N, C) of embeddings and class centres. Dividing by the centres' norms instead
    of normalising the weight avoids weight-sized copies (the normalised weight kept for
    backward, and its gradients): the head's peak falls from about 7 to 5 weights' worth."""
    norms = weight.norm(dim=1).clamp_min(1e-12)  # the eps of F.normalize
    return F.linear(F.normalize(embeddings, dim=1), weight) / norms


def _check_arguments(num_classes: int, sample_rate: float, rank: int, world_size: int) -> None:
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, world_size={world_size}); got {rank}")
    if num_classes < world_size:
        raise ConfigError(
            f"Partial FC needs at least one class per rank: {num_classes} classes for "
            f"{world_size} ranks"
        )
    if not 0.0 < sample_rate <= 1.0:
        raise ConfigError(f"sample_rate must be in (0, 1] (typically 0.1 to 1); got {sample_rate}")
