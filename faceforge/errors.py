"""Exceptions raised for bad user input; each message says what to fix."""

import reprlib

#: characters of a value an error message quotes (input can be any size)
QUOTED_CHARS = 80


class _BriefRepr(reprlib.Repr):
    """reprlib's bounded repr (a few items per container, a few levels), with huge integers
    described by their size (Python refuses to print those over 4300 digits)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 3, limit, limit, limit

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 4096:  # ~1200 digits: cut anyway, and near what Python prints
            return f"<{x.bit_length()}-bit integer>"
        return super().repr_int(x, level)


def shorten(value: object, limit: int = QUOTED_CHARS) -> str:
    """``repr(value)`` for an error message, at most about ``limit`` characters however large
    or deeply shared ``value`` is: containers are abbreviated before they are formatted, so
    quoting a YAML alias bomb or a gigabyte string costs nothing."""
    return clip(_BriefRepr(limit).repr(value), limit)


def clip(text: str, limit: int = 4 * QUOTED_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "..." when cut."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def first_line(exc: BaseException, limit: int = 4 * QUOTED_CHARS) -> str:
    """The first line of an exception's message (cut to ``limit`` characters: libraries quote
    our input in theirs), for wrapping a library's error in one line of ours; its type name
    when the message is empty."""
    lines = str(exc).strip().splitlines()
    return clip(lines[0], limit) if lines else type(exc).__name__


class FaceforgeError(Exception):
    """Base class for every error faceforge raises on purpose."""


class ConfigError(FaceforgeError, ValueError):
    """A config file or override is malformed or names an unknown key."""


class UnknownChoiceError(ConfigError, KeyError):
    """A name that is not in a registry; the message lists the valid choices."""

    __str__ = Exception.__str__  # a plain message, not KeyError's quoted repr


class DataError(FaceforgeError):
    """An image, list or record file cannot be read or has the wrong content."""


class FormatError(DataError):
    """A file does not follow the format it claims (truncated, unsafe, wrong layout)."""


class FileChangedError(FaceforgeError):
    """A file changed while it was being read (replaced or rewritten by another program):
    reading on would mix the old file's index with the new file's bytes. Not a DataError, so
    ``data.skip_corrupt`` does not pass over it image by image."""


class CheckpointError(FaceforgeError):
    """A checkpoint is missing, incompatible or cannot be loaded safely."""


class TrainingError(FaceforgeError):
    """Training cannot continue (for example the loss became NaN or infinite)."""


class Interrupted(FaceforgeError):
    """Work stopped on a signal (Ctrl-C, SIGTERM) after saving; ``signum`` is the signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class TrainingInterrupted(Interrupted, TrainingError):
    """Training stopped on a signal after saving a resumable checkpoint."""
