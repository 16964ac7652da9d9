"""Deploy subcommands: ``align``, ``verify``, ``enroll``, ``search``, ``export``.

Each handler parses nothing itself: argparse fills a namespace, the handler calls the library
(:mod:`faceforge.inference`) and prints a short, human-readable answer.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from faceforge.cli.arguments import (
    LazyChoices,
    add_deprecated_option,
    add_progress_option,
    image_side,
    progress_bar,
    ranged,
)
from faceforge.cli.liveness_commands import add_anti_spoof_options, add_min_quality_option
from faceforge.cli.model_commands import (
    add_detector_options,
    add_face_policy_options,
    add_max_pixels_option,
    add_model_options,
    add_source_options,
    build_pipeline,
    detector_spec,
    model_source,
)
from faceforge.cli.outputs import output_file, output_folder
from faceforge.data.limits import MAX_PHOTO_PIXELS
from faceforge.errors import DataError

if TYPE_CHECKING:
    from faceforge.inference.matching.threshold import Threshold
    from faceforge.inference.pipeline import FacePipeline

INDEX_CHOICES = LazyChoices("faceforge.inference.matching.index", "INDEX_TYPES")
MODE_CHOICES = LazyChoices("faceforge.inference.matching.storage", "MODES")
ALIGN_SELECTIONS = LazyChoices("faceforge.prepare.align_folder", "MULTIPLE_FACE_POLICIES")
ALIGN_FALLBACKS = LazyChoices("faceforge.prepare.align_folder", "NO_FACE_POLICIES")


def _decision_threshold(pipeline: FacePipeline) -> Threshold:
    """The pipeline's threshold, with a one-line warning when it cannot be trusted."""
    threshold = pipeline.threshold
    if threshold.warning:
        print(f"warning: {threshold.warning}", file=sys.stderr)
    return threshold


def _add_threshold_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threshold",
        type=ranged(float, -1, 1),
        help="cosine-similarity threshold (default: the model's stored best 10-fold threshold)",
    )
    parser.add_argument(
        "--eval-set", help="evaluation set whose stored threshold to use (e.g. lfw, synthetic)"
    )


def _verify(args: argparse.Namespace) -> int:
    if (args.pair_list is None) == (len(args.images) != 2):
        if args.pair_list is None:
            raise DataError("verify needs two images, or --pair-list FILE")
        raise DataError("give either two images or --pair-list FILE, not both")
    return _verify_two(args) if args.pair_list is None else _verify_pairs_file(args)


def _verify_two(args: argparse.Namespace) -> int:
    for image in args.images:  # before the model loads: a typo is said at once
        if not Path(image).is_file():
            raise DataError(f"{image}: no such image file")
    pipeline = build_pipeline(args)
    _decision_threshold(pipeline)
    result = pipeline.verify(args.images[0], args.images[1])
    decision = "same person" if result.same else "different people"
    print(f"similarity {result.similarity:.4f}: {decision}")
    print(f"threshold  {result.threshold.cosine:.4f} ({result.threshold.source})")
    return 0


def _verify_pairs_file(args: argparse.Namespace) -> int:
    """One CSV row per pair on stdout, a summary on stderr; status 1 when a pair failed."""
    from faceforge.evaluation.pairs import read_pairs

    pairs = [(pair.a, pair.b) for pair in read_pairs(args.pair_list, labelled=False)]
    pipeline = build_pipeline(args)
    threshold = _decision_threshold(pipeline)
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
    return 1 if counts["failed"] else 0


def _enroll(args: argparse.Namespace) -> int:
    """Remove and add people under the gallery's lock, so concurrent runs lose nothing."""
    from faceforge.data.image_io import identity_folders
    from faceforge.inference.matching.gallery import edit_gallery

    folders = identity_folders(args.people_dir) if args.people_dir else []
    people = [(name, files) for name, files in folders if files]
    pipeline = build_pipeline(args)
    embedder = pipeline.embedder
    with edit_gallery(
        args.gallery,
        embedder.embedding_size,
        embedder.fingerprint,
        model=embedder.description,
        index_type=args.index,
        mode=args.mode,
    ) as gallery:
        for name in args.remove:
            gallery.remove(name)
        with progress_bar(args, sum(len(files) for _, files in people), "enrolling") as bar:
            report = pipeline.enroll_people(gallery, people, bar.update)
    for error in report.skipped:
        print(f"skipped: {error}", file=sys.stderr)
    for name in report.left_out:
        print(f"{name}: no usable image, not enrolled", file=sys.stderr)
    for name in args.remove:
        print(f"removed {name}")
    added, skipped = report.added, len(report.skipped)
    print(f"gallery {args.gallery}: {len(gallery)} people; added {added} images, skipped {skipped}")
    return 0


def _search(args: argparse.Namespace) -> int:
    """Each image's answer on stdout; one that cannot be searched is said on stderr and the
    others are still searched (status 1)."""
    from faceforge.inference.matching.gallery import Gallery

    gallery = Gallery.load(args.gallery)
    pipeline = build_pipeline(args)
    embedder = pipeline.embedder
    gallery.check_model(embedder.fingerprint, embedder.embedding_size, f"gallery {args.gallery}")
    threshold = _decision_threshold(pipeline)
    with progress_bar(args, len(args.images), "searching") as bar:
        results = pipeline.search_images(
            args.images, gallery, args.top_k, report_errors=True, progress=bar.update
        )
    for image, result in zip(args.images, results, strict=True):
        if result.error:
            print(f"faceforge search: {result.error}", file=sys.stderr)
            continue
        print(f"{image}: {result.identity}")
        for rank, match in enumerate(result.matches, 1):
            print(f"  {rank}. {match.name}  {match.score:.4f}")
    failed = sum(result.error is not None for result in results)
    print(f"threshold {threshold.cosine:.4f} ({threshold.source})")
    if failed:
        print(f"{failed} of {len(results)} images could not be searched", file=sys.stderr)
    return 1 if failed else 0


def _export(args: argparse.Namespace) -> int:
    from faceforge.inference.export import (
        PARITY_TOLERANCE,
        export_checkpoint,
        load_calibration_faces,
        quantize_int8,
    )

    if args.int8 and not args.calibration:
        raise DataError("--int8 needs --calibration DIR (aligned face images)")
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
    _register_enroll(subparsers)
    _register_search(subparsers)
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
    p.add_argument("--template", default="arcface")
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
    add_progress_option(p)
    add_model_options(p)
    _add_threshold_options(p)
    add_anti_spoof_options(p)
    p.set_defaults(func=_verify)


def _register_enroll(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "enroll",
        help="add people (one folder per person) to a face gallery",
        description="Embed every image of PEOPLE_DIR/<name>/ and add <name> to the gallery in "
        "--gallery (created if missing; must have been built with the same model).",
    )
    p.add_argument("people_dir", nargs="?", help="folder of per-person image folders")
    p.add_argument("--gallery", type=output_folder, required=True, help="gallery folder")
    p.add_argument("--remove", action="append", default=[], help="remove this person first")
    p.add_argument(
        "--index",
        choices=INDEX_CHOICES,
        metavar="TYPE",
        default="flat",
        help="FAISS index of the gallery: %(choices)s (default flat)",
    )
    p.add_argument(
        "--mode",
        choices=MODE_CHOICES,
        metavar="MODE",
        default="mean",
        help="store each person's mean embedding or every image: %(choices)s (default mean)",
    )
    add_progress_option(p)
    add_model_options(p)
    add_anti_spoof_options(p)
    add_min_quality_option(p)
    p.set_defaults(func=_enroll)


def _register_search(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="identify faces against a gallery",
        description="Print the top matches of each image and the identity decided "
        "('unknown' when the best match is below the threshold).",
    )
    p.add_argument("images", nargs="+", help="query images")
    p.add_argument("--gallery", required=True, help="gallery folder made by enroll")
    p.add_argument("--top-k", type=ranged(int, 1), default=5, help="matches to print per image")
    add_progress_option(p)
    add_model_options(p)
    _add_threshold_options(p)
    add_anti_spoof_options(p)
    p.set_defaults(func=_search)


def _register_export(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX (optionally int8)",
        description="Write an ONNX model with a dynamic batch axis and the preprocessing in its "
        "metadata, then print the parity against PyTorch.",
    )
    add_source_options(p)
    p.add_argument("--onnx", type=output_file(".onnx"), required=True, help="output .onnx file")
    p.add_argument("--opset", type=ranged(int, 1), default=17)
    p.add_argument("--int8", action="store_true", help="also write a static-int8 model")
    p.add_argument("--calibration", help="folder of aligned faces for int8 calibration")
    p.add_argument(
        "--int8-output",
        type=output_file(".onnx"),
        help="int8 model path (default: <onnx>.int8.onnx)",
    )
    p.set_defaults(func=_export)
