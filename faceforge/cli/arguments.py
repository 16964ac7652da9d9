"""The parser every ``faceforge`` subcommand uses and the numeric argument type they share.

A value outside its range fails while the command line is parsed, before any model or data
is loaded, as one line like every other faceforge error::

    faceforge align: error: argument --workers: must be an integer >= 1, got '-2'
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

from faceforge.errors import FaceforgeError, shorten

#: largest image side an option may ask for (a face crop or model input; photos are larger)
MAX_SIDE = 4096


class UsageError(FaceforgeError):
    """The command line itself is wrong; the message is the whole line to print."""


class Parser(argparse.ArgumentParser):
    """argparse raising :class:`UsageError` (one line, no usage block) instead of exiting, so
    :func:`faceforge.cli.main` reports it like any other error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message}")


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
