"""``faceforge liveness`` and the ``--anti-spoof`` options shared by verify, enroll and search."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from faceforge.cli.arguments import ranged
from faceforge.cli.model_commands import add_detector_options, add_max_pixels_option, detector_spec
from faceforge.data.image_io import MAX_PHOTO_PIXELS
from faceforge.errors import DataError

if TYPE_CHECKING:
    from faceforge.inference.liveness import LivenessChecker, LivenessResult

THRESHOLD_HELP = (
    "live when the averaged live probability is at least this (default 0.5, the published "
    "decision); higher refuses more attacks (lower APCER) and more genuine faces (higher BPCER)"
)


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
    from faceforge.data.image_io import encode_image, read_image
    from faceforge.inference.detection.base import select_face
    from faceforge.inference.detection.registry import build_detector

    args.anti_spoof = True
    checker = liveness_checker(args)
    detector = build_detector(detector_spec(args), device="cpu")
    spoofs = 0
    for photo in args.photos:
        image = read_image(photo, args.max_pixels)
        face = select_face(detector.detect(image), image.shape, "best")
        if face is None:
            raise DataError(f"{photo}: no face found")
        result = checker.check(image, face)
        spoofs += not result.live
        if args.save_crops:
            Path(args.save_crops).mkdir(parents=True, exist_ok=True)
            target = Path(args.save_crops) / f"{Path(photo).stem}_judged.png"
            target.write_bytes(encode_image(result.crop, ".png"))
        _print_result(args, photo, result)
    return 1 if spoofs else 0


def _print_result(args: argparse.Namespace, photo: str, result: LivenessResult) -> None:
    if args.json:
        print(json.dumps({"photo": photo, **result.as_dict()}))
        return
    decision = "live" if result.live else "SPOOF"
    print(f"{photo}: {decision} (liveness {result.score:.4f}, threshold {args.liveness_threshold})")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "liveness",
        help="is the face in each photo live, or a print / screen replay?",
        description="Detect the face, judge it with the anti-spoofing models and print the "
        "live probability and decision; exit status 1 when any photo is judged a spoof.",
    )
    p.add_argument("photos", nargs="+", help="photos to judge")
    p.add_argument("--json", action="store_true", help="one JSON object per photo")
    p.add_argument("--save-crops", metavar="DIR", help="save the crop each decision judged")
    add_anti_spoof_options(p, always=True)
    add_detector_options(p)
    add_max_pixels_option(p, MAX_PHOTO_PIXELS, "photos")
    p.set_defaults(func=_liveness)
