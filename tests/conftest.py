"""Shared fixtures: the optional real-photo data in ../shared/data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data; tests using it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real face data not available at {SHARED_DATA} (only in the dev workplace)")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """Run the suite's small models on one thread: they gain nothing from more, and on a
    shared 2-core machine OpenMP threads waiting for a busy core make small forward passes
    about 10x slower. No checked number depends on the thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
