"""Fuzzing the file readers: damaged or crafted files of every format faceforge reads (.bin,
pairs.txt, pair lists, checkpoints, images and their declared sizes, galleries, .rec, .idx,
property, LMDB, ONNX with external data, backbone.pth, YAML configs and overrides, IJB meta
files) give a faceforge error or a good result, never another exception, within bounds.

Hypothesis drives :func:`fuzz_targets.mutate` (with each format's structure-aware damage) with
a bounded, derandomized number of examples per format (the ``fuzz`` settings profile) so CI
stays fast; ``bench/fuzz.py`` runs 10,000 cases per format, each format in a child process
whose real peak RSS it measures.
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

settings.register_profile(
    "fuzz",
    max_examples=300,
    deadline=None,  # the per-read time limit is enforced by outcome() itself
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
    database=None,
)


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

    @settings(settings.get_profile("fuzz"))
    @given(st.integers(min_value=0, max_value=2**32 - 1))
    def check(seed: int) -> None:
        path.write_bytes(mutate(data, np.random.default_rng(seed), target.craft))
        kind, detail = outcome(target, path)
        assert kind in ("ok", "faceforge error"), f"{kind}: {detail}"

    check()
    assert _peak_mb() - before < MEMORY_LIMIT_MB
