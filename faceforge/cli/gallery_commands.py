"""Gallery subcommands: ``enroll`` (people into a gallery folder) and ``search`` (photos
against it); registered between ``verify`` and ``export`` by :mod:`.deploy_commands`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from faceforge.cli.arguments import LazyChoices, add_progress_option, progress_bar, ranged
from faceforge.cli.liveness_commands import (
    add_anti_spoof_options,
    add_decision_options,
    add_min_quality_option,
)
from faceforge.cli.model_commands import (
    add_model_options,
    build_pipeline,
    decision_threshold,
)
from faceforge.cli.outputs import add_json_option, output_folder, write_json
from faceforge.errors import Interrupted

if TYPE_CHECKING:
    from collections.abc import Iterator

    from faceforge.inference.answers import Enrollment
    from faceforge.interrupts import StopRequests

INDEX_CHOICES = LazyChoices("faceforge.inference.matching.index", "INDEX_TYPES")
MODE_CHOICES = LazyChoices("faceforge.inference.matching.gallery_json", "MODES")


def _enroll(args: argparse.Namespace) -> int:
    """Remove and add people under the gallery's lock, so concurrent runs lose nothing.
    Ctrl-C or SIGTERM stops once the person being embedded is added and saves everyone done:
    the same command with ``--skip-enrolled`` then enrolls the rest."""
    from faceforge.data.image_io import identity_folders
    from faceforge.inference.matching.gallery import edit_gallery
    from faceforge.interrupts import StopRequests

    folders = identity_folders(args.people_dir) if args.people_dir else []
    people = [(name, files) for name, files in folders if files]
    pipeline = build_pipeline(args)
    embedder = pipeline.embedder
    started: list[str] = []
    with StopRequests() as stop, contextlib.ExitStack() as editing:
        with stop.at_once(f"waiting for the lock of {args.gallery} (another enroll edits it)"):
            gallery = editing.enter_context(
                edit_gallery(
                    args.gallery,
                    embedder.embedding_size,
                    embedder.fingerprint,
                    model=embedder.description,
                    index_type=args.index,
                    mode=args.mode,
                )
            )
        for name in args.remove:
            gallery.remove(name)
        todo = [person for person in people if not (args.skip_enrolled and person[0] in gallery)]
        extended = sum(name in gallery for name, _ in todo)
        with progress_bar(args, sum(len(files) for _, files in todo), "enrolling") as bar:
            queue = _until_stopped(todo, stop, started)
            report = pipeline.enroll_people(gallery, queue, bar.update)
    _print_enrollment(args, report, len(gallery), len(people) - len(todo))
    if extended:
        print(
            f"{extended} of these people were enrolled before: the photos were added to theirs "
            "(a photo enrolled twice counts twice; --skip-enrolled leaves enrolled people out)",
            file=sys.stderr,
        )
    if stop.signum is not None and len(started) < len(todo):
        raise Interrupted(
            f"interrupted after {len(started)} of {len(todo)} people, who are saved in "
            f"{args.gallery}; the same command with --skip-enrolled enrolls the others",
            stop.signum,
        )
    return 1 if report.skipped else 0  # the others are saved; a script learns of the rest


def _until_stopped(
    people: list[tuple[str, list[Path]]], stop: StopRequests, started: list[str]
) -> Iterator[tuple[str, list[Path]]]:
    """``people`` one by one until a stop is requested; ``started`` lists those handed out."""
    for name, files in people:
        if stop.signum is not None:
            return
        started.append(name)
        yield name, files


def _print_enrollment(
    args: argparse.Namespace, report: Enrollment, people: int, already: int
) -> None:
    for error in report.skipped:
        print(f"skipped: {error}", file=sys.stderr)
    for name in report.left_out:
        print(f"{name}: no usable image, not enrolled", file=sys.stderr)
    for name in args.remove:
        print(f"removed {name}")
    kept = f", kept {already} people already enrolled" if args.skip_enrolled else ""
    print(
        f"gallery {args.gallery}: {people} people; added {report.added} images, skipped "
        f"{len(report.skipped)}{kept}"
    )


def _search(args: argparse.Namespace) -> int:
    """Each image's answer on stdout; one that cannot be searched is said on stderr and the
    others are still searched (status 1)."""
    from faceforge.inference.matching.gallery import Gallery

    gallery = Gallery.load(args.gallery)
    pipeline = build_pipeline(args)
    embedder = pipeline.embedder
    gallery.check_model(embedder.fingerprint, embedder.embedding_size, f"gallery {args.gallery}")
    threshold = decision_threshold(pipeline)
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
    answers = [
        {
            "image": str(image),
            "identity": None if result.error else result.identity,
            "matches": [{"name": m.name, "score": round(m.score, 6)} for m in result.matches],
            "error": result.error,
        }
        for image, result in zip(args.images, results, strict=True)
    ]
    write_json(args.json, {"threshold": dataclasses.asdict(threshold), "results": answers})
    if failed:
        print(f"{failed} of {len(results)} images could not be searched", file=sys.stderr)
    return 1 if failed else 0


def register_enroll(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "enroll",
        help="add people (one folder per person) to a face gallery",
        description="Embed every image of PEOPLE_DIR/<name>/ and add <name> to the gallery in "
        "--gallery (created if missing; must have been built with the same model). Ctrl-C "
        "stops after the current person and saves everyone enrolled; --skip-enrolled continues.",
    )
    p.add_argument("people_dir", nargs="?", help="folder of per-person image folders")
    p.add_argument("--gallery", type=output_folder, required=True, help="gallery folder")
    p.add_argument("--remove", action="append", default=[], help="remove this person first")
    p.add_argument(
        "--index",
        choices=INDEX_CHOICES,
        metavar="TYPE",
        help="FAISS index of a new gallery: %(choices)s (default flat; an existing gallery "
        "keeps its own)",
    )
    p.add_argument(
        "--mode",
        choices=MODE_CHOICES,
        metavar="MODE",
        help="a new gallery stores each person's mean embedding or every image: %(choices)s "
        "(default mean; an existing gallery keeps its own)",
    )
    p.add_argument(
        "--skip-enrolled",
        action="store_true",
        help="leave out people already in the gallery (to continue an interrupted enrollment; "
        "by default their new photos are added to them)",
    )
    add_progress_option(p)
    add_model_options(p)
    add_anti_spoof_options(p)
    add_min_quality_option(p)
    p.set_defaults(func=_enroll)


def register_search(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="identify faces against a gallery",
        description="Print the top matches of each image and the identity decided "
        "('unknown' when the best match is below the threshold).",
    )
    p.add_argument("images", nargs="+", help="query images")
    p.add_argument("--gallery", required=True, help="gallery folder made by enroll")
    p.add_argument("--top-k", type=ranged(int, 1), default=5, help="matches to print per image")
    add_json_option(p, "also write each image's answer and the threshold as JSON", (".json",))
    add_progress_option(p)
    add_decision_options(p)
    p.set_defaults(func=_search)
