"""Fuzzing the file readers: damaged or crafted .bin, pairs.txt, pair lists, checkpoints and
images give a faceforge error or a good result, never another exception, within bounds.

Hypothesis drives :func:`fuzz_targets.mutate` with a bounded number of examples per input
type so CI stays fast; ``bench/fuzz.py`` runs 10,000 cases per type.
"""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pytest
from fuzz_targets import TARGETS, mutate, outcome
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

#: the most a single damaged file may raise the process's peak memory by
MEMORY_LIMIT_MB = 512


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bytes]]:
    found = {}
    for name, target in TARGETS.items():
        folder = tmp_path_factory.mktemp(name.replace(" ", "_").replace(".", "_"))
        found[name] = (folder, target.seed(folder))
    return found


@pytest.mark.parametrize("name", list(TARGETS))
def test_the_seed_reads_cleanly(name: str, seeds) -> None:
    folder, data = seeds[name]
    target = TARGETS[name]
    (folder / target.filename).write_bytes(data)
    assert outcome(target, folder / target.filename) == ("ok", "")


@pytest.mark.parametrize("name", list(TARGETS))
def test_damaged_files_give_only_documented_errors(name: str, seeds) -> None:
    folder, data = seeds[name]
    target = TARGETS[name]
    path = folder / target.filename
    before = _peak_mb()

    @settings(
        max_examples=150,
        deadline=None,  # the per-read time limit is enforced by outcome() itself
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        derandomize=True,
    )
    @given(st.integers(min_value=0, max_value=2**32 - 1))
    def check(seed: int) -> None:
        path.write_bytes(mutate(data, np.random.default_rng(seed)))
        kind, detail = outcome(target, path)
        assert kind in ("ok", "faceforge error"), f"{kind}: {detail}"

    check()
    assert _peak_mb() - before < MEMORY_LIMIT_MB
