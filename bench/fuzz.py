"""Fuzz faceforge's file readers: N mutated cases per format, outcomes as a table.

    python bench/fuzz.py                  # 10,000 cases per format
    python bench/fuzz.py --cases 500 --types .rec lmdb onnx

Each case damages a valid seed file (see ``tests/fuzz_targets.py`` and
``tests/fuzz_formats.py``: bit flips, overwritten bytes, truncation, inserted and repeated
chunks, text encodings, and per format crafted damage: huge declared sizes and counts,
duplicated offsets, escaping external-data paths, alias bombs) and reads it. Every format
runs in its own child process; memory is the REAL peak RSS of that process: before each
case its high-water mark is reset (``/proc/self/clear_refs``), after it ``VmHWM`` is compared
with the RSS before the case. The goal is 0 in the last three outcome columns: every
outcome is a clean read or a faceforge error, no read takes over 5 s or raises its
process's peak RSS by more than ``--case-mb``. An address-space cap (``--memory-gb`` above
the child's size) keeps a runaway allocation from taking the machine down.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's faceforge
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fuzz_targets import OUTCOMES, TARGETS, mutate, outcome


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _reset_peak() -> None:
    """Reset this process's peak RSS (VmHWM) to its current RSS."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def cap_memory(extra_gb: float) -> None:
    """Limit the address space to what the process uses now plus ``extra_gb``."""
    limit = _status_kb("VmSize") * 1024 + int(extra_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _quiet() -> None:
    """Silence the warnings and the C libraries' stderr chatter about damaged files."""
    warnings.simplefilter("ignore")
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # ONNX Runtime prints its fallbacks on stdout
    os.dup2(quiet, 2)


def fuzz_format(name: str, cases: int, seed: int, case_mb: float, extra_gb: float) -> dict:
    """Run in a child: outcome counts, peak RSS figures (MB) and failure examples."""
    import torch

    torch.set_num_threads(1)
    _quiet()
    target = TARGETS[name]
    counts: Counter = Counter()
    failures: list[str] = []
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = target.seed(folder)
        path = folder / target.filename
        path.write_bytes(data)
        outcome(target, path)  # imports and first-use allocations are not the input's cost
        baseline = _status_kb("VmRSS") / 1024
        cap_memory(extra_gb)
        rng = np.random.default_rng([seed, *name.encode()])
        started = time.perf_counter()
        for _ in range(cases):
            path.write_bytes(mutate(data, rng, target.craft))
            _reset_peak()
            before = _status_kb("VmRSS") / 1024
            kind, detail = outcome(target, path)
            grew = _status_kb("VmHWM") / 1024 - before
            worst = max(worst, grew)
            if kind in ("ok", "faceforge error") and grew > case_mb:
                kind, detail = "over memory", f"peak RSS +{grew:.0f} MB"
            counts[kind] += 1
            if kind not in ("ok", "faceforge error") and len(failures) < 5:
                failures.append(f"{name}: {kind}: {detail}"[:300])
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "counts": dict(counts),
        "failures": failures,
        "baseline": baseline,
        "peak": peak,
        "worst": worst,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases per format")
    parser.add_argument("--types", nargs="+", choices=sorted(TARGETS), default=list(TARGETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case-mb", type=float, default=256.0, help="peak RSS growth per case")
    parser.add_argument("--memory-gb", type=float, default=2.0, help="address-space headroom")
    args = parser.parse_args()
    table = Table(title=f"fuzzing: {args.cases} mutated files per format")
    for column in ("format", "cases", "ok", "refused (faceforge error)", *OUTCOMES[2:]):
        table.add_column(column, justify="left" if column == "format" else "right")
    for column in ("baseline RSS MB", "peak RSS MB", "worst case +MB", "seconds"):
        table.add_column(column, justify="right")
    failures: list[str] = []
    context = multiprocessing.get_context("spawn")
    for name in args.types:
        with context.Pool(1) as pool:
            job = (name, args.cases, args.seed, args.case_mb, args.memory_gb)
            result = pool.apply(fuzz_format, job)
        counts = result["counts"]
        failures += result["failures"]
        figures = (result[key] for key in ("baseline", "peak", "worst"))
        table.add_row(
            name,
            str(sum(counts.values())),
            *(str(counts.get(kind, 0)) for kind in OUTCOMES),
            *(f"{value:.0f}" for value in figures),
            f"{result['seconds']:.1f}",
        )
        done = ", ".join(f"{kind} {counts.get(kind, 0)}" for kind in OUTCOMES)
        print(f"{name}: {done}; peak RSS {result['peak']:.0f} MB", file=sys.stderr, flush=True)
    Console(width=200).print(table)
    for line in failures:
        print(line)


if __name__ == "__main__":
    main()
