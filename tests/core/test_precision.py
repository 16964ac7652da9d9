"""Precision names resolve to what the device computes natively; emulated bf16 warns."""

from __future__ import annotations

import warnings

import pytest
import torch

from faceforge.config import builtin_config_path
from faceforge.core import precision
from faceforge.core.precision import EmulatedPrecisionWarning, resolve_precision
from faceforge.train.recipe import load_recipe

CPU = torch.device("cpu")


@pytest.fixture(params=[False, True], ids=["avx2", "avx512_bf16"])
def cpu_kind(request, monkeypatch) -> bool:
    """Both CPU kinds on any machine: whether bf16 is native is what the choice depends on."""
    monkeypatch.setattr(precision, "native_bf16", lambda device: request.param)
    return request.param


def resolve_quietly(name: str) -> torch.dtype | None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return resolve_precision(name, CPU).dtype


def test_auto_picks_bf16_only_where_it_is_native(cpu_kind):
    assert resolve_quietly("auto") == (torch.bfloat16 if cpu_kind else None)
    assert resolve_quietly("fp32") is None


def test_bf16_on_a_cpu_that_emulates_it_warns_with_the_cost(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    with pytest.warns(EmulatedPrecisionWarning, match="emulated.*slower than fp32.*auto"):
        assert resolve_precision("bf16", CPU).dtype == torch.bfloat16


def test_bf16_where_native_is_quiet(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert resolve_quietly("bf16") == torch.bfloat16


def test_fp16_on_a_cpu_falls_back_to_what_auto_picks(cpu_kind):
    expected = "bf16" if cpu_kind else "fp32"
    with pytest.warns(EmulatedPrecisionWarning, match=f"needs CUDA; using {expected}"):
        dtype = resolve_precision("fp16", CPU).dtype
    assert dtype == (torch.bfloat16 if cpu_kind else None)


SHIPPED = sorted(p.stem for p in builtin_config_path("quickstart").parent.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_no_recipe_picks_a_precision_the_machine_emulates(name, cpu_kind):
    cfg = load_recipe(name)
    assert cfg.train.amp == "auto"
    assert resolve_quietly(cfg.train.amp) == (torch.bfloat16 if cpu_kind else None)
