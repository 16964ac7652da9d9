"""The ``faceforge`` command: one entry point, one module per group of subcommands.

Building the parser imports no torch, NumPy or OpenCV (handlers import what they use), so
``faceforge --help`` answers at once.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Sequence

from faceforge.allocator import retain_freed_memory
from faceforge.cli.arguments import Parser, UsageError, warn_deprecated
from faceforge.errors import FaceforgeError, Interrupted

# Each module exposes ``register(subparsers)`` adding its subcommands with ``func=handler``.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "faceforge.cli.train_commands",
    "faceforge.cli.deploy_commands",
    "faceforge.cli.eval_commands",
    "faceforge.cli.data_commands",
    "faceforge.cli.weights_commands",
    "faceforge.cli.tools_commands",
    "faceforge.cli.liveness_commands",
    "faceforge.cli.serve_commands",
)

#: a dotted config override, as the commands that take them accept it
OVERRIDE = re.compile(r"[A-Za-z_][\w.]*=.*", re.DOTALL)

#: verbs renamed in 0.4, accepted with a deprecation line for one release
OLD_VERBS: dict[str, tuple[str, ...]] = {
    "eval-ijb": ("eval", "ijb"),
    "identify": ("eval", "identify"),
    "identify-bench": ("eval", "megaface"),
    "quality-erc": ("eval", "quality"),
}


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = Parser(
        prog="faceforge", description="Train, evaluate and deploy face recognition models."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The namespace of a command line; an old verb is read as its new spelling after one
    deprecation line on stderr."""
    argv = list(argv)
    if argv and argv[0] in OLD_VERBS:
        new = OLD_VERBS[argv[0]]
        warn_deprecated(argv[0], " ".join(new))
        argv = [*new, *argv[1:]]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    return _with_late_overrides(parser, args, extra)


def _with_late_overrides(
    parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]
) -> argparse.Namespace:
    """``section.key=value`` words after an option (``train --config q a=1 --no-progress
    b=2``) are overrides too: argparse takes only the first run of them."""
    overrides = getattr(args, "overrides", None)
    if extra and (overrides is None or not all(OVERRIDE.fullmatch(word) for word in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*overrides, *extra]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; expected errors print a one-line message and exit with status 2.

    Freed memory stays in the process for the next batch (:mod:`faceforge.allocator`).
    """
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    retain_freed_memory()
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        return _run(args)


def _one_line_warning(message: Warning | str, *_: object, **__: object) -> None:
    """Library warnings as one line each, without the source file and line."""
    print(f"faceforge: warning: {message}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except Interrupted as exc:
        print(f"faceforge {args.command}: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except FaceforgeError as exc:
        print(f"faceforge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable or full output folders, vanished files
        where = f" {exc.filename!r}" if exc.filename else ""
        print(f"faceforge {args.command}: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"faceforge {args.command}: interrupted", file=sys.stderr)
        return 130
