"""The CLI under ``torchrun`` with two gloo processes: rank 0's evaluations equal the
checkpoints evaluated alone, 2-rank checkpoints resume in one process, an interrupt while
rank 0 evaluates stops every rank at one step, and a killed worker restarts from the last
checkpoint.

Every multi-process test here is bounded by a timeout: a regression fails, it never hangs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from model_helpers import TINY_CLI
from process_helpers import free_port, kill_session
from test_main import tiny_config

from faceforge.core.checkpoint import Checkpoint
from faceforge.core.model_source import load_model
from faceforge.data.synthetic import synthetic_verification_set
from faceforge.evaluation.run import evaluate_model
from faceforge.train.main import setup

TINY = ["data.synthetic.num_identities=8", *TINY_CLI]


EVALUATED = (
    "eval.synthetic_pairs=true", "data.synthetic.val_identities=10",
    "data.synthetic.val_pairs=20",
)  # fmt: skip


PARTIAL_FC = ("head.partial_fc=true", "head.sample_rate=0.5")


def _torchrun(output: Path, *extra: str, restarts: int = 0) -> subprocess.Popen:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [
        torchrun, "--standalone", "--nproc_per_node=2", f"--max-restarts={restarts}",
        "-m", "faceforge", "train", *TINY, f"train.output_dir={output}", *extra,
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip


def _rank_processes(output: Path, logs: Path, *extra: str) -> list[subprocess.Popen]:
    """Two ``faceforge train`` processes set up as torchrun would (its environment), so a
    test can signal one rank and read each one's exit code; output in ``logs/rank{r}.*``."""
    port = str(free_port())
    logs.mkdir()
    processes = []
    for rank in (0, 1):
        env = {
            **os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "RANK": str(rank),
            "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
        }  # fmt: skip
        command = [sys.executable, "-m", "faceforge", "train", *TINY,
                   f"train.output_dir={output}", *extra]  # fmt: skip
        with open(logs / f"rank{rank}.out", "w") as out, open(logs / f"rank{rank}.err", "w") as err:
            processes.append(subprocess.Popen(command, env=env, stdout=out, stderr=err,
                                              start_new_session=True))  # fmt: skip
    return processes


def _wait_for_line(path: Path, text: str, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 180
    while text not in path.read_text():
        assert all(p.poll() is None for p in processes), path.read_text()
        assert time.monotonic() < deadline, f"{text!r} never came"
        time.sleep(0.02)


def test_an_interrupt_while_rank_0_evaluates_stops_every_rank_at_that_step(tmp_path) -> None:
    """Ctrl-C reaches rank 0 alone, during its evaluation at step 2: both ranks stop at step
    2 (the stop is decided together), save best.pt and last.pt with the sharded head
    gathered, and exit 130 with the resume command; the run then resumes to the end."""
    out, logs = tmp_path / "run", tmp_path / "logs"
    extra = ("train.max_steps=6", "eval.every=2", *EVALUATED, *PARTIAL_FC,
             "data.synthetic.val_pairs=100")  # fmt: skip
    ranks = _rank_processes(out, logs, *extra)
    try:
        _wait_for_line(logs / "rank0.out", "step 2/6:", ranks)  # logged just before evaluating
        ranks[0].send_signal(signal.SIGINT)
        codes = [rank.wait(timeout=180) for rank in ranks]
    finally:
        for rank in ranks:
            kill_session(rank)
    errors = [(logs / f"rank{rank}.err").read_text() for rank in (0, 1)]
    assert codes == [130, 130], errors
    last = out / "last.pt"
    for error in errors:  # rank 1 stops on rank 0's signal
        assert f"stopped by SIGINT at step 2/6; saved {last}: continue with --resume {last}" in (
            error
        )
    assert "step 2: synthetic accuracy" in (logs / "rank0.out").read_text()  # it finished
    for name in ("best.pt", "last.pt"):
        ckpt = Checkpoint.load(out / name)
        assert ckpt.step == 2 and ckpt.head["weight"].shape == (8, 16)  # all 8 centers
    resumed = subprocess.run(
        [sys.executable, "-m", "faceforge", "train", *TINY, f"train.output_dir={out}",
         *extra, "eval.every=0", "eval.synthetic_pairs=false", f"--resume={last}"],
        capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert Checkpoint.load(last).step == 6


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture(scope="module", params=["full", "partial_fc"])
def torchrun_run(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, tuple]:
    """4 steps, evaluated at step 2 (rank 0 evaluates, every rank saves best.pt: a
    collective with Partial FC) and at the end."""
    head = PARTIAL_FC if request.param != "full" else ()
    out = tmp_path_factory.mktemp("torchrun") / "run"
    process = _torchrun(out, "train.max_steps=4", "eval.every=2", *EVALUATED, *head)
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        kill_session(process)
    assert process.returncode == 0, stderr
    assert "terminate called" not in stderr  # no rank aborted at exit
    return out, stdout, head


def test_torchrun_trains_with_two_processes(torchrun_run) -> None:
    out, stdout, head = torchrun_run
    ckpt = Checkpoint.load(out / "last.pt")
    assert ckpt.step == 4
    assert ckpt.head["weight" if head else "fc.weight"].shape == (8, 16)  # all 8 centers
    assert stdout.count("done: 4 steps") == 1  # rank 0 alone reports
    assert stdout.count("step 2: synthetic accuracy") == 1
    names = sorted(p.name for p in out.iterdir())
    assert names == [".faceforge-run", "best.pt", "config.yaml", "last.pt"]


def test_rank_0_evaluations_equal_the_checkpoints_evaluated_alone(torchrun_run) -> None:
    """What rank 0 measured during the run (stored in each checkpoint, logged) is what the
    checkpoint alone measures on the same pairs: the evaluation saw exactly the saved
    weights, the BatchNorm statistics included."""
    out, stdout, _ = torchrun_run
    for name in ("best.pt", "last.pt"):
        model = load_model(out / name)
        vset = synthetic_verification_set(model.config.data.synthetic)
        alone = evaluate_model(
            model.backbone, vset, preprocess=model.preprocess, flip=model.config.eval.flip,
            batch_size=model.config.eval.batch_size,
        ).to_dict()  # fmt: skip
        stored = model.metrics[vset.name]
        for key in ("accuracy", "accuracy_std", "best_threshold", "auc", "eer", "val", "xnorm"):
            assert stored[key] == pytest.approx(alone[key], rel=1e-6, abs=1e-9), (name, key)
    last = Checkpoint.load(out / "last.pt").metrics["synthetic"]
    assert f"step 4: synthetic accuracy {100 * last['accuracy']:.2f}" in stdout


def test_a_two_process_checkpoint_resumes_in_one_process(torchrun_run, tmp_path) -> None:
    out, _, head = torchrun_run
    cfg = tiny_config(tmp_path, *TINY, *head, "train.max_steps=6")
    run, state = setup(cfg, resume=out / "last.pt", log=lambda _: None)
    assert state.step == 4
    assert run.steps_per_epoch == 32 // 4  # one process sees the whole epoch
    saved = Checkpoint.load(out / "last.pt")
    weight, key = (
        (run.model.head.weight, "weight") if head else (run.model.head.fc.weight, "fc.weight")
    )
    assert torch.equal(weight, saved.head[key])  # all centers, on one process


def test_a_killed_worker_restarts_from_the_last_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    extra = ("train.max_steps=12", "train.save_every=2", "--resume=auto")
    process = _torchrun(out, *extra, restarts=1)
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    agent = _children(process.pid) or [process.pid]
    workers = [pid for parent in agent for pid in _children(parent)] or _children(process.pid)
    assert workers, "no worker processes found"
    os.kill(workers[-1], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "resumed from" in stdout + stderr
    assert Checkpoint.load(out / "last.pt").step == 12
