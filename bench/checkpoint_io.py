"""Reading a Partial FC run's checkpoint: seconds and peak private memory per use.

Writes one checkpoint of an IResNet-50 backbone beside a head of ``--classes`` identities
and its SGD momentum (what a large run's ``last.pt`` holds), then times each use in a fresh
process:

- ``whole``: :meth:`Checkpoint.load` of everything, every part checked (a one-process resume);
- ``embed``: :func:`load_model`, the backbone part alone (``eval``, ``export``, ``serve``);
- ``rank``: one of ``--ranks`` processes resuming: the whole file checked, its rows of the
  head and momentum copied (what :func:`faceforge.train.sharding.load_head_state` keeps).

"private MB" is the highest anonymous resident memory (``RssAnon``, sampled every 5 ms;
Linux) above the process's memory before the load: what each process pays on its own. The
checkpoint is mapped from the page cache, which the processes of one machine share and which
is not counted; the file is read once before the cases, so every case finds it cached.

    python bench/checkpoint_io.py                      # 500,000 identities, 2 ranks
    python bench/checkpoint_io.py --classes 2000000 --ranks 8
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from faceforge.config import Config, HeadConfig, ModelConfig
from faceforge.core.checkpoint import Checkpoint
from faceforge.core.model_source import load_model
from faceforge.models import build_backbone

CASES = ("whole", "embed", "rank")


def private_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("RssAnon"))
    return int(line.split()[1]) / 1024


def write_checkpoint(path: Path, classes: int) -> None:
    config = Config(
        model=ModelConfig(backbone="iresnet50"), head=HeadConfig(type="arcface", partial_fc=True)
    )
    head = torch.randn(classes, 512)
    momentum = {"state": {0: {"momentum_buffer": torch.randn(classes, 512)}}}
    backbone = build_backbone("iresnet50").state_dict()
    Checkpoint(config=config, backbone=backbone, head={"weight": head}, optimizer=momentum).save(
        path
    )


def run_case(case: str, path: Path, ranks: int) -> tuple[float, float]:
    """(seconds, peak private MB above the start) of one use of the checkpoint."""
    before = peak = private_mb()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, private_mb())
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    start = time.perf_counter()
    if case == "whole":
        kept = Checkpoint.load(path)
    elif case == "embed":
        kept = load_model(path).backbone
    else:
        ckpt = Checkpoint.load(path)
        rows = len(ckpt.head["weight"]) // ranks
        momentum = ckpt.optimizer["state"][0]["momentum_buffer"]
        kept = (ckpt.head["weight"][:rows].clone(), momentum[:rows].clone())
        del ckpt, momentum
    seconds = time.perf_counter() - start
    done.set()
    del kept
    return seconds, max(peak, private_mb()) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=500_000)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # a child process
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        seconds, megabytes = run_case(args.case, Path(args.path), args.ranks)
        print(f"{seconds:.2f} {megabytes:.0f}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.pt"
        write_checkpoint(path, args.classes)
        path.read_bytes()  # into the page cache: every case reads it from memory
        size = path.stat().st_size / 2**20
        print(f"IResNet-50 + {args.classes:,} identities (head + momentum): {size:,.0f} MB file")
        print(f"{'use':>14} {'seconds':>8} {'private MB':>11}")
        for case in CASES:
            argv = [sys.executable, __file__, "--case", case, "--path", str(path)]
            argv += ["--ranks", str(args.ranks)]
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            seconds, megabytes = out.split()
            label = f"{case} (1 of {args.ranks})" if case == "rank" else case
            print(f"{label:>14} {float(seconds):8.2f} {float(megabytes):11,.0f}")


if __name__ == "__main__":
    main()
