"""``faceforge pairs``, ``extract-faces`` and ``visualize``: the research log's tools.

Handlers only gather inputs and print: the work is done by :mod:`faceforge.prepare`,
:mod:`faceforge.train` and :mod:`faceforge.evaluation`. Every output path is checked before
the work starts; ``--no-progress`` hides the progress bars.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from faceforge.cli.outputs import check_output, check_output_folder
from faceforge.files import atomic_write_bytes

FORMATS = "a folder of <identity>/<image>, a 'path label' list, a .rec or an .lmdb dataset"


def _write_json(path: str | None, values: dict) -> None:
    if path is not None:
        atomic_write_bytes(path, (json.dumps(values, indent=2) + "\n").encode())
        print(f"wrote {path}")


def _pairs(args: argparse.Namespace) -> int:
    from faceforge.prepare.pairs_file import PairsOptions, make_pairs

    check_output(args.output, "output")
    check_output(args.json, "--json", (".json",))
    if args.export is not None:
        check_output_folder(str(Path(args.export).parent), "--export")
    options = PairsOptions(folds=args.folds, per_fold=args.per_fold, seed=args.seed)
    report = make_pairs(
        args.src, args.output, options, export=args.export, progress=not args.no_progress
    )
    print(report.summary())
    _write_json(args.json, report.to_dict())
    return 0


def _add_common(parser: argparse.ArgumentParser, json_help: str) -> None:
    parser.add_argument("--json", metavar="FILE", help=json_help)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pairs``, ``extract-faces`` and ``visualize`` to the ``faceforge`` parser."""
    p = subparsers.add_parser(
        "pairs",
        help="write LFW View 2 style verification pairs (pairs.txt) from a dataset",
        description="K identity-disjoint folds of N same-person and N different-person "
        f"pairs, seeded, from {FORMATS}. Read it back with faceforge eval --pairs OUT.txt "
        "--images SRC (or --images the --export folder; pack-bin reads it too). Example: "
        "faceforge pairs my_photos_aligned/ my_pairs.txt --folds 10 --per-fold 300",
    )
    p.add_argument("src", help=f"the dataset: {FORMATS}")
    p.add_argument("output", help="the pairs file to write (e.g. pairs.txt)")
    p.add_argument("--folds", type=int, default=10, help="identity-disjoint folds (default 10)")
    p.add_argument(
        "--per-fold",
        type=int,
        default=300,
        help="same pairs per fold, and as many different pairs (default 300, as LFW)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--export",
        metavar="DIR",
        help="also copy the paired images to DIR/<name>/<name>_NNNN.<ext> (an LFW folder; "
        "needed when the source's file names are not of that form)",
    )
    _add_common(p, "write the folds' summary to this JSON file")
    p.set_defaults(func=_pairs)
