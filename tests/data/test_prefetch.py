"""ahead: results in order, the next job started before the current result is used, errors
raised where their result is taken."""

from __future__ import annotations

import threading

import pytest

from faceforge.data.prefetch import ahead


def test_the_next_job_runs_while_the_caller_holds_the_current_result() -> None:
    started = [threading.Event() for _ in range(3)]

    def job(i: int) -> int:
        started[i].set()
        return i * 10

    results = ahead(lambda i=i: job(i) for i in range(3))
    assert next(results) == 0
    assert started[1].wait(timeout=30)  # submitted before result 0 was handed over
    assert list(results) == [10, 20]


def test_an_error_is_raised_in_order_and_nothing_runs_after_the_caller_stops() -> None:
    ran = []

    def job(i: int) -> int:
        ran.append(i)
        if i == 1:
            raise ValueError("bad batch 1")
        return i

    results = ahead(lambda i=i: job(i) for i in range(5))
    assert next(results) == 0
    with pytest.raises(ValueError, match="bad batch 1"):
        next(results)
    assert max(ran) <= 2  # at most one job ahead of the one that failed
    assert list(ahead([])) == []
