"""Run folders: two runs started at the same moment never share one; a run that fails before
writing gives its folder back; --overwrite and --resume keep their folder."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from test_main import tiny_config

from faceforge.errors import ConfigError
from faceforge.train.runs import CLAIM, choose_output_dir, release


def _start_together(folder: Path, barrier, results) -> None:
    cfg = tiny_config(folder)
    barrier.wait(timeout=30)  # both processes claim from here at the same moment
    results.put(choose_output_dir(cfg, own_folder=False, overwrite=False).train.output_dir)


def test_two_runs_started_at_once_claim_two_folders(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")  # no torch in the children: fork is safe
    barrier, results = context.Barrier(2), context.Queue()
    processes = [
        context.Process(target=_start_together, args=(tmp_path / "run", barrier, results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    folders = sorted(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert folders == [str(tmp_path / "run"), str(tmp_path / "run-2")]
    assert all((Path(folder) / CLAIM).is_file() for folder in folders)


def test_claimed_and_legacy_folders_are_skipped_overwrite_and_resume_stay(tmp_path) -> None:
    claimed, legacy = tmp_path / "run", tmp_path / "run-2"
    (claimed).mkdir()
    (claimed / CLAIM).write_text("another run\n")
    legacy.mkdir()
    (legacy / "last.pt").write_bytes(b"a run from before claims existed")
    fresh = choose_output_dir(tiny_config(claimed), own_folder=False, overwrite=False)
    assert fresh.train.output_dir == str(tmp_path / "run-3")
    for own_folder, overwrite in [(True, False), (False, True)]:
        cfg = choose_output_dir(tiny_config(claimed), own_folder, overwrite)
        assert cfg.train.output_dir == str(claimed)
        assert (claimed / CLAIM).read_text() != "another run\n"  # claimed again by this run


def test_resuming_into_a_folder_of_another_run_is_refused(tmp_path: Path) -> None:
    """Run 2 of a recipe went to run-2; resumed with the recipe's --config it wrote into
    run, over run 1's last.pt."""
    first, second = tmp_path / "run", tmp_path / "run-2"
    for folder in (first, second):
        folder.mkdir()
        (folder / "last.pt").write_bytes(b"a checkpoint")
    with pytest.raises(ConfigError, match=r"holds another run's checkpoints, which resuming "):
        choose_output_dir(tiny_config(first), True, False, second / "last.pt")
    assert (first / "last.pt").read_bytes() == b"a checkpoint"
    own = choose_output_dir(tiny_config(second), True, False, second / "last.pt")
    assert own.train.output_dir == str(second)  # its own folder: resumed there
    forced = choose_output_dir(tiny_config(first), True, True, second / "last.pt")
    assert forced.train.output_dir == str(first)  # --overwrite: asked for


def test_release_gives_back_only_a_folder_nothing_was_written_to(tmp_path: Path) -> None:
    empty = Path(choose_output_dir(tiny_config(tmp_path / "a"), False, False).train.output_dir)
    release(empty)
    assert not empty.exists()
    used = Path(choose_output_dir(tiny_config(tmp_path / "b"), False, False).train.output_dir)
    (used / "config.yaml").write_text("written\n")
    release(used)
    assert sorted(p.name for p in used.iterdir()) == [CLAIM, "config.yaml"]


def test_an_unwritable_folder_is_one_clear_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file.txt"
    blocked.write_text("")
    for own_folder in (False, True):
        with pytest.raises(ConfigError, match="cannot write there"):
            choose_output_dir(tiny_config(blocked / "run"), own_folder, overwrite=False)
