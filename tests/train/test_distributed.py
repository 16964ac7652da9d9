"""Scale-out on CPU with gloo: DDP equals one process at the same global batch, a rank that
fails or never joins ends the others with one line, and a finished run leaves its process
group (no abort at exit). The CLI under ``torchrun``: ``test_torchrun``.

Every multi-process test here is bounded by a timeout: a regression fails, it never hangs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from process_helpers import free_port, kill_session
from test_main import tiny_config

from faceforge.core.checkpoint import Checkpoint
from faceforge.data.dataset import collate_faces
from faceforge.errors import TrainingError
from faceforge.train.distributed import Distributed
from faceforge.train.engine import train_step
from faceforge.train.main import setup

STEPS = 3
#: the same run in both set-ups; lr 0.01 keeps float rounding (different summation orders)
#: from being amplified much within a few steps (after one step parameters agree to 4e-7;
#: gradients averaged wrongly, e.g. summed, would differ by a factor of 2)
SAME_RUN = ("augment.hflip=0", "augment.cutout_prob=0", "optim.lr=0.01")


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
    mp.spawn(_ddp_worker, args=(free_port(), tmp_path, extra), nprocs=2)
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
    command = [sys.executable, str(script), scenario, str(tmp_path), str(free_port())]
    process = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=180)
    finally:
        kill_session(process)
    assert process.returncode == 0, output
    return {rank: (tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1)}


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


#: periodic evaluation on a few held-out synthetic pairs


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
