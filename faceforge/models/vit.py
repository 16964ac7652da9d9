"""Vision Transformers for faces, key-compatible with insightface arcface_torch's ViTs.

Dosovitskiy et al., "An Image is Worth 16x16 Words", 2021, https://arxiv.org/abs/2010.11929,
as arcface_torch trains it on faces (``backbones/vit.py``, the ViT rows of its model zoo):
9x9 patches of a 112x112 crop (a 12x12 grid; the last 4 rows and columns are not seen),
learned position embeddings, no class token, pre-norm blocks with a ReLU6 MLP, and a
``feature`` head BN(Linear(all tokens)) -> BN(Linear) instead of pooling. Parameter and
buffer names and shapes are those of arcface_torch's ``vit_t``, ``vit_s``, ``vit_b`` and
``vit_l_dp005_mask_005`` (our ``vit_l``), so their ``backbone.pth`` files load with
``strict=True`` at 112x112; other input sizes (112x96) tile their own patch grid.

Training regularisers as in arcface_torch: stochastic depth (Huang et al. 2016,
https://arxiv.org/abs/1603.09382) rising linearly to ``drop_path`` over the blocks, and
random token masking: ``mask_ratio`` of the patch tokens skip the encoder and are replaced by
the learned ``mask_token`` before the head. Both are off in eval mode; the factories take
arcface_torch's rates as defaults and any keyword of :class:`VisionTransformer` (its WebFace42M
variants: ``drop_path=0.05, mask_ratio=0``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from faceforge.errors import ConfigError
from faceforge.models.iresnet import INPUT_SIZE

PATCH = 9
HEADS = 8
MLP_RATIO = 4
#: LayerNorm of PyTorch's default eps; the head's batch norms use insightface's 2e-5
HEAD_BN_EPS = 2e-5


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a residual branch for a random ``rate`` of the samples and
    rescale the others by 1 / (1 - rate), so the expectation is unchanged."""
    if not training or rate == 0.0:
        return x
    keep = torch.rand(x.shape[0], *(1,) * (x.dim() - 1), device=x.device) >= rate
    return x * keep.to(x.dtype) / (1.0 - rate)


class Attention(nn.Module):
    """Multi-head self-attention: bias-free fused ``qkv`` projection, biased ``proj``."""

    def __init__(self, dim: int, heads: int = HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, tokens, head_dim)
        # explicit matrix products (not fused attention): count_macs sees them, ONNX exports them
        weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """fc1 -> ReLU6 -> fc2, hidden width ``MLP_RATIO`` x ``dim``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * MLP_RATIO)
        self.act = nn.ReLU6()
        self.fc2 = nn.Linear(dim * MLP_RATIO, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; ``drop_rate`` is its stochastic-depth rate."""

    def __init__(self, dim: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)  # declared here, as in arcface_torch: same key order
        self.attn = Attention(dim)
        self.mlp = Mlp(dim)
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_rate, self.training)


class PatchEmbed(nn.Module):
    """Non-overlapping ``PATCH`` x ``PATCH`` patches projected to ``dim`` tokens."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def patch_count(input_size: tuple[int, int]) -> int:
    """Tokens of an input: whole patches per side, multiplied (144 for 112x112)."""
    height, width = input_size
    if height < PATCH or width < PATCH:
        raise ConfigError(f"a ViT needs inputs of at least {PATCH}x{PATCH}, got {height}x{width}")
    return (height // PATCH) * (width // PATCH)


class VisionTransformer(nn.Module):
    """ViT face embedder: (N, 3, H, W) in [-1, 1] -> raw (N, embedding_size) features.

    ``dropout`` acts on the flattened tokens before the ``feature`` head. With
    :meth:`set_grad_checkpointing`, training recomputes each block in the backward pass.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        embedding_size: int = 512,
        dropout: float = 0.0,
        input_size: tuple[int, int] = INPUT_SIZE,
        drop_path: float = 0.1,
        mask_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0.0 <= mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        tokens = patch_count(input_size)
        self.patch_embed = PatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(dim, rate) for rate in rates)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.feature = nn.Sequential(
            nn.Linear(dim * tokens, dim, bias=False),
            nn.BatchNorm1d(dim, eps=HEAD_BN_EPS),
            nn.Linear(dim, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size, eps=HEAD_BN_EPS),
        )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        # an unused parameter would stall DistributedDataParallel: frozen when never used
        self.mask_token.requires_grad_(mask_ratio > 0)
        self.mask_ratio = mask_ratio
        self.grad_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        """arcface_torch's: truncated normal (std 0.02) linear weights, positions and mask
        token (its normal draw); zero linear biases; defaults elsewhere."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.grad_checkpointing = enabled

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.grad_checkpointing and self.training:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.norm(x)

    def encode_masked(self, x: torch.Tensor) -> torch.Tensor:
        """Encode a random ``1 - mask_ratio`` of each sample's tokens; the others become the
        mask token, in place."""
        batch, tokens, dim = x.shape
        kept = int(tokens * (1 - self.mask_ratio))
        keep = torch.rand(batch, tokens, device=x.device).argsort(dim=1)[:, :kept]
        index = keep.unsqueeze(-1).expand(-1, -1, dim)
        encoded = self.encode(x.gather(1, index))
        filler = self.mask_token.to(encoded.dtype).expand(batch, tokens, dim)
        return filler.scatter(1, index, encoded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        masked = self.training and self.mask_ratio > 0
        x = self.encode_masked(x) if masked else self.encode(x)
        return self.feature(self.dropout(x.flatten(1)))


def vit_t(**kwargs: Any) -> VisionTransformer:
    """ViT-T (arcface_torch ``vit_t``): width 256, 12 blocks, 8 heads."""
    return VisionTransformer(256, 12, **kwargs)


def vit_s(**kwargs: Any) -> VisionTransformer:
    """ViT-S (arcface_torch ``vit_s``): width 512, 12 blocks, 8 heads."""
    return VisionTransformer(512, 12, **kwargs)


def vit_b(**kwargs: Any) -> VisionTransformer:
    """ViT-B (arcface_torch ``vit_b``): width 512, 24 blocks, 8 heads."""
    return VisionTransformer(512, 24, **kwargs)


def vit_l(**kwargs: Any) -> VisionTransformer:
    """ViT-L (arcface_torch ``vit_l_dp005_mask_005``): width 768, 24 blocks, 8 heads, lower
    stochastic depth and masking rates (0.05)."""
    return VisionTransformer(768, 24, **{"drop_path": 0.05, "mask_ratio": 0.05} | kwargs)
