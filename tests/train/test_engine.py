"""One training step: gradient clipping covers backbone and head, not the center-loss centers."""

from __future__ import annotations

from pathlib import Path

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
