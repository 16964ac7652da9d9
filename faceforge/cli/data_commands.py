"""``faceforge convert`` and ``faceforge inspect``: dataset files at scale.

Handlers only gather inputs and print: the work is done by :mod:`faceforge.prepare`.
"""

from __future__ import annotations

import argparse
import sys

from faceforge.cli.arguments import add_progress_option, image_side, ranged, warn_deprecated
from faceforge.cli.model_commands import add_max_pixels_option
from faceforge.cli.outputs import file_problem
from faceforge.data.limits import MAX_DATASET_PIXELS
from faceforge.errors import DataError

FORMATS_HELP = (
    "Formats are chosen by path: *.rec (or a folder holding train.rec) is MXNet RecordIO "
    "(.rec + .idx + property), *.lmdb is LMDB, *.txt / *.lst a 'path label' list, anything "
    "else an <identity>/<image> folder."
)


def _to_bin(args: argparse.Namespace) -> int:
    """The old ``convert --to-bin PAIRS --images DIR OUT.bin``: ``pack-bin``'s code path."""
    from faceforge.cli.eval_commands import pack_bin

    warn_deprecated("convert --to-bin", "pack-bin")
    if len(args.paths) != 1 or not args.images:
        raise DataError("--to-bin PAIRS needs --images DIR and exactly one output .bin path")
    problem = file_problem(args.paths[0])
    if problem:
        raise DataError(problem)
    pack = {"pairs": [args.to_bin], "images": args.images, "pair_list": [], "root": None}
    pack |= {"output": args.paths[0], "size": args.size or 112, "resize": None, "ext": ".jpg"}
    pack |= {"shuffle_pairs": False, "no_progress": args.no_progress}
    return pack_bin(argparse.Namespace(**pack))


def _convert(args: argparse.Namespace) -> int:
    from faceforge.prepare.convert import ConvertOptions, convert

    if args.to_bin:
        return _to_bin(args)
    if len(args.paths) != 2:
        raise DataError("convert takes SRC and DST (.bin files: faceforge pack-bin)")
    options = ConvertOptions(
        quality=args.quality,
        size=args.size,
        shuffle=args.shuffle,
        seed=args.seed,
        skip_corrupt=args.skip_corrupt,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        max_pixels=args.max_pixels,
    )
    summary = convert(*args.paths, options, log=lambda text: print(text, file=sys.stderr))
    print(summary.text(args.paths[1]))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from faceforge.core.model_report import describe_model_file, is_model_file
    from faceforge.evaluation.pair_report import describe_verification_file
    from faceforge.inference.matching.gallery_report import describe_gallery_folder

    lines = describe_model_file(args.path) if is_model_file(args.path) else None
    lines = lines or describe_verification_file(args.path) or describe_gallery_folder(args.path)
    if lines:
        print("\n".join(lines))
        return 0
    from faceforge.prepare.inspect import inspect_dataset

    report = inspect_dataset(args.path, sample=args.sample, max_pixels=args.max_pixels)
    print("\n".join(report.lines()))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``convert`` and ``inspect`` to the ``faceforge`` parser."""
    p = subparsers.add_parser(
        "convert",
        help="convert a training set between folder, list, RecordIO and LMDB",
        description="Copy a dataset into another format, losslessly unless --quality or "
        f"--size re-encode. {FORMATS_HELP} The output appears only when complete. Examples: "
        "faceforge convert casia/ casia/train.rec; faceforge convert ms1m/ ms1m.lmdb; "
        "faceforge convert ms1m/train.rec shuffled/train.rec --shuffle (for DALI). "
        "Verification .bin files: faceforge pack-bin.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="SRC DST")
    p.add_argument(
        "--quality", type=ranged(int, 1, 100), help="re-encode as JPEG of this quality (1-100)"
    )
    p.add_argument("--size", type=image_side, help="resize to SIZE x SIZE (re-encodes)")
    p.add_argument("--shuffle", action="store_true", help="write the images in random order")
    p.add_argument("--seed", type=ranged(int, 0), default=0, help="shuffle seed (default 0)")
    p.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="log and count unreadable images or records instead of stopping",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_progress_option(p, quiet=True)
    p.add_argument("--to-bin", help=argparse.SUPPRESS)  # deprecated: faceforge pack-bin
    p.add_argument("--images", help=argparse.SUPPRESS)
    add_max_pixels_option(p, MAX_DATASET_PIXELS, "images")
    p.set_defaults(func=_convert)

    p = subparsers.add_parser(
        "inspect",
        help="show what a dataset, a model file or a verification file holds",
        description=f"Count images and classes and sample image sizes. {FORMATS_HELP} A model "
        "file (.pt, .pth, .ckpt, .onnx) is described instead: a faceforge checkpoint's model, "
        "contract, training step and part sizes; an ONNX model's contract; another project's "
        "weights with the backbones it fits (the --arch faceforge import takes). A "
        "verification .bin, LFW pairs.txt or CSV/TSV pair list: its pairs, classes and folds. "
        "A gallery folder: "
        "its people, embeddings, index and model.",
    )
    p.add_argument(
        "path",
        help="dataset (.rec, folder with train.rec, .lmdb, list or folder), model file, "
        "verification .bin, pairs.txt or pair list, or gallery folder",
    )
    p.add_argument(
        "--sample", type=ranged(int, 0), default=1000, help="images decoded for the histograms"
    )
    add_max_pixels_option(p, MAX_DATASET_PIXELS, "images")
    p.set_defaults(func=_inspect)
