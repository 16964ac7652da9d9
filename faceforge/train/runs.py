"""The output folder of a run: never overwrite another run unless asked, and fail at once
(not after minutes of setup) when the folder cannot be written."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from faceforge.config import Config
from faceforge.errors import ConfigError

#: files whose presence means a folder already holds a run
RUN_FILES = ("last.pt", "best.pt")


def holds_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in RUN_FILES)


def next_free_folder(folder: Path) -> Path:
    """``folder`` itself, or the first of ``folder-2``, ``folder-3``, ... holding no run."""
    candidate, number = folder, 2
    while holds_run(candidate):
        candidate, number = folder.with_name(f"{folder.name}-{number}"), number + 1
    return candidate


def check_writable(folder: Path) -> None:
    """Create ``folder`` and write a probe file there, or raise a ConfigError saying why."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(
            f"train.output_dir={str(folder)!r}: cannot write there ({exc.strerror or exc}); "
            "choose another folder"
        ) from None


def choose_output_dir(cfg: Config, resuming: bool, overwrite: bool) -> Config:
    """``cfg`` with the folder this run will write: a new run never lands on an existing one
    (it goes to the next numbered folder) unless ``overwrite``; a resumed run continues in
    its configured folder."""
    folder = Path(cfg.train.output_dir)
    if not (resuming or overwrite):
        folder = next_free_folder(folder)
    check_writable(folder)
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
