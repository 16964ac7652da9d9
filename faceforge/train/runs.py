"""The output folder of a run: never shared with another run unless asked, claimed atomically
(two runs started at the same moment get two folders), and checked at once (not after minutes
of setup) for being writable.

A run claims its folder by creating the marker file :data:`CLAIM` there with ``O_EXCL``: the
file system lets exactly one process create it, so a second run finds the claim and moves
to the next numbered folder. A run that fails before writing anything gives the folder back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import socket
from pathlib import Path

from faceforge.config import Config
from faceforge.errors import ConfigError

#: the marker a run creates in its folder; a folder holding it belongs to a run
CLAIM = ".faceforge-run"
#: files whose presence means a folder holds a run (one written before claims existed)
RUN_FILES = ("last.pt", "best.pt")


def claim(folder: Path, exclusive: bool = True) -> bool:
    """Create ``folder`` and write its claim marker; ``False`` when ``exclusive`` and
    another run claimed it first (raises ConfigError when the folder cannot be written)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(folder / CLAIM, flags, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as marker:
            started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            marker.write(f"process {os.getpid()} on {socket.gethostname()}, {started}\n")
    except OSError as exc:
        raise ConfigError(
            f"train.output_dir={str(folder)!r}: cannot write there ({exc.strerror or exc}); "
            "choose another folder"
        ) from None
    return True


def release(folder: Path) -> None:
    """Give back a claimed folder that nothing was written to (the run failed while
    building): remove the marker and the folder if it is then empty."""
    if [path.name for path in folder.iterdir()] != [CLAIM]:
        return
    (folder / CLAIM).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # someone wrote there meanwhile: it is theirs
        folder.rmdir()


def claim_next_free(folder: Path) -> Path:
    """Claim ``folder`` itself or the first of ``folder-2``, ``folder-3``, ... that holds no
    run and no other run's claim."""
    candidate, number = folder, 2
    while _holds_checkpoints(candidate) or not claim(candidate):
        candidate, number = folder.with_name(f"{folder.name}-{number}"), number + 1
    return candidate


def _holds_checkpoints(folder: Path) -> bool:
    return any((folder / name).exists() for name in RUN_FILES)


def choose_output_dir(
    cfg: Config, own_folder: bool, overwrite: bool, resumed: Path | None = None
) -> Config:
    """``cfg`` with the folder this run claimed: a new run never lands on an existing one (it
    goes to the next numbered folder) unless ``overwrite``; a resumed run (``own_folder``)
    continues in its configured folder, unless that folder holds another run than the
    checkpoint ``resumed`` came from (a recipe resumed with ``--config`` names the folder the
    recipe's first run took, not the numbered one this run went to): refused, unless
    ``overwrite``."""
    folder = Path(cfg.train.output_dir)
    elsewhere = resumed is not None and resumed.resolve().parent != folder.resolve()
    if elsewhere and not overwrite and _holds_checkpoints(folder):
        raise ConfigError(
            f"train.output_dir={str(folder)!r} holds another run's checkpoints, which "
            f"resuming {resumed} there would overwrite: set train.output_dir="
            f"{str(resumed.parent)!r} (the checkpoint's folder) or a new folder, or pass "
            "--overwrite"
        )
    if own_folder or overwrite:
        claim(folder, exclusive=False)
    else:
        folder = claim_next_free(folder)
    if str(folder) == cfg.train.output_dir:
        return cfg
    train = dataclasses.replace(cfg.train, output_dir=str(folder))
    return dataclasses.replace(cfg, train=train)


def resolve_resume(cfg: Config, resume: str | Path | None) -> Path | None:
    """``resume`` as a path; ``"auto"`` means the output folder's ``last.pt`` when there is
    one, else a fresh start (what an elastic ``torchrun`` restart needs)."""
    if resume is None:
        return None
    if str(resume) != "auto":
        return Path(resume)
    last = Path(cfg.train.output_dir) / "last.pt"
    return last if last.is_file() else None
