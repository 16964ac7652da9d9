"""Deploy subcommands: ``align``, ``verify``, ``export``, and ``enroll`` / ``search`` from
:mod:`.gallery_commands`, in that order in ``faceforge --help``.

Each handler parses nothing itself: argparse fills a namespace, the handler calls the library
(:mod:`faceforge.inference`) and prints a short, human-readable answer.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceforge.cli import gallery_commands
from faceforge.cli.arguments import (
    LazyChoices,
    add_deprecated_option,
    add_progress_option,
    image_side,
    progress_bar,
    ranged,
)
from faceforge.cli.liveness_commands import add_decision_options
from faceforge.cli.model_commands import (
    TEMPLATE_CHOICES,
    add_detector_options,
    add_face_policy_options,
    add_max_pixels_option,
    add_source_options,
    build_pipeline,
    decision_threshold,
    detector_spec,
    model_source,
)
from faceforge.cli.outputs import add_json_option, output_file, output_folder, write_json
from faceforge.data.limits import MAX_PHOTO_PIXELS
from faceforge.errors import DataError

if TYPE_CHECKING:
    from faceforge.inference.answers import Verification

ALIGN_SELECTIONS = LazyChoices("faceforge.prepare.align_folder", "MULTIPLE_FACE_POLICIES")
ALIGN_FALLBACKS = LazyChoices("faceforge.prepare.align_folder", "NO_FACE_POLICIES")


def _verify(args: argparse.Namespace) -> int:
    if args.pair_list is not None and args.images:
        raise DataError("give either two images or --pair-list FILE, not both")
    if args.pair_list is None and len(args.images) != 2:
        raise DataError("verify needs two images, or --pair-list FILE")
    return _verify_two(args) if args.pair_list is None else _verify_pairs_file(args)


def _verify_two(args: argparse.Namespace) -> int:
    for image in args.images:  # before the model loads: a typo is said at once
        if not Path(image).is_file():
            raise DataError(f"{image}: no such image file")
    pipeline = build_pipeline(args)
    decision_threshold(pipeline)
    result = pipeline.verify(args.images[0], args.images[1])
    decision = "same person" if result.same else "different people"
    print(f"similarity {result.similarity:.4f}: {decision}")
    print(f"threshold  {result.threshold.cosine:.4f} ({result.threshold.source})")
    answer = _pair_json(args.images[0], args.images[1], result)
    write_json(args.json, {**answer, "threshold": dataclasses.asdict(result.threshold)})
    return 0


def _pair_json(image_a: object, image_b: object, result: Verification) -> dict[str, Any]:
    """One decision as ``--json`` writes it (similarity and same are null for a failed pair)."""
    failed = result.error is not None
    return {
        "image_a": str(image_a),
        "image_b": str(image_b),
        "similarity": None if failed else round(result.similarity, 6),
        "same": None if failed else result.same,
        "error": result.error,
    }


def _verify_pairs_file(args: argparse.Namespace) -> int:
    """One CSV row per pair on stdout, a summary on stderr; status 1 when a pair failed."""
    from faceforge.evaluation.pairs import read_pairs

    pairs = [(pair.a, pair.b) for pair in read_pairs(args.pair_list, labelled=False)]
    pipeline = build_pipeline(args)
    threshold = decision_threshold(pipeline)
    images = {str(image) for pair in pairs for image in pair}
    with progress_bar(args, len(images), "embedding") as bar:
        results = pipeline.verify_pairs(pairs, report_errors=True, progress=bar.update)
    writer = csv.writer(sys.stdout)
    writer.writerow(["image_a", "image_b", "similarity", "same", "error"])
    for (a, b), result in zip(pairs, results, strict=True):
        if result.error:
            writer.writerow([a, b, "", "", result.error])
        else:
            writer.writerow([a, b, f"{result.similarity:.4f}", int(result.same), ""])
    counts = Counter("failed" if r.error else "same" if r.same else "different" for r in results)
    print(
        f"{len(pairs)} pairs: {counts['same']} same, {counts['different']} different, "
        f"{counts['failed']} failed; threshold {threshold.cosine:.4f} ({threshold.source})",
        file=sys.stderr,
    )
    answers = [_pair_json(a, b, result) for (a, b), result in zip(pairs, results, strict=True)]
    document = {"threshold": dataclasses.asdict(threshold), "pairs": answers}
    write_json(args.json, document, say_on_stderr=True)  # stdout holds the CSV
    return 1 if counts["failed"] else 0


def _export(args: argparse.Namespace) -> int:
    from faceforge.inference.export import (
        PARITY_TOLERANCE,
        export_checkpoint,
        load_calibration_faces,
        quantize_int8,
    )

    if args.int8 and not args.calibration:
        raise DataError("--int8 needs --calibration DIR (aligned face images)")
    if not args.int8 and (args.calibration or args.int8_output):
        raise DataError("--calibration and --int8-output go with --int8")
    if args.int8 and not Path(args.calibration).is_dir():  # before anything is written
        raise DataError(f"--calibration {args.calibration}: not a folder of aligned faces")
    report = export_checkpoint(model_source(args), args.onnx, opset=args.opset)
    ok = report.max_abs_diff <= PARITY_TOLERANCE
    print(f"wrote {report.path}")
    print(
        f"parity: max |onnx - torch| = {report.max_abs_diff:.2e} on {report.num_check_images} "
        f"synthetic faces (embedding values up to {report.max_abs_value:.3g}; limit "
        f"{PARITY_TOLERANCE:.0e}): {'OK' if ok else 'FAILED'}"
    )
    if args.int8:
        from faceforge.core.onnx_model import read_onnx

        size = read_onnx(report.path).preprocess.input_size
        faces = load_calibration_faces(args.calibration, size)
        int8_path = args.int8_output or report.path.with_suffix(".int8.onnx")
        quant = quantize_int8(report.path, int8_path, faces)
        print(f"wrote {quant.path} (calibrated on {len(faces)} images)")
        print(
            f"verification accuracy on {quant.num_pairs} synthetic pairs: fp32 "
            f"{quant.fp32_accuracy:.4f}, int8 {quant.int8_accuracy:.4f} "
            f"(change {quant.accuracy_change:+.4f})"
        )
    return 0 if ok else 1


def _align(args: argparse.Namespace) -> int:
    from faceforge.prepare.align_folder import AlignOptions, align_dataset

    options = AlignOptions(
        size=(args.size, args.size if args.width is None else args.width),
        template=args.template,
        multiple=args.selection,
        no_face=args.fallback,
        min_face_size=args.min_face_size,
        detector=detector_spec(args),
        device=args.device,
        max_pixels=args.max_pixels,
    )
    report = align_dataset(
        args.src,
        args.dst,
        options,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(report.summary())
    if report.skipped:
        print(f"skipped files are listed in {Path(args.dst) / 'align_report.tsv'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the deploy subcommands to the ``faceforge`` parser."""
    _register_align(subparsers)
    _register_verify(subparsers)
    gallery_commands.register_enroll(subparsers)
    gallery_commands.register_search(subparsers)
    _register_export(subparsers)


def _register_align(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "align",
        help="detect and align every image of a folder dataset",
        description="Detect faces (MTCNN or SCRFD, see --detector), align them to the ArcFace "
        "template and mirror SRC's folder structure into DST. Skipped files are listed in "
        "DST/align_report.tsv.",
    )
    p.add_argument("src", help="image folder (e.g. <identity>/<image>.jpg)")
    p.add_argument("dst", type=output_folder, help="output folder")
    p.add_argument("--size", type=image_side, default=112, help="output height (and width)")
    p.add_argument("--width", type=image_side, help="output width if not square (96 for 112x96)")
    p.add_argument(
        "--template",
        choices=TEMPLATE_CHOICES,
        metavar="NAME",
        default="arcface",
        help="where the landmarks go in the crop: %(choices)s (default arcface; facenet for "
        "facenet-pytorch's Inception-ResNet-v1 at 160x160)",
    )
    add_face_policy_options(p, "largest", ALIGN_SELECTIONS, ALIGN_FALLBACKS, "skip")
    add_deprecated_option(p, "--multiple", "--selection", "selection", choices=ALIGN_SELECTIONS)
    add_deprecated_option(p, "--no-face", "--fallback", "fallback", choices=ALIGN_FALLBACKS)
    p.add_argument("--min-face-size", type=ranged(float, 1), default=20.0, help="in pixels")
    p.add_argument("--workers", type=ranged(int, 1), default=1, help="worker processes")
    p.add_argument("--overwrite", action="store_true", help="redo images already aligned")
    add_progress_option(p)
    add_detector_options(p)
    add_max_pixels_option(p, MAX_PHOTO_PIXELS, "photos")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.set_defaults(func=_align)


def _register_verify(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify",
        help="are two photos the same person?",
        description="Print the cosine similarity, the decision and the threshold used.",
    )
    p.add_argument("images", nargs="*", help="two image files")
    p.add_argument(
        "--pair-list",
        metavar="FILE",
        help="CSV/TSV of path_a,path_b rows; prints one result per row",
    )
    add_deprecated_option(p, "--pairs", "--pair-list", "pair_list")
    add_json_option(p, "also write the decisions and the threshold as JSON", (".json",))
    add_progress_option(p)
    add_decision_options(p)
    p.set_defaults(func=_verify)


def _register_export(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX (optionally int8)",
        description="Write an ONNX model with a dynamic batch axis and the preprocessing in its "
        "metadata, then print the parity against PyTorch.",
    )
    add_source_options(p)
    p.add_argument("--onnx", type=output_file(".onnx"), required=True, help="output .onnx file")
    p.add_argument(
        "--opset", type=ranged(int, 7), default=17, help="ONNX opset (7 or later; default 17)"
    )
    p.add_argument("--int8", action="store_true", help="also write a static-int8 model")
    p.add_argument("--calibration", help="folder of aligned faces for int8 calibration")
    p.add_argument(
        "--int8-output",
        type=output_file(".onnx"),
        help="int8 model path (default: <onnx>.int8.onnx)",
    )
    p.set_defaults(func=_export)
