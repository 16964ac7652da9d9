"""One training step: gradient clipping covers backbone and head, not the center-loss centers."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from test_main import tiny_config

from faceforge.train.engine import train_step
from faceforge.train.main import setup


def _grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters()]


def test_center_loss_does_not_scale_down_the_backbone_gradient(tmp_path: Path) -> None:
    """With center loss, the centers' surrogate gradient is large (it does not scale with
    loss.center_weight); clipping must leave it out, or every backbone gradient shrinks."""
    cfg = tiny_config(
        tmp_path, "loss.center_weight=0.005", "loss.center_lr=0.5", "augment.cutout_prob=0"
    )
    run, state = setup(cfg, log=lambda _: None)
    model = run.model_without_ddp
    with torch.no_grad():  # centers far from the embeddings: a large center-loss gradient
        model.loss.center.centers.fill_(2000.0)
    batch = next(iter(run.loader(epoch=0)))
    # reference gradients without clipping or stepping, computed from the same batch
    images, labels = run.inputs(batch)
    total, _ = model(images, labels)
    total.backward()
    backbone_head = [*_grads(model.backbone), *_grads(model.head)]
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in backbone_head]))
    centers_norm = model.loss.center.centers.grad.norm()
    assert centers_norm > 10 * norm  # the situation the bug needs
    run.optimizer.zero_grad(set_to_none=True)
    # clip just above the backbone+head norm: nothing of theirs may be scaled (the step
    # leaves the gradients in place to compare)
    run.cfg = tiny_config(tmp_path, "loss.center_weight=0.005", f"optim.grad_clip={2 * norm}")
    train_step(run, state, batch)
    after = [*_grads(model.backbone), *_grads(model.head)]
    for expected, got in zip(backbone_head, after, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    # the centers' gradient is not clipped either (it is a separate, paper-defined update)
    assert model.loss.center.centers.grad.norm() > 10 * norm


def test_a_few_center_loss_steps_train_the_centers(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "loss.center_weight=0.005", "train.max_steps=3")
    run, state = setup(cfg, log=lambda _: None)
    batches = iter(run.loader(epoch=0))
    losses = [train_step(run, state, next(batches)) for _ in range(3)]
    assert set(losses[0]) == {"loss", "ce", "center"}
    assert run.model_without_ddp.loss.center.centers.abs().sum() > 0
    assert all(torch.isfinite(parts["loss"]) for parts in losses)


def test_accumulated_step_sums_the_batches_gradients(tmp_path: Path) -> None:
    import copy

    cfg = tiny_config(tmp_path, "train.accumulate=2", "optim.grad_clip=0", "augment.cutout_prob=0")
    run, state = setup(cfg, log=lambda _: None)
    assert run.steps_per_epoch == 16 // (4 * 2)
    batches = list(run.loader(epoch=0))[:2]
    reference = copy.deepcopy(run.model)
    expected = []
    for batch in batches:
        images, labels = run.inputs(batch)
        reference.zero_grad()
        reference(images, labels)[0].backward()
        expected.append([p.grad.clone() for p in reference.backbone.parameters()])
    parts = train_step(run, state, *batches)
    assert state.step == 1 and set(parts) == {"loss", "ce"}
    for got, first, second in zip(run.backbone.parameters(), *expected, strict=False):
        torch.testing.assert_close(got.grad, (first + second) / 2, rtol=1e-4, atol=1e-6)


def test_fp16_non_finite_loss_skips_the_step_then_stops(tmp_path: Path) -> None:
    import pytest

    from faceforge.errors import TrainingError

    run, state = setup(tiny_config(tmp_path, "train.max_skipped_steps=2"), log=lambda _: None)
    run.scaler = torch.amp.GradScaler("cpu", enabled=True)  # what fp16 on CUDA uses
    batches = iter(run.loader(epoch=0))
    train_step(run, state, next(batches))
    before = {k: v.clone() for k, v in run.backbone.named_parameters()}
    with torch.no_grad():
        next(run.model.head.parameters()).fill_(float("nan"))
    assert train_step(run, state, next(batches)) == {}
    assert train_step(run, state, next(batches)) == {}
    assert (state.step, state.skipped_steps) == (3, 2)
    assert all(torch.equal(v, before[k]) for k, v in run.backbone.named_parameters())
    with pytest.raises(TrainingError, match="non-finite for 3 steps in a row"):
        train_step(run, state, next(batches))


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    from faceforge.models import build_backbone

    torch.manual_seed(0)
    plain = build_backbone("iresnet18", embedding_size=8).train()
    checkpointed = build_backbone("iresnet18", embedding_size=8).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.set_grad_checkpointing()
    x = torch.randn(2, 3, 112, 112)
    plain(x).square().sum().backward()
    checkpointed(x).square().sum().backward()
    for a, b in zip(plain.parameters(), checkpointed.parameters(), strict=True):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5)


def test_a_first_step_skipped_by_the_grad_scaler_steps_the_schedule_silently(
    tmp_path: Path,
) -> None:
    """fp16 on CUDA: the GradScaler's initial scale often overflows the first gradients,
    so the optimizer skips that step. The schedule still advances with the step counter,
    and PyTorch's 'lr_scheduler.step() before optimizer.step()' warning (a false alarm
    here) is not shown. Simulated on the CPU with a scale that overflows for sure."""
    run, state = setup(tiny_config(tmp_path, "optim.warmup_steps=4"), log=lambda _: None)
    run.scaler = torch.amp.GradScaler("cpu", init_scale=float("inf"))
    before = [p.detach().clone() for p in run.backbone.parameters()]
    batch = next(iter(run.loader(epoch=0)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_step(run, state, batch)
    assert [str(w.message) for w in caught] == []
    assert all(torch.equal(p, b) for p, b in zip(run.backbone.parameters(), before, strict=True))
    assert state.step == run.scheduler.last_epoch == 1
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 2 / 4)  # warmup step 2
