"""``faceforge liveness`` (judge photos; ``liveness train`` in :mod:`.antispoof_commands`),
``faceforge eval quality`` and the ``--anti-spoof`` options shared by verify, enroll and
search."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from faceforge.cli import antispoof_commands
from faceforge.cli.arguments import add_progress_option, progress_bar, ranged, warn_deprecated
from faceforge.cli.model_commands import (
    add_detector_options,
    add_max_pixels_option,
    add_model_options,
    add_threshold_options,
    detector_spec,
)
from faceforge.cli.outputs import (
    add_json_option,
    output_file,
    output_folder,
    plot_file,
    write_json,
)
from faceforge.data.limits import MAX_PHOTO_PIXELS
from faceforge.errors import DataError

if TYPE_CHECKING:
    from faceforge.inference.detection.base import Detector
    from faceforge.inference.liveness import LivenessChecker, LivenessResult

#: what a bare ``liveness --json`` (the old flag) stores: JSON lines on stdout
JSON_LINES = True

THRESHOLD_HELP = (
    "live when the averaged live probability is at least this (default 0.5, the published "
    "decision); higher refuses more attacks (lower APCER) and more genuine faces (higher BPCER)"
)


def add_decision_options(parser: argparse.ArgumentParser) -> None:
    """What ``verify`` and ``search`` decide with: the model and how photos become
    embeddings, the threshold, and whether spoofs are refused."""
    add_model_options(parser)
    add_threshold_options(parser)
    add_anti_spoof_options(parser)


def add_anti_spoof_options(parser: argparse.ArgumentParser, always: bool = False) -> None:
    """``--anti-spoof`` (unless ``always``), ``--liveness-model`` and ``--liveness-threshold``."""
    if not always:
        parser.add_argument(
            "--anti-spoof",
            action="store_true",
            help="refuse faces judged a print or screen replay (silent anti-spoofing)",
        )
    parser.add_argument(
        "--liveness-model",
        action="append",
        metavar="PTH",
        help="MiniFASNet file named <scale>_<H>x<W>_MiniFASNet<kind>.pth (repeat to average; "
        "default: the shipped Minivision V2 and V1SE models)",
    )
    parser.add_argument(
        "--liveness-threshold", type=ranged(float, 0, 1), default=0.5, help=THRESHOLD_HELP
    )


def add_min_quality_option(parser: argparse.ArgumentParser) -> None:
    """``--min-quality``: refuse faces whose quality total (size, pose, sharpness, exposure)
    is lower."""
    parser.add_argument(
        "--min-quality",
        type=ranged(float, 0, 1),
        metavar="Q",
        help="refuse faces whose quality score in [0, 1] is below Q (e.g. 0.4)",
    )


def liveness_checker(args: argparse.Namespace) -> LivenessChecker | None:
    """The checker the options ask for, ``None`` when anti-spoofing is off."""
    if not getattr(args, "anti_spoof", False):
        return None
    from faceforge.inference.liveness import SHIPPED_MODELS, LivenessChecker

    return LivenessChecker.load(args.liveness_model or SHIPPED_MODELS, args.liveness_threshold)


def _liveness(args: argparse.Namespace) -> int:
    """Each photo's decision on stdout; a photo that cannot be judged (unreadable, no face)
    is said on stderr and the others are still judged. Status 1 when any photo is a spoof
    or could not be judged."""
    from faceforge.inference.detection.registry import build_detector

    if args.json is JSON_LINES:
        warn_deprecated("liveness --json", "liveness --json FILE")
    args.anti_spoof = True
    checker = liveness_checker(args)
    detector = build_detector(detector_spec(args), device="cpu")
    records = []
    with progress_bar(args, len(args.photos), "judging") as bar:
        for photo in args.photos:
            try:
                result = _judged(args, checker, detector, photo)
            except DataError as exc:
                print(f"faceforge liveness: {exc}", file=sys.stderr)
                records.append({"photo": photo, "liveness": None, "live": None, "error": str(exc)})
            else:
                _print_result(args, photo, result)
                records.append({"photo": photo, **result.as_dict(), "error": None})
            bar.update()
    if args.json is not JSON_LINES:
        write_json(args.json, {"threshold": args.liveness_threshold, "photos": records})
    return 0 if all(record["live"] for record in records) else 1


def _judged(
    args: argparse.Namespace, checker: LivenessChecker, detector: Detector, photo: str
) -> LivenessResult:
    """The decision on the best face of ``photo`` (its judged crop saved with
    ``--save-crops``)."""
    from faceforge.data.image_io import encode_image, read_image
    from faceforge.files import atomic_write_bytes
    from faceforge.inference.detection.base import select_face

    image = read_image(photo, args.max_pixels)
    face = select_face(detector.detect(image), image.shape, "best")
    if face is None:
        raise DataError(f"{photo}: no face found")
    result = checker.check(image, face)
    if args.save_crops:
        Path(args.save_crops).mkdir(parents=True, exist_ok=True)
        target = Path(args.save_crops) / f"{Path(photo).stem}_judged.png"
        atomic_write_bytes(target, encode_image(result.crop, ".png"))
    return result


def _print_result(args: argparse.Namespace, photo: str, result: LivenessResult) -> None:
    if args.json is JSON_LINES:
        print(json.dumps({"photo": photo, **result.as_dict()}))
        return
    decision = "live" if result.live else "SPOOF"
    print(f"{photo}: {decision} (liveness {result.score:.4f}, threshold {args.liveness_threshold})")


def _quality(args: argparse.Namespace) -> int:
    """The error-versus-reject curve of the face quality score on labelled photo pairs."""
    import numpy as np

    from faceforge.cli.model_commands import build_pipeline
    from faceforge.evaluation.erc import REJECT_FRACTIONS, error_versus_reject, plot_erc
    from faceforge.evaluation.pairs import read_pair_list
    from faceforge.inference.quality_scores import embed_with_quality

    pipeline = build_pipeline(args)
    threshold = pipeline.threshold
    pairs = read_pair_list(args.pair_list, args.root)  # every file checked first
    images = sorted({str(path) for path in pairs.paths})
    with progress_bar(args, len(images), "embedding, scoring") as bar:
        scored = embed_with_quality(pipeline, images, bar.update)
    notes = [f"{error}; its pairs left out" for error in filter(None, scored.errors)]
    for message in filter(None, [*notes, threshold.warning]):
        print(f"warning: {message}", file=sys.stderr)
    row = {image: i for i, image in enumerate(images)}
    rows = np.array([row[str(path)] for path in pairs.paths], int).reshape(-1, 2)
    usable = ~np.array([error is not None for error in scored.errors])[rows].any(axis=1)
    a, b = rows[usable].T
    same = pairs.issame[usable]
    curve = error_versus_reject(
        np.einsum("ij,ij->i", scored.embeddings[a], scored.embeddings[b]),
        same,
        np.minimum(scored.quality[a], scored.quality[b]),
        threshold.cosine,
    )
    print(
        f"{len(a)} of {len(pairs)} pairs usable ({same.sum()} same); FNMR at cosine > "
        f"{threshold.cosine:.4f} ({threshold.source}) after rejecting the pairs whose lower "
        "face quality is lowest:\nrejected  FNMR"
    )
    for fraction, error in zip(REJECT_FRACTIONS, curve, strict=True):
        print(f"{fraction:8.0%}  {error:.4f}")
    print(f"wrote {plot_erc({'face quality': curve}, args.plot)}")
    fractions = [float(f) for f in REJECT_FRACTIONS]
    write_json(args.json, {"reject_fraction": fractions, "fnmr": curve.tolist()})
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``liveness`` (judge photos, the default task, or ``train``) to ``faceforge``."""
    family = subparsers.add_parser(
        "liveness",
        help="is the face in each photo live, or a print / screen replay? (or train a model)",
        description="faceforge liveness PHOTO... judges photos; faceforge liveness train "
        "trains an anti-spoofing model (faceforge eval liveness measures one).",
        default_task="check",
    )
    tasks = family.add_subparsers(dest="task", required=True, metavar="TASK")
    p = tasks.add_parser(
        "check",
        prog="faceforge liveness",
        help="judge photos (the default task)",
        description="Detect the face, judge it with the anti-spoofing models and print the "
        "live probability and decision; exit status 1 when any photo is judged a spoof or "
        "cannot be judged (no face, unreadable: said on stderr, the others still judged).",
    )
    p.add_argument("photos", nargs="+", help="photos to judge")
    p.add_argument(
        "--json",
        nargs="?",
        const=JSON_LINES,
        type=output_file(".json"),
        metavar="FILE",
        help="also write every photo's decision, score or error as JSON (a bare --json, "
        "deprecated, prints one JSON line per photo instead)",
    )
    p.add_argument(
        "--save-crops",
        type=output_folder,
        metavar="DIR",
        help="save the crop each decision judged",
    )
    add_anti_spoof_options(p, always=True)
    add_detector_options(p)
    add_max_pixels_option(p, MAX_PHOTO_PIXELS, "photos")
    add_progress_option(p)
    p.set_defaults(func=_liveness, command="liveness")
    antispoof_commands.register_train(tasks)


def register_eval_tasks(tasks: argparse._SubParsersAction) -> None:
    """Add ``quality`` (also spelled ``eval --quality``) and ``liveness`` to ``faceforge eval``."""
    p = tasks.add_parser(
        "quality",
        help="error-versus-reject curve of the face quality score (also: eval --quality)",
        description="Verify every pair of --pair-list (raw photos), reject the pairs whose lower "
        "face quality is lowest in growing fractions, print the FNMR left and plot the curve. "
        "Example: faceforge eval --quality --checkpoint best.pt --pair-list pairs.csv",
    )
    p.add_argument("--pair-list", required=True, help="CSV/TSV of path_a,path_b,same rows")
    p.add_argument("--root", help="folder relative --pair-list paths start from")
    p.add_argument(
        "--plot", type=plot_file, default="erc.png", help="PNG of the curve (default erc.png)"
    )
    add_json_option(p)
    p.add_argument("--threshold", type=ranged(float, -1, 1), help="cosine decision threshold")
    add_model_options(p)
    add_progress_option(p)
    p.set_defaults(func=_quality, command="eval quality")
    antispoof_commands.register_eval(tasks)
