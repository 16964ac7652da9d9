"""``faceforge eval``: one verb for every benchmark, the task its first word
(``verification``, the default, may be left out: 1:1 verification sets; ``ijb``, ``identify``
and ``megaface`` in :mod:`.identification_commands`; ``quality`` and ``liveness`` in
:mod:`.liveness_commands`), and ``faceforge pack-bin``, the one ``.bin`` writer.

Handlers only gather inputs and print: the work is done by :mod:`faceforge.evaluation`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from faceforge.cli import identification_commands, liveness_commands
from faceforge.cli.arguments import (
    add_flip_option,
    add_progress_option,
    image_side,
    ranged,
)
from faceforge.cli.model_commands import (
    RESIZE_CHOICES,
    add_detector_options,
    add_max_pixels_option,
    add_runtime_options,
    add_source_options,
    detector_spec,
    model_source,
    runtime_kwargs,
)
from faceforge.cli.outputs import add_json_option, output_file, output_folder, plot_file
from faceforge.data.limits import MAX_PHOTO_PIXELS
from faceforge.errors import DataError

#: the task ``faceforge eval`` runs when its first word names none
DEFAULT_TASK = "verification"

IMAGES_HELP = (
    "images of --pairs: a folder of <name>/<name>_NNNN.<ext> files, or the .rec, .lmdb or "
    "list dataset faceforge pairs drew them from"
)


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate


def _pair_lists(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """``(name, PairList)`` of every ``--pairs`` and ``--pair-list`` file, files checked."""
    from faceforge.evaluation.pairs import read_pair_list
    from faceforge.prepare.pairs_file import read_pairs_on

    if args.pairs and not args.images:
        raise DataError(
            "--pairs needs --images (the folder with <name>/<name>_NNNN.jpg, or the RecordIO, "
            "LMDB or list dataset faceforge pairs drew the pairs from)"
        )
    if args.images and not args.pairs:
        raise DataError(
            "--images is the image folder of --pairs (pairs.txt); the paths of --pair-list "
            "start from --root DIR (default: the list's folder)"
        )
    pair_lists = [(Path(p).stem, read_pairs_on(p, args.images)) for p in args.pairs]
    pair_lists += [(Path(p).stem, read_pair_list(p, args.root)) for p in args.pair_list]
    if args.shuffle_pairs:
        return [(name, plist.shuffled()) for name, plist in pair_lists]
    return pair_lists


def pack_bin(args: argparse.Namespace) -> int:
    """Write one insightface ``.bin`` from a pairs file over an image folder."""
    pair_lists = _pair_lists(args)
    if len(pair_lists) != 1:
        raise DataError("pack-bin takes exactly one --pairs or --pair-list file")
    name, plist = pair_lists[0]
    vset = plist.pack(
        name,
        args.output,
        image_size=(args.size, args.size),
        resize=args.resize,
        ext=args.ext,
        progress=not args.no_progress,
    )
    print(f"wrote {args.output}: {len(vset.issame)} pairs ({int(vset.issame.sum())} same)")
    if plist.folds not in (None, 10):  # a .bin records no folds; insightface reads 10
        print(f"its pairs are in {plist.folds} folds: evaluate it with --folds {plist.folds}")
    return 0


def _sets(args: argparse.Namespace, embedder: Any) -> list[tuple[str, Any]]:
    """``(name, VerificationSet or PairList)`` of every requested set; all files are checked
    before anything is embedded (pair lists are decoded while they are evaluated)."""
    from faceforge.evaluation.bin_format import load_bin

    missing = [str(p) for p in args.bin if not Path(p).is_file()]
    if missing:
        raise DataError("verification .bin file(s) not found: " + ", ".join(missing))
    pair_lists = _pair_lists(args)
    if not (args.bin or pair_lists or args.synthetic):
        raise DataError("nothing to evaluate: give --bin, --pairs, --pair-list or --synthetic")

    size = embedder.input_size
    taken: set[str] = set()
    sets: list[tuple[str, Any]] = []
    if args.synthetic:
        from faceforge.data.synthetic import synthetic_verification_set

        print("rendering the checkpoint config's held-out synthetic pairs ...")
        vset = synthetic_verification_set(embedder.config.data.synthetic)
        if args.resize and vset.images.shape[1:3] != size:
            import numpy as np

            from faceforge.data.images import fit_image

            faces = [fit_image(face, size, args.resize, "synthetic face") for face in vset.images]
            vset.images = np.stack(faces)
        sets.append((vset.name, vset))
        taken.add(vset.name)
    for path in args.bin:
        vset = load_bin(path, image_size=size, resize=args.resize)
        vset.name = _unique_name(vset.name, taken)
        sets.append((vset.name, vset))
    sets += [(_unique_name(name, taken), plist) for name, plist in pair_lists]
    return sets


def _recorded(metrics: dict[str, Any], name: str) -> str:
    stored = metrics.get(name)
    if isinstance(stored, dict) and isinstance(stored.get("accuracy"), (int, float)):
        return f"  (checkpoint recorded {100 * stored['accuracy']:.4f})"
    return ""


def _folds(args: argparse.Namespace, data: Any) -> int:
    """``--folds``, else the folds a pairs.txt header declares, else insightface's 10."""
    return args.folds or getattr(data, "folds", None) or 10


def _evaluate(
    args: argparse.Namespace, embedder: Any, name: str, data: Any, load: Any = None
) -> Any:
    """One set's result: a pair list streamed from its files (through ``load`` when given),
    anything else in memory."""
    from faceforge.evaluation.pairs import PairList
    from faceforge.evaluation.run import evaluate_embedder, evaluate_pair_list

    options = {"flip": embedder.flip, "folds": _folds(args, data), "progress": not args.no_progress}
    if isinstance(data, PairList):
        return evaluate_pair_list(
            embedder, name, data, resize=args.resize, max_pixels=args.max_pixels, load=load,
            **options,
        )  # fmt: skip
    return evaluate_embedder(embedder, data, **options)


def _aligning_loader(args: argparse.Namespace, embedder: Any) -> Any:
    """With ``--align``: a loader that detects and aligns the photos of pair files with the
    face pipeline (a photo without a face is fitted by ``--resize``, else an error names it)."""
    if not args.align:
        return None
    if not (args.pairs or args.pair_list):
        raise DataError("--align detects faces in the photos of --pairs or --pair-list files")
    from faceforge.data.image_io import decode_image
    from faceforge.inference.detection.registry import build_detector
    from faceforge.inference.face_checks import NoFace
    from faceforge.inference.pipeline import FacePipeline

    detector = build_detector(detector_spec(args), device=args.device)
    pipeline = FacePipeline(embedder, detector, fallback=args.resize, max_pixels=args.max_pixels)

    def aligned(entries: list) -> Any:
        photos = [
            entry
            if isinstance(entry, Path)
            else decode_image(entry.encoded(), str(entry), args.max_pixels)
            for entry in entries
        ]
        try:
            return pipeline.align_batch(photos)
        except NoFace as exc:
            raise DataError(
                f"{exc.photo}: no face found; --resize center-crop embeds the middle of the "
                "photos where the detector finds none"
            ) from None

    return aligned


def _eval(args: argparse.Namespace) -> int:
    from faceforge.core.embedder import load_embedder
    from faceforge.evaluation.report import format_result, plot_roc, write_json

    embedder = load_embedder(model_source(args), **runtime_kwargs(args))
    sets = _sets(args, embedder)
    embedder.batch_size = args.batch_size or embedder.config.eval.batch_size
    from faceforge.core.embedder import resolve_flip

    flip = resolve_flip(embedder, args.flip)
    load = _aligning_loader(args, embedder)
    results = {}
    for name, data in sets:
        result = _evaluate(args, embedder, name, data, load)
        results[name] = result
        print(format_result(name, result) + _recorded(embedder.metrics, name))
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    meta = {
        "checkpoint": str(args.checkpoint),
        "backbone": embedder.model.arch or embedder.description,
        "flip": flip,
        "precision": args.precision,
        "runtime": repr(embedder.backend),  # what ran: device, precision, layout, Winograd
        "folds": {name: _folds(args, data) for name, data in sets},
    }
    if args.json:
        write_json(args.json, results, meta)
        print(f"wrote {args.json}")
    if args.roc:
        plot_roc(args.roc, results)
        print(f"wrote {args.roc}")
    if args.report:
        from faceforge.evaluation.html_report import write_html_report

        print(f"wrote {write_html_report(args.report, results, dict(sets), meta)}")
    return 0


def _add_pair_files(parser: argparse.ArgumentParser, nargs: str | int) -> None:
    """``--pairs`` (LFW pairs.txt with ``--images``) and ``--pair-list`` (CSV/TSV, ``--root``)."""
    parser.add_argument("--pairs", nargs=nargs, default=[], help="LFW-style pairs.txt file(s)")
    parser.add_argument("--images", help=IMAGES_HELP)
    parser.add_argument(
        "--pair-list", nargs=nargs, default=[], help="CSV/TSV pair lists: path_a,path_b,same"
    )
    parser.add_argument("--root", help="folder relative --pair-list paths start from")
    parser.add_argument(
        "--shuffle-pairs",
        action="store_true",
        help="put the pairs in a fixed random order first, so the folds of a list sorted by "
        "label hold both classes (LFW View 2's pairs.txt is already in balanced folds)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval`` (with its tasks) and ``pack-bin`` to the ``faceforge`` parser."""
    family = subparsers.add_parser(
        "eval",
        help="benchmark a model: 1:1 verification (default), IJB, 1:N, MegaFace, quality, PAD",
        description="faceforge eval [TASK] ...; without TASK, verification. Examples: "
        "faceforge eval --checkpoint last.pt --bin lfw.bin; faceforge eval ijb --checkpoint "
        "best.pt --root IJB_release/IJBC; faceforge eval --quality --checkpoint best.pt "
        "--pair-list pairs.csv. See faceforge eval TASK --help.",
        default_task=DEFAULT_TASK,
        flag_tasks=("quality",),
    )
    tasks = family.add_subparsers(dest="task", required=True, metavar="TASK")
    _register_verification(tasks)
    identification_commands.register(tasks)
    liveness_commands.register_eval_tasks(tasks)
    _register_pack_bin(subparsers)


def _register_verification(tasks: argparse._SubParsersAction) -> None:
    p = tasks.add_parser(
        DEFAULT_TASK,
        prog="faceforge eval",
        help="1:1 verification accuracy (insightface protocol); the default task",
        description="10-fold accuracy with flip TTA, XNorm, VR@FAR=1e-3, AUC, EER and "
        "TAR@FAR on insightface .bin files, LFW pairs.txt, CSV/TSV pair lists or the "
        "checkpoint's synthetic held-out pairs. Example: faceforge eval --checkpoint "
        "runs/quickstart/last.pt --bin lfw.bin cfp_fp.bin agedb_30.bin --roc roc.png",
    )
    add_source_options(p)
    p.add_argument("--bin", nargs="+", default=[], help="insightface .bin verification sets")
    _add_pair_files(p, "+")
    add_max_pixels_option(p, MAX_PHOTO_PIXELS, "pair-list and pairs.txt images")
    p.add_argument(
        "--synthetic", action="store_true", help="the checkpoint config's synthetic held-out pairs"
    )
    p.add_argument(
        "--resize",
        choices=RESIZE_CHOICES,
        metavar="MODE",
        help="fit images that are not the model's input size (with --align: photos without a "
        "face): %(choices)s (default: require it)",
    )
    p.add_argument(
        "--align",
        action="store_true",
        help="detect and align the face in each photo of --pairs / --pair-list (raw photos), "
        "with the model's template",
    )
    add_detector_options(p)
    p.add_argument(
        "--batch-size",
        type=ranged(int, 1),
        help="images per batch (default: the config's eval.batch_size)",
    )
    add_flip_option(p)
    p.add_argument(
        "--folds",
        type=ranged(int, 2),
        help="cross-validation folds (default: those of the pairs.txt header, e.g. '10 300', "
        "else 10)",
    )
    p.add_argument("--roc", type=plot_file, help="write ROC curves (log FAR axis) to this PNG")
    p.add_argument(
        "--report",
        type=output_folder,
        metavar="DIR",
        help="write DIR/report.html: ROC and DET curves, distance histograms, TAR at each FAR, "
        "accuracy per fold and the hardest false accepts / rejects as thumbnails",
    )
    add_runtime_options(p)
    add_json_option(p)
    add_progress_option(p, quiet=True)
    p.set_defaults(func=_eval, command="eval")


def _register_pack_bin(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pack-bin",
        help="write an insightface .bin verification set from a pairs file",
        description="Decode the images of an LFW pairs.txt (with --images) or a CSV/TSV pair "
        "list (with --root) and write them as an insightface .bin (pickle of encoded images "
        "and issame flags). Example: faceforge pack-bin lfw.bin --pairs pairs.txt "
        "--images lfw-112x112/",
    )
    add_pack_bin_arguments(p)
    p.set_defaults(func=pack_bin)


def add_pack_bin_arguments(parser: argparse.ArgumentParser) -> None:
    """What :func:`pack_bin` reads: the output, one pairs file, image size and encoding."""
    parser.add_argument("output", type=output_file(), help="the .bin file to write")
    _add_pair_files(parser, 1)
    parser.add_argument(
        "--size", type=image_side, default=112, help="image side in the .bin (default 112)"
    )
    parser.add_argument(
        "--resize",
        choices=RESIZE_CHOICES,
        metavar="MODE",
        help="fit images of another size: %(choices)s (default: require --size)",
    )
    parser.add_argument("--ext", choices=(".jpg", ".png"), default=".jpg", help="image encoding")
    add_progress_option(parser, quiet=True)
