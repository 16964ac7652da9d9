"""Wall time of ``faceforge --help`` and ``faceforge train --help`` (target: under 0.5 s).

Each command runs in a fresh interpreter (``python -m faceforge ...``), as a user types it;
the median of ``--runs`` runs is printed beside the bare interpreter start-up for scale.
Building the parser imports no torch, NumPy or OpenCV (tests/cli/test_lazy_import.py).

    python bench/cli_help.py            # 5 runs each
    python bench/cli_help.py --runs 9
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "faceforge --help": ["-m", "faceforge", "--help"],
    "faceforge train --help": ["-m", "faceforge", "train", "--help"],
    "faceforge eval --help": ["-m", "faceforge", "eval", "--help"],
}


def median_seconds(args: list[str], runs: int) -> float:
    """Median wall time of ``python ARGS`` over ``runs`` runs, output discarded."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command (default 5)")
    runs = parser.parse_args().runs
    for name, args in COMMANDS.items():
        print(f"{name:<24} median of {runs}: {median_seconds(args, runs):.3f} s")


if __name__ == "__main__":
    main()
