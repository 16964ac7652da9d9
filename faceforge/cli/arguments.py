"""The parser every ``faceforge`` subcommand uses and the options they share: ranged numbers,
choices read lazily from registries, ``--no-progress``, ``--flip/--no-flip`` and old spellings.

A value outside its range fails while the command line is parsed, before any model or data
is loaded, as one line like every other faceforge error::

    faceforge align: error: argument --workers: must be an integer >= 1, got '-2'
"""

from __future__ import annotations

import argparse
import functools
import importlib
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from faceforge.errors import FaceforgeError, shorten

#: the words that ask a verb with tasks for its help rather than name a task
HELP = ("-h", "--help")
#: largest image side an option may ask for (a face crop or model input; photos are larger)
MAX_SIDE = 4096


class UsageError(FaceforgeError):
    """The command line itself is wrong; the message is the whole line to print."""


class Parser(argparse.ArgumentParser):
    """argparse raising :class:`UsageError` (one line, no usage block) instead of exiting, so
    :func:`faceforge.cli.main` reports it like any other error.

    A verb with sub-commands may name a ``default_task``: ``faceforge eval --bin X`` then
    reads as ``faceforge eval verification --bin X`` (argparse has no optional sub-command);
    a ``--WORD`` in ``flag_tasks`` anywhere selects the task ``WORD`` instead.
    """

    def __init__(
        self,
        *args: Any,
        default_task: str | None = None,
        flag_tasks: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.default_task, self.flag_tasks = default_task, flag_tasks

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message}")

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        if self.default_task is not None and args is not None:
            args = self._with_task(list(args))
        return super().parse_known_args(args, namespace)

    def _with_task(self, args: list[str]) -> list[str]:
        tasks = next(a for a in self._actions if isinstance(a, argparse._SubParsersAction))
        if args and (args[0] in tasks.choices or args[0] in HELP):
            return args
        flagged = [word for word in self.flag_tasks if f"--{word}" in args]
        if flagged:
            return [flagged[0], *(word for word in args if word != f"--{flagged[0]}")]
        return [str(self.default_task), *args]


def ranged(
    kind: type[int] | type[float],
    low: float | None = None,
    high: float | None = None,
    *,
    above: float | None = None,
) -> Callable[[str], int | float]:
    """An argparse ``type``: the text as ``kind``, finite, at least ``low``, at most ``high``
    and greater than ``above`` (each bound optional).

    >>> ranged(int, 1, 100)("85")
    85
    """
    noun = "an integer" if kind is int else "a finite number"
    bounds = [f">= {low}" if high is None else f"in {low}..{high}"] if low is not None else []
    bounds += [f"> {above}"] if above is not None else []
    bounds += [f"<= {high}"] if high is not None and low is None else []
    wanted = " ".join([noun, *bounds])

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if (
            not math.isfinite(value)
            or (low is not None and value < low)
            or (high is not None and value > high)
            or (above is not None and value <= above)
        ):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {shorten(text)}")
        return value

    return parse


def image_side(text: str) -> int:
    """An argparse ``type``: a face crop or model input side in pixels."""
    return int(ranged(int, 1, MAX_SIDE)(text))


class LazyChoices:
    """The names of a registry (or tuple of names) ``module.name``, imported only when an
    option's value is checked or its help shown, so building the parser imports no torch.

    Give the option a ``metavar`` (argparse would list the choices in the usage line).
    """

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    @functools.cached_property
    def _names(self) -> tuple[str, ...]:
        found = getattr(importlib.import_module(self.module), self.name)
        return tuple(found.names() if hasattr(found, "names") else found)

    def __contains__(self, value: object) -> bool:
        return value in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)


def warn_deprecated(old: str, new: str) -> None:
    """The one line an old spelling prints; it keeps working for one release."""
    print(f"faceforge: '{old}' is deprecated, use '{new}'", file=sys.stderr)


class _Deprecated(argparse.Action):
    """An old option spelling: warns, then stores what its replacement would (hidden in help)."""

    def __init__(self, option_strings: list[str], dest: str, replacement: str, **kwargs: Any):
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.replacement = replacement

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        warn_deprecated(str(option), self.replacement)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_deprecated_option(
    parser: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs: Any
) -> None:
    """Accept ``old`` for one release as a spelling of ``new`` (stored in ``dest``); a flag
    without a value passes ``nargs=0, const=VALUE``."""
    if kwargs.get("nargs") != 0:
        kwargs.setdefault("metavar", "VALUE")  # argparse would list lazy choices otherwise
    parser.add_argument(old, action=_Deprecated, replacement=new, dest=dest, **kwargs)


def add_progress_option(parser: argparse.ArgumentParser, quiet: bool = False) -> None:
    """``--no-progress`` (every command that does long work); ``quiet`` also accepts the old
    ``--quiet`` where a command had it."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (stderr)")
    if quiet:
        add_deprecated_option(
            parser, "--quiet", "--no-progress", "no_progress", nargs=0, const=True
        )


def progress_bar(args: argparse.Namespace, total: int, desc: str, unit: str = "img") -> Any:
    """A tqdm bar on stderr (none with ``--no-progress`` or nothing to count)."""
    from tqdm import tqdm

    hidden = args.no_progress or not total
    return tqdm(total=total, desc=desc, unit=unit, disable=hidden, file=sys.stderr)


def add_flip_option(parser: argparse.ArgumentParser) -> None:
    """``--flip/--no-flip``; unset, the model's own setting
    (:func:`~faceforge.core.embedder.resolve_flip`)."""
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        help="add the mirrored face's embedding (flip test-time augmentation; default: the "
        "model's recorded eval.flip, on unless its training turned it off, as its stored "
        "threshold was calibrated)",
    )
