"""Scale-out on CPU with gloo: DDP equals one process at the same global batch, torchrun runs
the CLI (rank 0's evaluations equal the checkpoints evaluated alone), an interrupt while rank 0
evaluates stops every rank at one step, a rank that fails or never joins ends the others with
one line, a killed worker restarts from the last checkpoint, 2-rank checkpoints resume on 1,
and a finished run leaves its process group (no abort at exit).

Every multi-process test here is bounded by a timeout: a regression fails, it never hangs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from model_helpers import TINY_CLI
from test_main import tiny_config

from faceforge.core.checkpoint import Checkpoint
from faceforge.core.model_source import load_model
from faceforge.data.dataset import collate_faces
from faceforge.data.synthetic import synthetic_verification_set
from faceforge.errors import TrainingError
from faceforge.evaluation.run import evaluate_model
from faceforge.train.distributed import Distributed
from faceforge.train.engine import train_step
from faceforge.train.main import setup

STEPS = 3
#: the same run in both set-ups; lr 0.01 keeps float rounding (different summation orders)
#: from being amplified much within a few steps (after one step parameters agree to 4e-7;
#: gradients averaged wrongly, e.g. summed, would differ by a factor of 2)
SAME_RUN = ("augment.hflip=0", "augment.cutout_prob=0", "optim.lr=0.01")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _steps(run, state, batch) -> tuple[list[float], dict[str, torch.Tensor]]:
    losses = [float(train_step(run, state, batch)["loss"]) for _ in range(STEPS)]
    return losses, {k: v.detach().clone() for k, v in run.backbone.state_dict().items()}


def _head_weights(cfg) -> torch.Tensor:
    """Class centers both set-ups start from (full FC and Partial FC initialise differently)."""
    generator = torch.Generator().manual_seed(7)
    shape = (cfg.data.synthetic.num_identities, cfg.model.embedding_size)
    return torch.randn(shape, generator=generator) * 0.01


def _set_head(run, weights: torch.Tensor) -> None:
    head = run.model.head
    with torch.no_grad():
        if hasattr(head, "shard"):
            head.weight.copy_(head.shard(weights))
        else:
            head.fc.weight.copy_(weights)


def _ddp_worker(rank: int, port: int, out: Path, extra: tuple[str, ...]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = tiny_config(out / f"rank{rank}", *SAME_RUN, *extra)
    run, state = setup(cfg, log=lambda _: None, dist=Distributed(rank, 2, 0))
    _set_head(run, _head_weights(cfg))
    batch = collate_faces([run.dataset[i] for i in range(4)])  # the same 4 images on both
    torch.save(_steps(run, state, batch), out / f"ddp{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("head", ["full", "partial_fc"])
def test_ddp_equals_one_process_at_the_same_global_batch(tmp_path: Path, head: str) -> None:
    """Two processes of 4 images against one of the same 8 images with a full classifier.
    Each rank gets the same 4 images so that BatchNorm sees the same statistics as the
    single process (CPU has no SyncBatchNorm; on GPUs train.sync_bn makes it global). With
    Partial FC each process holds half of the class centers (sample rate 1)."""
    extra = ("head.partial_fc=true",) if head == "partial_fc" else ()
    mp.spawn(_ddp_worker, args=(_free_port(), tmp_path, extra), nprocs=2)
    cfg = tiny_config(tmp_path / "single", *SAME_RUN)
    run, state = setup(cfg, log=lambda _: None)
    _set_head(run, _head_weights(cfg))
    batch = collate_faces([run.dataset[i] for i in (0, 1, 2, 3, 0, 1, 2, 3)])
    losses, weights = _steps(run, state, batch)
    for rank in (0, 1):
        ddp_losses, ddp_weights = torch.load(tmp_path / f"ddp{rank}.pt", weights_only=True)
        assert ddp_losses == pytest.approx(losses, rel=2e-4)
        for key, value in weights.items():
            if "running_var" not in key:  # unbiased variance: n/(n-1) differs for 4 and 8
                torch.testing.assert_close(ddp_weights[key], value, rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------- failing collectives


def test_a_failed_collective_is_one_line_naming_the_wait_other_errors_pass() -> None:
    gloo = RuntimeError(
        "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
        "[127.0.0.1]:10475. This is typically caused by a remote worker crashing. GLHF!"
    )
    with pytest.raises(TrainingError) as error, Distributed(1, 2).waiting_for("rank 0's X"):
        raise gloo
    assert str(error.value).startswith(
        "rank 1 gave up after waiting 0.0 s for rank 0's X (Connection closed by peer "
        "[127.0.0.1]:10475): another process failed or is stuck"
    )
    assert "\n" not in str(error.value) and "GLHF" not in str(error.value)
    for distributed, exc in [(Distributed(1, 2), RuntimeError("shape mismatch")),
                             (Distributed(0, 1), gloo)]:  # fmt: skip
        with pytest.raises(RuntimeError) as passed, distributed.waiting_for("X"):
            raise exc
        assert passed.value is exc


def _two_ranks(tmp_path: Path, scenario: str) -> dict[int, str]:
    """Run a scenario of rank_scenarios.py; each rank's outcome (``ok`` or its error)."""
    script = Path(__file__).with_name("rank_scenarios.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(script), scenario, str(tmp_path), str(_free_port())]
    process = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=180)
    finally:
        _kill_session(process)
    assert process.returncode == 0, output
    return {rank: (tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1)}


def _kill_session(process: subprocess.Popen) -> None:
    """Kill what is left of a process started with ``start_new_session`` and its children."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="needs a CUDA device (this machine has none)"
        )),
    ],
)  # fmt: skip
def test_a_rank_that_never_joins_ends_the_wait_at_the_limit_with_one_line(
    tmp_path: Path, device: str
) -> None:
    outcome = _two_ranks(tmp_path, "timeout" if device == "cpu" else "timeout-cuda")
    assert outcome[0] == "ok"
    message = outcome[1]
    assert message.startswith("TrainingError: rank 1 gave up after waiting ")
    assert " s for rank 0's evaluation at step 3 (Timed out waiting 1200ms" in message
    assert message.endswith("raise train.collective_timeout_minutes") and "\n" not in message
    waited = float(message.split("waiting ")[1].split(" s ")[0])
    assert 1.2 <= waited < 60  # the 1.2 s limit, plus a loaded machine's delays


def test_an_error_in_one_rank_ends_the_other_with_one_line(tmp_path: Path) -> None:
    outcome = _two_ranks(tmp_path, "error")
    assert outcome[1] == "DataError: img_0042.jpg: not a readable image"
    assert outcome[0].startswith("TrainingError: rank 0 gave up after waiting ")
    assert " for every process at training step 3 (" in outcome[0]


def test_a_rank_failing_alone_saves_the_progress_when_it_holds_the_whole_state(
    tmp_path: Path,
) -> None:
    """Rank 0 cannot save: it was in step 3's gradient all-reduce, its BatchNorm statistics
    already moved by step 3's forward; rank 1 failed loading step 3, its replica at step 2."""
    outcome = _two_ranks(tmp_path, "error-replicated")
    assert outcome[1] == "DataError: img_0042.jpg: not a readable image"
    assert outcome[0].startswith("TrainingError: rank 0 gave up after waiting ")
    saved = Checkpoint.load(tmp_path / "run" / "last.pt")
    assert saved.step == 2 and saved.config.head.partial_fc is False


def test_every_rank_gathers_every_value_in_rank_order(tmp_path: Path) -> None:
    assert _two_ranks(tmp_path, "gather") == {0: "ok", 1: "ok"}
    assert Distributed().gathered({3}, "one process") == [{3}]


def test_a_failure_in_rank_0_alone_stops_every_rank_with_its_message(tmp_path: Path) -> None:
    outcome = _two_ranks(tmp_path, "main-error")
    assert outcome[0] == "FormatError: lfw.bin: truncated (12 of 13 images)"
    assert outcome[1] == (
        "TrainingError: stopped with rank 0, which failed: lfw.bin: truncated (12 of 13 images)"
    )


def test_a_non_finite_loss_in_one_rank_stops_both_at_that_step(tmp_path: Path) -> None:
    outcome = _two_ranks(tmp_path, "nan")
    assert outcome[1].startswith("TrainingError: loss became nan at step 2; ")
    assert outcome[0].startswith(
        "TrainingError: another process's loss became non-finite at step 2; "
    )


def test_an_unreadable_image_in_one_rank_of_a_partial_fc_run_is_stood_in_for(
    tmp_path: Path,
) -> None:
    """Partial FC gathers every rank's embeddings: a rank whose batch lost an image would
    send fewer rows than the others expect (gloo aborts, NCCL hangs or mixes rows)."""
    assert _two_ranks(tmp_path, "corrupt") == {0: "ok", 1: "ok"}
    assert Checkpoint.load(tmp_path / "run" / "last.pt").step == 3


def test_an_fp16_overflow_in_one_ranks_centers_skips_the_step_in_every_rank(
    tmp_path: Path,
) -> None:
    """A Partial FC rank's centers have gradients of their own: had one rank's GradScaler
    skipped the step alone, the backbones would have parted."""
    assert _two_ranks(tmp_path, "overflow") == {0: "ok", 1: "ok"}


def test_dali_is_used_by_every_rank_or_by_none(tmp_path: Path) -> None:
    assert _two_ranks(tmp_path, "dali") == {0: "ok", 1: "ok"}


def test_every_rank_resumes_its_own_random_stream(tmp_path: Path) -> None:
    assert _two_ranks(tmp_path, "random") == {0: "ok", 1: "ok"}


# ------------------------------------------------------------------------ torchrun

TINY = ["data.synthetic.num_identities=8", *TINY_CLI]
#: periodic evaluation on a few held-out synthetic pairs
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
    port = str(_free_port())
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
            _kill_session(rank)
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
        _kill_session(process)
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
    extra = ("train.max_steps=40", "train.save_every=2", "--resume=auto")
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
    assert Checkpoint.load(out / "last.pt").step == 40


def _one_process_group() -> None:
    torch.distributed.init_process_group(
        "gloo", store=torch.distributed.HashStore(), rank=0, world_size=1
    )


def test_a_process_group_lives_as_long_as_the_scope_that_created_it() -> None:
    with Distributed().process_group_scope():
        _one_process_group()
    assert not torch.distributed.is_initialized()
    with pytest.raises(TrainingError), Distributed().process_group_scope():
        _one_process_group()
        raise TrainingError("a failed run")
    assert not torch.distributed.is_initialized()  # left on the error path too
    _one_process_group()
    try:
        with Distributed().process_group_scope():
            pass
        assert torch.distributed.is_initialized()  # not the scope's: left to its creator
    finally:
        torch.distributed.destroy_process_group()
