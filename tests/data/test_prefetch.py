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


def test_several_workers_run_ahead_and_hand_results_over_in_order() -> None:
    """With 3 workers, jobs 1-3 start while the caller holds result 0; job 4 waits for a
    result to be taken (at most workers + 1 results at once); a later job finishing first
    is still handed over after the earlier ones."""
    started = [threading.Event() for _ in range(6)]
    release = [threading.Event() for _ in range(6)]

    def job(i: int) -> int:
        started[i].set()
        assert release[i].wait(timeout=30)
        return i

    for event in release[:1] + release[3:4]:
        event.set()
    results = ahead((lambda i=i: job(i) for i in range(6)), workers=3)
    assert next(results) == 0
    assert all(event.wait(timeout=30) for event in started[1:4])
    assert not started[4].is_set()  # nothing more than 3 ahead of the result held
    release[2].set()
    release[1].set()
    assert next(results) == 1 and started[4].wait(timeout=30)
    for event in release[4:]:
        event.set()
    assert list(results) == [2, 3, 4, 5]


def test_stopping_early_cancels_the_jobs_not_yet_running() -> None:
    ran: list[int] = []
    gate = threading.Event()

    def job(i: int) -> int:
        ran.append(i)
        if i == 0:
            assert gate.wait(timeout=30)
        return i

    results = ahead((lambda i=i: job(i) for i in range(8)), workers=1)
    gate.set()
    assert next(results) == 0
    results.close()  # the caller stops: job 1 was submitted, nothing after it runs
    assert ran == [0, 1] or ran == [0]


def test_decode_threads_follow_the_cores_this_process_may_use(monkeypatch) -> None:
    import os

    from faceforge.data.prefetch import decode_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert decode_threads() == 3 and decode_threads(limit=2) == 2
