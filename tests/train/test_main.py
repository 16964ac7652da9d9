"""The training main on tiny synthetic data: steps, exact resume, NaN guard, evaluation."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from faceforge.config import Config, load_config
from faceforge.core.checkpoint import Checkpoint
from faceforge.core.model_source import load_model
from faceforge.core.precision import Precision
from faceforge.data.synthetic import SyntheticFaces
from faceforge.errors import CheckpointError, TrainingError
from faceforge.train import main
from faceforge.train.build import TrainingRun
from faceforge.train.engine import train_step
from faceforge.train.main import fit, save, setup


def tiny_config(tmp_path: Path, *extra: str) -> Config:
    return load_config(
        None,
        [
            "data.synthetic.num_identities=4",
            "data.synthetic.images_per_identity=4",
            "model.embedding_size=64",
            "head.scale=16",
            "head.margin=0.2",
            "train.batch_size=4",
            "train.max_steps=4",
            "train.amp=fp32",  # the same numbers on every CPU kind
            "train.log_every=1",
            "train.progress=false",
            "train.tensorboard=false",
            "augment.hflip=0.5",
            "augment.cutout_prob=0.5",
            f"train.output_dir={tmp_path}",
            *extra,
        ],
    )


def quiet_setup(cfg: Config, resume: Path | None = None):
    return setup(cfg, resume, log=lambda _: None)


def weights(run: TrainingRun) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in run.backbone.state_dict().items()}


def test_two_steps_change_the_weights_and_write_checkpoints(tmp_path: Path) -> None:
    run, state = quiet_setup(tiny_config(tmp_path, "train.max_steps=2"))
    before = weights(run)
    summary = fit(run, state)
    assert summary.steps == 2
    assert torch.isfinite(torch.tensor(summary.final_loss))
    changed = [k for k, v in weights(run).items() if not torch.equal(v, before[k])]
    assert any("weight" in k for k in changed)
    ckpt = Checkpoint.load(tmp_path / "last.pt")
    assert ckpt.step == 2 and ckpt.config.train.max_steps == 2
    assert (tmp_path / "config.yaml").is_file()
    assert load_model(tmp_path / "last.pt").config.model.embedding_size == 64


def test_setup_says_what_it_trains_before_the_first_step(tmp_path: Path) -> None:
    lines: list[str] = []
    cfg = tiny_config(tmp_path, "train.max_steps=6", "train.accumulate=2")
    setup(cfg, log=lines.append)
    # 4 identities x 4 images, 2 x 4 images per step: 2 steps an epoch, 6 steps = 3 epochs
    assert lines == [
        "training mobilefacenet + arcface on 16 images of 4 identities (synthetic): 6 steps "
        f"of 8 images (3.0 epochs), fp32 (train.amp=fp32) on cpu, into {tmp_path}"
    ]
    lines.clear()
    one = tiny_config(tmp_path / "one", "train.max_steps=1", "train.channels_last=true")
    setup(one, log=lines.append)
    assert lines == [
        "training mobilefacenet + arcface on 16 images of 4 identities (synthetic): 1 step of "
        f"4 images (0.2 epochs), fp32 (train.amp=fp32), channels-last on cpu, into {tmp_path}/one"
    ]


def test_setup_warns_when_the_photos_were_never_aligned(tmp_path: Path) -> None:
    for name in ("ann", "bob"):  # photos as they come from a camera, not 112x112 crops
        (tmp_path / "photos" / name).mkdir(parents=True)
        for k in range(4):
            cv2.imwrite(str(tmp_path / "photos" / name / f"{k}.jpg"), np.zeros((171, 256, 3)))
    lines: list[str] = []
    data = [f"data.path={tmp_path / 'photos'}", "data.source=folder"]
    setup(tiny_config(tmp_path / "run", *data), log=lines.append)
    assert lines[0].startswith("training mobilefacenet + arcface on 8 images of 2 identities")
    assert lines[1].startswith("warning: 8 of 8 sampled training images are not 112x112 face ")
    assert "faceforge align SRC DST --size 112" in lines[1]


@pytest.mark.parametrize("overrides", [(), ("model.dropout=0.5",)])  # dropout: global RNG
def test_resume_continues_exactly(tmp_path: Path, overrides: tuple[str, ...]) -> None:
    straight, straight_state = quiet_setup(tiny_config(tmp_path / "a", *overrides))
    fit(straight, straight_state)
    # the same 4-step run interrupted after 2 steps (mid-epoch), then resumed
    interrupted, state = quiet_setup(tiny_config(tmp_path / "b", *overrides))
    batches = iter(interrupted.loader(epoch=0, start_sample=0))
    train_step(interrupted, state, next(batches))
    train_step(interrupted, state, next(batches))
    save(interrupted, state, "last.pt")
    resume = tmp_path / "b" / "last.pt"
    continued, resumed = quiet_setup(tiny_config(tmp_path / "b", *overrides), resume)
    assert resumed.step == 2
    maps = Path("/proc/self/maps")  # Linux lists mapped files: the run keeps copies only
    assert not maps.is_file() or str(tmp_path / "b" / "last.pt") not in maps.read_text()
    fit(continued, resumed)
    for module in ("backbone", "head", "loss"):
        expected = getattr(straight.model_without_ddp, module).state_dict()
        for key, value in getattr(continued.model_without_ddp, module).state_dict().items():
            assert torch.equal(value, expected[key]), f"{module}.{key}"
    lr = continued.optimizer.param_groups[0]["lr"]
    assert lr == straight.optimizer.param_groups[0]["lr"]


def test_a_checkpoint_without_fp16_resumes_with_fp16(tmp_path: Path, monkeypatch) -> None:
    """A CPU run saves a disabled GradScaler's empty state; the same run resumed on a GPU
    with fp16 builds an enabled one, which starts at its initial scale."""
    fit(*quiet_setup(tiny_config(tmp_path, "train.max_steps=1")))
    assert Checkpoint.load(tmp_path / "last.pt").scaler == {}
    enabled = lambda self: torch.amp.GradScaler("cpu", enabled=True)  # noqa: E731
    monkeypatch.setattr(Precision, "grad_scaler", enabled)
    run, state = quiet_setup(tiny_config(tmp_path, "train.max_steps=2"), tmp_path / "last.pt")
    assert state.step == 1 and run.scaler.get_scale() == 2.0**16


def test_resume_refuses_another_architecture(tmp_path: Path) -> None:
    fit(*quiet_setup(tiny_config(tmp_path, "train.max_steps=1")))
    with pytest.raises(CheckpointError, match="model.embedding_size=64"):
        quiet_setup(tiny_config(tmp_path / "x", "model.embedding_size=32"), tmp_path / "last.pt")


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    fit(*quiet_setup(tiny_config(tmp_path, "train.max_steps=1")))
    good = (tmp_path / "last.pt").read_bytes()
    broken, state = quiet_setup(tiny_config(tmp_path, "train.max_steps=3"), tmp_path / "last.pt")
    with torch.no_grad():
        next(broken.model_without_ddp.head.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"loss became nan at step 1; the last good checkpoint"):
        fit(broken, state)
    assert (tmp_path / "last.pt").read_bytes() == good


def test_evaluation_and_best_checkpoint(tmp_path: Path) -> None:
    vset = SyntheticFaces(9).verification_set(num_identities=10, num_pairs=20)
    cfg = tiny_config(tmp_path, "train.max_steps=2", "eval.every=1", "eval.batch_size=8")
    summary = fit(*quiet_setup(cfg), [vset])
    assert set(summary.results) == {"synthetic"}
    accuracies = [h["synthetic/accuracy"] for h in summary.history if "synthetic/accuracy" in h]
    assert len(accuracies) == 2  # after step 1 and at the end
    assert summary.best_accuracy == max(accuracies)
    stored = Checkpoint.load(tmp_path / "best.pt").metrics["synthetic"]
    assert 0.0 <= stored["accuracy"] <= 1.0 and "best_threshold" in stored


def test_training_speed_leaves_out_evaluation_and_saving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each evaluation and periodic save takes 1000 s of the run's clock: the logged and the
    summary images/s must still be the training speed (4 images per step in well under
    1000 s), not images over wall time (at most 0.004 images/s)."""
    offset = [0.0]
    monkeypatch.setattr(
        main, "time", SimpleNamespace(perf_counter=lambda: time.perf_counter() + offset[0])
    )

    def slow(function):
        def wrapped(*args, **kwargs):
            offset[0] += 1000.0
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(main, "evaluate", slow(main.evaluate))
    monkeypatch.setattr(main, "save", slow(main.save))
    vset = SyntheticFaces(9).verification_set(num_identities=10, num_pairs=20)
    cfg = tiny_config(tmp_path, "eval.every=1", "eval.batch_size=8", "train.save_every=1")
    run, state = quiet_setup(cfg)
    speeds = []
    record = run.report.scalars
    monkeypatch.setattr(
        run.report,
        "scalars",
        lambda tag, values, step: (
            (tag == "train" and speeds.append(values["images_per_sec"]))
            or record(tag, values, step)
        ),
    )
    summary = fit(run, state, [vset])
    assert len(speeds) == 4 and min(speeds) > 0.1
    assert summary.images_per_second > 0.1
    assert summary.wall_seconds > 4 * 1000  # the pauses are wall time all the same


def test_the_global_rng_is_seeded_by_setup_not_by_construction(tmp_path: Path) -> None:
    torch.manual_seed(123)
    first = weights(quiet_setup(tiny_config(tmp_path))[0])
    torch.manual_seed(456)
    second = weights(quiet_setup(tiny_config(tmp_path))[0])
    assert all(torch.equal(first[k], second[k]) for k in first)
    other_seed = weights(quiet_setup(tiny_config(tmp_path, "train.seed=1"))[0])
    assert not all(torch.equal(first[k], other_seed[k]) for k in first)


def test_the_logged_learning_rate_is_the_one_each_step_took(tmp_path: Path) -> None:
    """The log showed the next step's rate: 0.0667 at step 1 of a 3-step warmup to 0.1,
    whose first step took 0.0333."""
    cfg = tiny_config(tmp_path, "optim.lr=0.1", "optim.warmup_steps=3", "optim.schedule=constant")
    summary = fit(*setup(cfg, log=lambda _: None))
    logged = [h["lr"] for h in summary.history if "lr" in h]
    assert logged == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.1])
