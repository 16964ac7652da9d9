"""The CUDA paths: fp16 with loss scaling, bf16, channels-last, and the prefetcher. They run
where a GPU is present and skip, saying why, everywhere else."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from test_main import tiny_config

from faceforge.data.loader import CudaPrefetcher
from faceforge.train.engine import train_step
from faceforge.train.main import fit, setup

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (this machine has none)"
)


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_training_steps_on_cuda(tmp_path: Path, amp: str) -> None:
    cfg = tiny_config(tmp_path, "train.device=cuda", f"train.amp={amp}", "train.channels_last=true")
    run, state = setup(cfg, log=lambda _: None)
    assert run.scaler.is_enabled() == (amp == "fp16")
    summary = fit(run, state)
    assert summary.steps == 4 and torch.isfinite(torch.tensor(summary.final_loss))
    assert next(run.backbone.parameters()).is_cuda


def test_the_prefetcher_hands_out_batches_on_the_device(tmp_path: Path) -> None:
    run, _ = setup(tiny_config(tmp_path, "train.device=cuda"), log=lambda _: None)
    batches = list(run.loader(epoch=0))
    assert isinstance(run._batches, CudaPrefetcher)
    assert all(b.images.is_cuda and b.labels.is_cuda for b in batches)


def test_fp16_steps_skipped_by_the_grad_scaler_do_not_warn(tmp_path: Path) -> None:
    """The first fp16 steps often overflow at the GradScaler's initial scale; the skipped
    optimizer step must not make PyTorch warn about the schedule (forced here)."""
    cfg = tiny_config(tmp_path, "train.device=cuda", "train.amp=fp16")
    run, state = setup(cfg, log=lambda _: None)
    run.scaler = torch.amp.GradScaler("cuda", init_scale=float("inf"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in list(run.loader(epoch=0))[:2]:
            train_step(run, state, batch)
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]
    assert state.step == run.scheduler.last_epoch == 2
