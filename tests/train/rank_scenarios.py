"""Two gloo processes in which one fails to join the other; run as a script by
test_distributed.py under a hard timeout, so a regression fails instead of hanging the suite.

``python rank_scenarios.py SCENARIO OUT PORT`` writes ``OUT/rank{r}.txt``: ``ok`` or the
error that ended that rank, as ``TypeName: message``.

- ``timeout``, ``timeout-cuda``: rank 1 waits for rank 0's evaluation, which never comes
  (rank 0 waits for rank 1 to give up, on a file, before it leaves); ``-cuda`` sets up the
  process group of a CUDA run (gloo carries the decisions there too; NCCL is never started,
  so both ranks may share one GPU).
- ``gather``: both ranks get every rank's value, in rank order (skipped-image counts).
- ``main-error``: rank 0 fails in work only it does (loading its evaluation sets); rank 1
  must stop with that error at once, not wait for rank 0 until the limit.
- ``error``: rank 1 fails with a data error at step 2 of a Partial FC run; rank 0 must not
  wait for it forever. ``error-replicated``: the same with a replicated classifier, where
  rank 1 saves the progress itself.
- ``nan``: rank 1 alone computes a non-finite loss at step 2 of a full-classifier run; both
  ranks must stop there together (neither waits in the gradient all-reduce).
- ``overflow``: under fp16 loss scaling, rank 1's Partial FC centers alone get an inf
  gradient at step 2; both ranks must skip that step and lower their scale alike, so their
  backbones and loss scales stay equal.
- ``dali``: DALI serves rank 0 but not rank 1 (``data.dali=true``); rank 0 must fall back to
  the CPU loader too, so both ranks draw the same data.
- ``random``: each rank draws its own random numbers (dropout, Partial FC negatives); a
  checkpoint keeps every rank's state, and each rank restores its own.
- ``corrupt``: rank 1 alone meets an unreadable image in a Partial FC run with
  ``data.skip_corrupt=true``; another image stands in, so both ranks gather equal batches
  and train to the end.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

#: the collective limit of these scenarios: 1.2 seconds
TIMEOUT_MINUTES = 0.02


def _timeout(rank: int, out: Path, device: str = "cpu") -> None:
    from faceforge.train.distributed import Distributed

    dist = Distributed(rank, 2, 0)
    dist.setup(torch.device(device), TIMEOUT_MINUTES)
    if rank == 1:
        dist.from_main(lambda: None, "rank 0's evaluation at step 3")
    else:
        while not (out / "rank1.txt").exists():  # leave only after rank 1 gave up
            time.sleep(0.05)


def _main_error(rank: int, out: Path) -> None:
    from faceforge.errors import FormatError
    from faceforge.train.distributed import Distributed

    def load_a_damaged_bin() -> None:
        raise FormatError("lfw.bin: truncated (12 of 13 images)")

    dist = Distributed(rank, 2, 0)
    dist.setup(torch.device("cpu"), TIMEOUT_MINUTES * 100)  # 2 minutes: not a timeout
    dist.on_main(load_a_damaged_bin, "rank 0 to load the evaluation sets")


def _gather(rank: int, out: Path) -> None:
    from faceforge.train.distributed import Distributed

    dist = Distributed(rank, 2, 0)
    dist.setup(torch.device("cpu"), TIMEOUT_MINUTES * 100)
    values = dist.gathered({rank, 7}, "every process's skipped images")
    if values != [{0, 7}, {1, 7}]:
        raise AssertionError(f"gathered {values}")


def _error(rank: int, out: Path, partial_fc: bool = True) -> None:
    from test_main import tiny_config

    from faceforge.errors import DataError
    from faceforge.train import engine
    from faceforge.train.distributed import Distributed
    from faceforge.train.main import fit, setup

    cfg = tiny_config(
        out / "run", f"head.partial_fc={partial_fc}", "train.max_steps=6",
        f"train.collective_timeout_minutes={TIMEOUT_MINUTES * 100}",  # 2 minutes: not a timeout
    )  # fmt: skip
    run, state = setup(cfg, log=lambda _: None, dist=Distributed(rank, 2, 0))
    real_step = engine.train_step

    def failing_step(run, state, *batches):
        if rank == 1 and state.step == 2:
            raise DataError("img_0042.jpg: not a readable image")
        return real_step(run, state, *batches)

    engine.train_step = failing_step
    fit(run, state)


def _nan(rank: int, out: Path) -> None:
    from test_main import tiny_config

    from faceforge.train.distributed import Distributed
    from faceforge.train.main import fit, setup

    cfg = tiny_config(
        out / "run", "train.max_steps=6",
        f"train.collective_timeout_minutes={TIMEOUT_MINUTES * 100}",  # 2 minutes: not a timeout
    )  # fmt: skip
    run, state = setup(cfg, log=lambda _: None, dist=Distributed(rank, 2, 0))
    criterion = run.model.parallel["criterion"]

    def criterion_with_a_nan(embeddings, labels):
        loss, parts = criterion(embeddings, labels)
        return (loss * float("nan") if rank == 1 and state.step == 2 else loss), parts

    run.model.parallel["criterion"] = criterion_with_a_nan
    fit(run, state)


def _corrupt(rank: int, out: Path) -> None:
    from test_main import tiny_config

    from faceforge.data.dataset import FaceDataset
    from faceforge.errors import DataError
    from faceforge.train.distributed import Distributed
    from faceforge.train.main import fit, setup

    cfg = tiny_config(
        out / "run", "head.partial_fc=true", "data.skip_corrupt=true", "train.max_steps=3",
        f"train.collective_timeout_minutes={TIMEOUT_MINUTES * 100}",  # 2 minutes: not a timeout
    )  # fmt: skip
    run, state = setup(cfg, log=lambda _: None, dist=Distributed(rank, 2, 0))
    real_sample, broken = FaceDataset._sample, []

    def sample(dataset, index):
        if rank == 1 and (not broken or index == broken[0]):
            broken.append(index)
            raise DataError(f"img_{index}.jpg: not a readable image")
        return real_sample(dataset, index)

    FaceDataset._sample = sample
    summary = fit(run, state)
    if (summary.steps, summary.skipped_images) != (3, 1):  # reported by every rank
        raise AssertionError(f"{summary.steps} steps, {summary.skipped_images} skipped")


def _overflow(rank: int, out: Path) -> None:
    from test_main import tiny_config

    from faceforge.train.distributed import Distributed
    from faceforge.train.main import fit, setup

    cfg = tiny_config(
        out / "run", "head.partial_fc=true", "train.max_steps=4",
        f"train.collective_timeout_minutes={TIMEOUT_MINUTES * 100}",  # 2 minutes: not a timeout
    )  # fmt: skip
    run, state = setup(cfg, log=lambda _: None, dist=Distributed(rank, 2, 0))
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)  # fp16 needs CUDA: its scaler
    overflowed = []

    def overflow_on_rank_1(grad):
        if rank == 1 and state.step == 2:
            overflowed.append(state.step)
            return grad * float("inf")
        return grad

    run.model.head.weight.register_hook(overflow_on_rank_1)
    fit(run, state)
    backbone = torch.cat([p.detach().flatten() for p in run.model.backbone.parameters()])
    seen = run.dist.gathered((backbone, run.scaler.get_scale()), "every process's backbone")
    scales = [scale for _, scale in seen]
    if not torch.equal(seen[0][0], seen[1][0]) or scales != [2.0**9] * 2:
        raise AssertionError(f"the ranks parted: backbones differ or scales {scales} (not 512)")
    if rank == 1 and overflowed != [2]:
        raise AssertionError(f"the overflow was injected at steps {overflowed}")


def _dali(rank: int, out: Path) -> None:
    from test_main import tiny_config

    from faceforge.data.recordio.dali import DaliBatches
    from faceforge.train import build
    from faceforge.train.distributed import Distributed
    from faceforge.train.main import setup

    real = build.build_loader

    def loader(*args, dali: bool = False, **kwargs):
        if dali and rank == 0:  # DALI there; rank 1 falls back, as build_loader does
            return DaliBatches(iterator=[])
        return real(*args, **kwargs)

    build.build_loader = loader
    cfg = tiny_config(out / "run", "data.dali=true")
    run, _ = setup(cfg, log=lambda _: None, dist=Distributed(rank, 2, 0))
    if isinstance(run.loader(0), DaliBatches):
        raise AssertionError(f"rank {rank} kept DALI while the other rank could not use it")


def _random(rank: int, out: Path) -> None:
    from test_main import tiny_config

    from faceforge.train.distributed import Distributed
    from faceforge.train.main import setup
    from faceforge.train.state import TrainState, restore, to_checkpoint

    cfg = tiny_config(out / "run", "head.partial_fc=true", "head.sample_rate=0.5")
    run, _ = setup(cfg, log=lambda _: None, dist=Distributed(rank, 2, 0))
    torch.rand(rank + 1)  # the ranks' streams part
    checkpoint = to_checkpoint(run, TrainState(step=1))
    mine = torch.get_rng_state()
    torch.rand(100)
    restore(run, checkpoint, "last.pt")
    if checkpoint.rng["torch"].shape[0] != 2 or not torch.equal(torch.get_rng_state(), mine):
        raise AssertionError(f"rank {rank} did not get its own random state back")


SCENARIOS = {
    "timeout": _timeout,
    "timeout-cuda": lambda rank, out: _timeout(rank, out, "cuda"),
    "error": _error,
    "error-replicated": lambda rank, out: _error(rank, out, partial_fc=False),
    "main-error": _main_error,
    "gather": _gather,
    "nan": _nan,
    "corrupt": _corrupt,
    "random": _random,
    "overflow": _overflow,
    "dali": _dali,
}


def _worker(rank: int, scenario: str, out: Path, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        SCENARIOS[scenario](rank, out)
        outcome = "ok"
    except Exception as exc:  # reported to the test, which checks it
        outcome = f"{type(exc).__name__}: {exc}"
    (out / f"rank{rank}.tmp").write_text(outcome)
    (out / f"rank{rank}.tmp").rename(out / f"rank{rank}.txt")
    os._exit(0)  # no process-group teardown: the peer may be gone


if __name__ == "__main__":
    scenario, out, port = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    # forked ranks share this process's imports (a spawned one imports PyTorch, the training
    # stack and torch._dynamo, which optimizers import on first use, again: seconds each);
    # CUDA cannot be used in a forked child
    method = "spawn" if scenario.endswith("-cuda") else "fork"
    if method == "fork":
        import torch._dynamo

        import faceforge.train.main  # noqa: F401
    mp.start_processes(_worker, args=(scenario, out, port), nprocs=2, start_method=method)
