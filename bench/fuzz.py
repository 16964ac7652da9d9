"""Fuzz faceforge's file readers: N mutated cases per input type, outcomes as a table.

    python bench/fuzz.py                  # 10,000 cases per type
    python bench/fuzz.py --cases 500 --types bin checkpoint

Each case damages a valid seed file (see ``tests/fuzz_targets.py``: bit flips, overwritten
bytes, truncation, inserted and repeated chunks, BOM / Latin-1 text) and reads it. The goal
is 0 in the last two columns: every outcome is a clean read or a documented faceforge error,
no read takes over 5 s, and none can allocate past the address-space cap set here (the
process's current size + --memory-gb).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fuzz_targets import OUTCOMES, TARGETS, Target, mutate, outcome


def cap_memory(extra_gb: float) -> None:
    """Limit the address space to what the process uses now plus ``extra_gb``: an
    allocation a crafted file asks for beyond that raises MemoryError (counted)."""
    with open("/proc/self/status") as status:
        vm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = vm_kb * 1024 + int(extra_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def fuzz(target: Target, cases: int, folder: Path, seed: int) -> tuple[Counter, list[str]]:
    """Outcome counts of ``cases`` mutations of ``target``'s seed, and examples of failures."""
    data = target.seed(folder)
    path = folder / target.filename
    rng = np.random.default_rng([seed, len(target.name)])
    counts: Counter = Counter()
    failures: list[str] = []
    for _ in tqdm(range(cases), desc=target.name, unit="case", leave=False):
        path.write_bytes(mutate(data, rng))
        kind, detail = outcome(target, path)
        counts[kind] += 1
        if kind not in ("ok", "faceforge error") and len(failures) < 5:
            failures.append(f"{target.name}: {kind}: {detail}")
    return counts, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases per input type")
    parser.add_argument("--types", nargs="+", choices=sorted(TARGETS), default=sorted(TARGETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-gb", type=float, default=2.0, help="allocation headroom")
    args = parser.parse_args()
    cap_memory(args.memory_gb)
    table = Table(title=f"fuzzing: {args.cases} mutated files per input type")
    table.add_column("input")
    for kind in OUTCOMES:
        table.add_column(kind, justify="right")
    table.add_column("seconds", justify="right")
    failures: list[str] = []
    for name in args.types:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            counts, found = fuzz(TARGETS[name], args.cases, Path(tmp), args.seed)
            seconds = time.perf_counter() - started
        failures += found
        table.add_row(name, *(str(counts[k]) for k in OUTCOMES), f"{seconds:.0f}")
    Console().print(table)
    for line in failures:
        print(line)


if __name__ == "__main__":
    main()
