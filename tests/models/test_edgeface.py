"""EdgeFace: parameter and FLOP figures match the paper, the low-rank layers have its rank;
state-dict compatibility with the official networks is in test_foreign_layouts.py."""

from __future__ import annotations

import pytest

from faceforge.models import count_macs, count_parameters
from faceforge.models.edgeface import EdgeFace
from tests.models.reference_states import on_meta

#: Table 2 of https://arxiv.org/abs/2307.01838: (parameters in M, MFLOPs at 112x112); the
#: paper's FLOPs are two per multiply-accumulate
PAPER = {"edgeface_xs_gamma_06": (1.77, 154), "edgeface_s_gamma_05": (3.65, 306)}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_parameters_and_flops_match_the_paper(name: str) -> None:
    params, mflops = PAPER[name]
    model = on_meta(name)
    assert count_parameters(model) / 1e6 == pytest.approx(params, abs=0.005)
    assert 2 * count_macs(model) / 1e6 == pytest.approx(mflops, abs=0.5)


def test_low_rank_layers_have_edgefaces_rank() -> None:
    """rank = max(2, int(gamma * min(in, out))): 0.6 * 32 -> 19 in the first MLP."""
    model = on_meta("edgeface_xs_gamma_06")
    assert isinstance(model, EdgeFace)
    fc1 = model.model.stages[0].blocks[0].mlp.fc1
    assert (fc1.linear1.in_features, fc1.linear1.out_features) == (32, 19)
    assert fc1.linear1.bias is None and fc1.linear2.out_features == 128
