"""Exceptions raised for bad user input; each message says what to fix."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for wrapping a library's error in one line
    of ours; its type name when the message is empty."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


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


class CheckpointError(FaceforgeError):
    """A checkpoint is missing, incompatible or cannot be loaded safely."""


class TrainingError(FaceforgeError):
    """Training cannot continue (for example the loss became NaN or infinite)."""


class TrainingInterrupted(TrainingError):
    """Training stopped on a signal (Ctrl-C, SIGTERM) after saving; ``signum`` is the signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
