"""Scale-out on CPU with gloo: DDP equals one process at the same global batch, torchrun runs
the CLI, a killed worker restarts from the last checkpoint, 2-rank checkpoints resume on 1."""

from __future__ import annotations

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
from faceforge.data.dataset import collate_faces
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


# ------------------------------------------------------------------------ torchrun

TINY = ["data.synthetic.num_identities=8", *TINY_CLI]


def _torchrun(output: Path, *extra: str, restarts: int = 0) -> subprocess.Popen:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [
        torchrun, "--standalone", "--nproc_per_node=2", f"--max-restarts={restarts}",
        "-m", "faceforge", "train", *TINY, f"train.output_dir={output}", *extra,
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


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
    head = ("head.partial_fc=true", "head.sample_rate=0.5") if request.param != "full" else ()
    out = tmp_path_factory.mktemp("torchrun") / "run"
    process = _torchrun(out, "train.max_steps=4", *head)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return out, stdout, head


def test_torchrun_trains_with_two_processes(torchrun_run) -> None:
    out, stdout, head = torchrun_run
    ckpt = Checkpoint.load(out / "last.pt")
    assert ckpt.step == 4
    assert ckpt.head["weight" if head else "fc.weight"].shape == (8, 16)  # all 8 centers
    assert stdout.count("done: 4 steps") == 1  # rank 0 alone reports
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "last.pt"]


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
