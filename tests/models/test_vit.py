"""ViT-T/S/B/L: the MACs match arcface_torch's published figures and a count from the
dimensions, and the training regularisers (token masking, stochastic depth) do what they say;
arcface_torch state-dict compatibility is in test_foreign_layouts.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from faceforge.errors import ConfigError
from faceforge.models import build_backbone, count_macs
from faceforge.models.vit import drop_path
from tests.models.reference_states import on_meta

#: (width, depth) of arcface_torch's vit_t, vit_s, vit_b and vit_l_dp005_mask_005
DIMENSIONS = {"vit_t": (256, 12), "vit_s": (512, 12), "vit_b": (512, 24), "vit_l": (768, 24)}
#: "FLOPs" (G, they are multiply-accumulates) of arcface_torch README's ViT table
PUBLISHED_GMACS = {"vit_t": 1.5, "vit_s": 5.7, "vit_b": 11.4, "vit_l": 25.3}


@pytest.mark.parametrize("name", sorted(DIMENSIONS))
def test_macs_match_dimensions_and_arcface_torch_figures(name: str) -> None:
    """Per image: 9x9x3 patch projection of 144 tokens; per block qkv (3 d^2), proj (d^2)
    and the 4x MLP (8 d^2) per token plus the two attention products q k^T and weights v
    (tokens^2 d each); the head's 144 d -> d and d -> 512 linear layers."""
    width, depth = DIMENSIONS[name]
    tokens = 144
    block = tokens * 12 * width**2 + 2 * tokens**2 * width
    expected = tokens * width * 3 * 81 + depth * block + tokens * width * width + width * 512
    macs = count_macs(on_meta(name))
    assert macs == expected
    assert macs / 1e9 == pytest.approx(PUBLISHED_GMACS[name], abs=0.05)  # one decimal given


def test_masking_keeps_a_fixed_share_of_tokens_and_fills_the_rest_with_the_mask_token() -> None:
    model = build_backbone("vit_t", embedding_size=8)
    model.blocks, model.norm = nn.ModuleList(), nn.Identity()  # the encoder as identity
    tokens = torch.randn(3, 144, 256)
    with torch.no_grad():
        out = model.train().encode_masked(tokens)
    is_mask = (out == model.mask_token).all(dim=-1)
    assert is_mask.sum(dim=1).tolist() == [144 - int(144 * 0.9)] * 3
    torch.testing.assert_close(out[~is_mask], tokens[~is_mask], rtol=0, atol=0)
    assert not torch.equal(is_mask[0], is_mask[1])  # drawn per sample


def test_eval_is_deterministic_and_unmasked() -> None:
    model = build_backbone("vit_t", embedding_size=8).eval()
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(model(x), out, rtol=0, atol=0)
        unmasked = model.feature(model.encode(model.patch_embed(x) + model.pos_embed).flatten(1))
    torch.testing.assert_close(out, unmasked, rtol=0, atol=0)


def test_mask_ratio_zero_freezes_the_unused_mask_token() -> None:
    """DistributedDataParallel stalls on a trainable parameter that gets no gradient."""
    assert on_meta("vit_t").mask_token.requires_grad
    assert not on_meta("vit_t", mask_ratio=0.0).mask_token.requires_grad
    with pytest.raises(ConfigError, match="mask_ratio"):
        on_meta("vit_t", mask_ratio=1.0)


def test_drop_path_zeroes_whole_samples_and_keeps_the_expectation() -> None:
    x = torch.ones(10_000, 4, 2)
    torch.manual_seed(0)
    out = drop_path(x, 0.25, training=True)
    per_sample = out.flatten(1)
    assert ((per_sample == 0) | (per_sample == 1 / 0.75)).all()
    assert (per_sample == per_sample[:, :1]).all()  # a sample is dropped whole
    # kept share ~ Binomial(10_000, 0.75): standard deviation 0.0043, 5 sigma
    assert (per_sample[:, 0] > 0).float().mean().item() == pytest.approx(0.75, abs=0.022)
    assert torch.equal(drop_path(x, 0.25, training=False), x)


def test_grad_checkpointing_gives_the_same_gradients() -> None:
    """Recomputing blocks in the backward pass changes memory, not results (no masking or
    stochastic depth, so both runs see the same network)."""
    torch.manual_seed(0)
    model = build_backbone("vit_t", embedding_size=8, drop_path=0.0, mask_ratio=0.0).train()
    x = torch.rand(2, 3, 112, 112) * 2 - 1

    def gradients() -> list[torch.Tensor]:
        model.zero_grad()
        model(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters() if p.requires_grad]

    plain = gradients()
    model.set_grad_checkpointing()
    for ours, reference in zip(gradients(), plain, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-7)
