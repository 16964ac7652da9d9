"""Training never loses work or keeps garbage: finite checkpoints only, saves on errors and
signals, resume applies what may change, runs never overwrite each other."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from model_helpers import TINY_CLI
from test_main import quiet_setup, tiny_config

from faceforge.core.checkpoint import Checkpoint
from faceforge.errors import CheckpointError, ConfigError, DataError, TrainingError
from faceforge.train import engine, main
from faceforge.train.main import fit, train


def _all_finite(path: Path) -> bool:
    ckpt = Checkpoint.load(path)
    tensors = [*ckpt.backbone.values(), *ckpt.head.values()]
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


def test_non_finite_weights_are_never_written(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path, "optim.lr=1e8", "optim.grad_clip=0", "train.save_every=1", "train.max_steps=30"
    )
    with pytest.raises(TrainingError, match="non-finite|loss became"):
        fit(*quiet_setup(cfg))
    if (tmp_path / "last.pt").exists():
        assert _all_finite(tmp_path / "last.pt")


def test_an_error_after_training_started_saves_the_progress(tmp_path, monkeypatch) -> None:
    real_step = engine.train_step

    def failing_step(run, state, batch):
        if state.step == 2:
            raise DataError("img_0042.jpg: not a readable image")
        return real_step(run, state, batch)

    monkeypatch.setattr(engine, "train_step", failing_step)
    with pytest.raises(DataError, match="img_0042"):
        fit(*quiet_setup(tiny_config(tmp_path, "train.max_steps=4")))
    assert Checkpoint.load(tmp_path / "last.pt").step == 2


def test_resume_applies_new_learning_rate_and_steps(tmp_path: Path) -> None:
    fit(*quiet_setup(tiny_config(tmp_path, "train.max_steps=2", "optim.schedule=constant")))
    cfg = tiny_config(tmp_path, "train.max_steps=3", "optim.schedule=constant", "optim.lr=0.05")
    logged: list[str] = []
    summary = train(cfg, (), resume=tmp_path / "last.pt", log=logged.append)
    assert summary.steps == 3
    ckpt = Checkpoint.load(tmp_path / "last.pt")
    assert ckpt.optimizer["param_groups"][0]["lr"] == pytest.approx(0.05)
    assert ckpt.config.optim.lr == 0.05
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert written["optim"]["lr"] == 0.05 and written["train"]["max_steps"] == 3
    assert any("optim.lr: 0.1 -> 0.05" in line for line in logged)


def test_resume_refuses_a_changed_head_and_other_classes(tmp_path: Path) -> None:
    fit(*quiet_setup(tiny_config(tmp_path, "train.max_steps=1")))
    with pytest.raises(CheckpointError, match="head.type='arcface'.*cannot change"):
        quiet_setup(tiny_config(tmp_path, "head.type=cosface"), tmp_path / "last.pt")
    more = tiny_config(tmp_path, "data.synthetic.num_identities=5")
    with pytest.raises(CheckpointError, match="another number of classes"):
        quiet_setup(more, tmp_path / "last.pt")
    sharded = tiny_config(tmp_path, "head.partial_fc=true")  # its head state has other keys
    with pytest.raises(CheckpointError, match="head.partial_fc=False.*cannot change"):
        quiet_setup(sharded, tmp_path / "last.pt")
    adamw = tiny_config(tmp_path, "optim.name=adamw")  # SGD momentum is no AdamW state
    with pytest.raises(CheckpointError, match="optim.name='sgd'.*cannot change"):
        quiet_setup(adamw, tmp_path / "last.pt")


def test_resume_without_config_continues_the_checkpoints_recipe_in_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the defaults (another head and size would not fit the checkpoint), and not a
    folder relative to wherever the command is run from."""
    from faceforge.cli import main as cli

    monkeypatch.chdir(tmp_path)
    recipe = [*TINY, "head.type=cosface", "head.margin=0.2", "train.max_steps=2"]
    assert cli(["train", *recipe, "train.output_dir=run"]) == 0  # a relative folder
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert cli(["train", "--resume", "../run/last.pt", "train.max_steps=3"]) == 0
    resumed = Checkpoint.load(tmp_path / "run" / "last.pt")
    assert resumed.step == 3
    assert (resumed.config.head.type, resumed.config.model.embedding_size) == ("cosface", 16)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_missing_resume_file_fails_before_anything_is_built(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(main, "build_run", lambda *a, **k: pytest.fail("built before checks"))
    with pytest.raises(CheckpointError, match="does not exist"):
        quiet_setup(tiny_config(tmp_path), tmp_path / "nope.pt")
    blocked = tmp_path / "file.txt"
    blocked.write_text("")
    with pytest.raises(ConfigError, match="cannot write there"):
        quiet_setup(tiny_config(blocked / "run"))
    missing = tmp_path / "lfw.bin"  # loaded by rank 0 alone: checked by all, up front
    with pytest.raises(ConfigError, match=f"eval.bins: {missing}: no such file; give its path"):
        quiet_setup(tiny_config(tmp_path / "run", f"eval.bins=[{missing}]"))


def test_a_bad_resume_file_is_reported_before_any_data_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI builds the held-out pairs (6000 by default: a minute of rendering) only
    after the resume file was read."""
    from faceforge.cli import main as cli
    from faceforge.data import synthetic

    fit(*quiet_setup(tiny_config(tmp_path / "done", "train.max_steps=1")))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "done" / "last.pt").read_bytes()[:5000])

    def built(*args, **kwargs):
        raise AssertionError("data built before the resume file was checked")

    for module in (synthetic, engine):  # the CLI used the first, train() uses the second
        monkeypatch.setattr(module, "synthetic_verification_set", built, raising=False)
    monkeypatch.setattr(main, "build_run", built)
    for resume in (tmp_path / "missing.pt", truncated):
        out = tmp_path / "run"
        assert cli(["train", f"--resume={resume}", f"train.output_dir={out}"]) == 2
        error = capsys.readouterr().err
        assert error.startswith("faceforge train: error: ") and f"'{resume}'" in error
        assert error.count("\n") == 1 and not out.exists()


def test_a_run_that_fails_opening_its_data_leaves_no_folder(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    cfg = tiny_config(tmp_path / "run", "data.source=folder", f"data.path={missing}")
    with pytest.raises(DataError):
        quiet_setup(cfg)
    assert list(tmp_path.iterdir()) == []
    damaged = tmp_path / "damaged.bin"
    damaged.write_bytes(b"not a pickle")
    bad_set = tiny_config(tmp_path / "run", f"eval.bins=[{damaged}]", "train.max_steps=1")
    with pytest.raises(DataError, match="damaged.bin"):
        train(bad_set, log=lambda _: None)  # the evaluation sets open after the training data
    assert list(tmp_path.iterdir()) == [damaged]


def test_a_new_run_never_overwrites_an_old_one(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    first = fit(*quiet_setup(tiny_config(folder, "train.max_steps=1")))
    before = (folder / "last.pt").read_bytes()
    second = fit(*quiet_setup(tiny_config(folder, "train.max_steps=1")))
    assert Path(second.output_dir) == tmp_path / "run-2"
    assert (folder / "last.pt").read_bytes() == before
    run, _ = main.setup(tiny_config(folder, "train.max_steps=1"), log=print, overwrite=True)
    assert run.cfg.train.output_dir == first.output_dir == str(folder)


def _folder_data(root: Path, identities: int) -> None:
    import cv2
    import numpy as np

    for i in range(identities):
        (root / f"id{i}").mkdir(parents=True)
        for k in range(4):
            image = np.full((112, 112, 3), 40 * i + 10 * k, np.uint8)
            cv2.imwrite(str(root / f"id{i}" / f"{k}.png"), image)


def test_a_worker_process_error_is_one_line_naming_the_file(tmp_path: Path) -> None:
    _folder_data(tmp_path / "data", identities=2)
    (tmp_path / "data" / "id1" / "2.png").write_bytes(b"not an image")
    cfg = tiny_config(
        tmp_path / "run", "data.source=folder", f"data.path={tmp_path / 'data'}",
        "data.num_workers=1", "train.max_steps=4",
    )  # fmt: skip
    with pytest.raises(DataError) as error:
        fit(*quiet_setup(cfg))
    assert str(error.value) == f"{tmp_path / 'data' / 'id1' / '2.png'}: not a readable image " + (
        "(not JPEG, PNG, WebP, BMP, TIFF, PNM; starts with b'not an i'); data.skip_corrupt=true "
        "skips unreadable images"
    )


def test_one_identity_and_silent_progress(tmp_path: Path) -> None:
    _folder_data(tmp_path / "one", identities=1)
    cfg = tiny_config(tmp_path / "run", "data.source=folder", f"data.path={tmp_path / 'one'}")
    with pytest.raises(ConfigError, match=r"1 identity: a classifier needs at least two \(check"):
        quiet_setup(cfg)
    (tmp_path / "one" / "label.txt").write_text("id0/0.png 0\n")  # arcface_paddle's layout
    with pytest.raises(ConfigError) as error:
        quiet_setup(cfg)
    listed = tmp_path / "one" / "label.txt"
    assert str(error.value).endswith(
        f"({listed} is a 'path label' list: data.source=list data.path={listed})"
    )
    logged: list[str] = []
    train(tiny_config(tmp_path / "quiet", "train.max_steps=2"), (), log=logged.append)
    assert any(line.startswith("step 2/2: loss ") for line in logged)


def test_checkpoints_are_readable_by_others(tmp_path: Path) -> None:
    fit(*quiet_setup(tiny_config(tmp_path, "train.max_steps=1")))
    mask = os.umask(0o022)
    os.umask(mask)
    mode = stat.S_IMODE((tmp_path / "last.pt").stat().st_mode)
    assert mode == 0o666 & ~mask


# ------------------------------------------------------------------ killed for real

TINY = ["data.synthetic.num_identities=4", *TINY_CLI]


def _train_cli(output: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "faceforge", "train", *TINY, f"train.output_dir={output}"]
    return subprocess.Popen(
        [*command, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_checkpoint(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def _backbone(path: Path) -> dict[str, torch.Tensor]:
    return Checkpoint.load(path).backbone


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted reference: 12 steps."""
    out = tmp_path_factory.mktemp("straight")
    process = _train_cli(out, "train.max_steps=12")
    assert process.wait(timeout=120) == 0, process.communicate()
    return out / "last.pt"


@pytest.mark.parametrize("kill", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_training_resumes_to_the_same_result(tmp_path, straight_run, kill) -> None:
    out = tmp_path / "run"
    process = _train_cli(out, "train.max_steps=12", "train.save_every=3")
    _wait_for_checkpoint(out / "last.pt", process)
    process.send_signal(kill)
    code = process.wait(timeout=60)
    _, err = process.communicate()
    step = Checkpoint.load(out / "last.pt").step
    assert 3 <= step < 12
    if kill == signal.SIGINT:
        assert code == 130 and "stopped by SIGINT" in err and "--resume" in err
    else:
        assert code == -signal.SIGKILL and step % 3 == 0
    resumed = _train_cli(out, "train.max_steps=12", f"--resume={out / 'last.pt'}")
    assert resumed.wait(timeout=120) == 0, resumed.communicate()
    expected, got = _backbone(straight_run), _backbone(out / "last.pt")
    assert all(torch.equal(got[k], expected[k]) for k in expected)
