"""``faceforge pairs``, ``extract-faces`` and ``visualize``: the research log's tools.

Handlers only gather inputs and print: the work is done by :mod:`faceforge.prepare`,
:mod:`faceforge.train` and :mod:`faceforge.evaluation`. Every output path is checked before
the work starts; ``--no-progress`` hides the progress bars.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceforge.cli.arguments import (
    add_flip_option,
    add_progress_option,
    image_side,
    ranged,
)
from faceforge.cli.model_commands import (
    RESIZE_CHOICES,
    add_detector_options,
    add_runtime_options,
    add_source_options,
    detector_spec,
    model_source,
    runtime_kwargs,
)
from faceforge.cli.outputs import (
    add_json_option,
    check_output_folder,
    output_file,
    output_folder,
    write_json,
)
from faceforge.cli.train_commands import OVERRIDE_HELP, recipe_overrides

FORMATS = "a folder of <identity>/<image>, a 'path label' list, a .rec or an .lmdb dataset"


def _pairs(args: argparse.Namespace) -> int:
    from faceforge.prepare.pairs_file import PairsOptions, make_pairs

    options = PairsOptions(folds=args.folds, per_fold=args.per_fold, seed=args.seed)
    report = make_pairs(
        args.src, args.output, options, export=args.export, progress=not args.no_progress
    )
    print(report.summary())
    write_json(args.json, report.to_dict())
    return 0


def _extract_faces(args: argparse.Namespace) -> int:
    from faceforge.errors import DataError
    from faceforge.inference.detection.registry import build_detector
    from faceforge.prepare.extract_faces import ExtractOptions, extract_faces
    from faceforge.prepare.face_tracks import TrackOptions

    if len(args.paths) < 2:
        raise DataError("give one or more videos and then the output folder")
    *videos, out = args.paths
    missing = [video for video in videos if not Path(video).is_file()]
    if missing:
        raise DataError(f"video file(s) not found: {', '.join(missing)}")
    check_output_folder(out, "output")
    every = {"every_frames": args.every_frames, "every_seconds": args.every_seconds}
    if args.every_frames is None and args.every_seconds is None:
        every["every_seconds"] = 1.0
    tracks = TrackOptions(args.min_iou, args.min_similarity, args.max_gap, args.duplicate_below)
    options = ExtractOptions(
        **every,
        min_score=args.min_score,
        search_below=args.search_below,
        size=(args.size, args.width or args.size),
        tracks=tracks,
    )
    embed = None
    if args.checkpoint:
        from faceforge.core.embedder import load_embedder

        embedder = load_embedder(args.checkpoint, device=args.device)
        if embedder.input_size != options.size:
            raise DataError(f"--checkpoint takes {embedder.input_size} crops: match --size/--width")
        embed = embedder.embed
    detector = build_detector(
        detector_spec(args), device=args.device, min_face_size=args.min_face_size
    )
    reports = extract_faces(
        videos,
        out,
        detector,
        options,
        embed=embed,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    for report in reports:
        if report.frames:
            print(report.summary())
    print(f"wrote {Path(out) / 'manifest.csv'}")
    write_json(args.json, {"videos": [report.to_dict() for report in reports]})
    failed = [report for report in reports if report.error]
    for report in failed:
        print(f"faceforge extract-faces: error: {report.error}", file=sys.stderr)
    return 1 if failed else 0  # some videos could not be read: as a partly failed enroll


def _visualize_embeddings(args: argparse.Namespace) -> int:
    from faceforge.core.embedder import load_embedder
    from faceforge.evaluation.embedding_plots import plot_embeddings
    from faceforge.prepare.embedding_map import embed_identities

    embedder = load_embedder(model_source(args), **runtime_kwargs(args))
    from faceforge.core.embedder import resolve_flip

    resolve_flip(embedder, args.flip)
    sample = embed_identities(
        args.src,
        embedder,
        identities=args.identities,
        per_identity=args.per_identity,
        resize=args.resize,
        seed=args.seed,
    )
    plot_embeddings(args.output, sample.embeddings, sample.labels, sample.names, args.method)
    print(f"wrote {args.output}: {len(sample.labels)} faces of {len(sample.names)} identities")
    return 0


def _visualize_training(args: argparse.Namespace) -> int:
    import tempfile

    from faceforge.evaluation.embedding_plots import write_feature_animation
    from faceforge.train.feature_movie import record_feature_movie
    from faceforge.train.recipe import load_recipe

    with tempfile.TemporaryDirectory(prefix="faceforge-features-") as scratch:
        overrides = ["model.embedding_size=2", *recipe_overrides(args)]
        overrides.append(f"train.output_dir={scratch}")
        cfg = load_recipe(args.config, overrides)
        movie = record_feature_movie(
            cfg, every=args.every, identities=args.identities, per_identity=args.per_identity
        )
    write_feature_animation(args.output, movie.snapshots, movie.labels, movie.names, args.fps)
    print(f"wrote {args.output}: {len(movie.snapshots)} frames up to step {movie.snapshots[-1][0]}")
    return 0


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
    p.add_argument("output", type=output_file(), help="the pairs file to write (e.g. pairs.txt)")
    p.add_argument(
        "--folds", type=ranged(int, 2, 100), default=10, help="identity-disjoint folds (default 10)"
    )
    p.add_argument(
        "--per-fold",
        type=ranged(int, 1),
        default=300,
        help="same pairs per fold, and as many different pairs (default 300, as LFW)",
    )
    p.add_argument("--seed", type=ranged(int, 0), default=0, help="random seed (default 0)")
    p.add_argument(
        "--export",
        type=output_folder,
        metavar="DIR",
        help="also copy the paired images to DIR/<name>/<name>_NNNN.<ext> (an LFW folder; "
        "needed when the source's file names are not of that form)",
    )
    add_json_option(p, "write the folds' summary to this JSON file", (".json",))
    add_progress_option(p)
    p.set_defaults(func=_pairs)

    _register_extract_faces(subparsers)
    _register_visualize(subparsers)


def _register_extract_faces(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "extract-faces",
        help="aligned face crops from videos, grouped by person",
        description="Sample frames (container rotation applied; frames without a face are "
        "tried at 90/180/270 degrees and the turn that finds one is kept), detect, align, "
        "group the faces of each person across frames (box overlap, plus embedding "
        "similarity with --checkpoint), drop near-duplicates. Writes OUT/<video>/person_NNN/"
        "<video>_fFRAME_FACE.jpg and OUT/manifest.csv. Example: faceforge extract-faces "
        "clip1.mp4 clip2.mov faces/ --every-seconds 0.5",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="VIDEO... OUT (the output folder)")
    every = p.add_mutually_exclusive_group()
    every.add_argument(
        "--every-frames", type=ranged(int, 1), metavar="N", help="take every N-th frame"
    )
    every.add_argument(
        "--every-seconds",
        type=ranged(float, above=0),
        metavar="S",
        help="take a frame every S seconds (default 1)",
    )
    add_detector_options(p)
    p.add_argument(
        "--min-face-size",
        type=ranged(float, 1),
        default=40.0,
        help="smallest face in pixels (default 40)",
    )
    p.add_argument(
        "--min-score", type=ranged(float, 0, 1), default=0.9, help="detection score a face needs"
    )
    p.add_argument(
        "--search-below",
        type=ranged(float, 0, 1),
        default=0.99,
        help="try the other quarter turns when the best face scores below this (default 0.99)",
    )
    p.add_argument("--size", type=image_side, default=112, help="aligned crop height (default 112)")
    p.add_argument(
        "--width", type=image_side, help="aligned crop width (default: --size; 96 for 112x96)"
    )
    p.add_argument(
        "--checkpoint",
        help="model (checkpoint or .onnx) whose embeddings must agree to join a person's track",
    )
    p.add_argument(
        "--min-iou", type=ranged(float, 0, 1), default=0.3, help="box overlap to continue a track"
    )
    p.add_argument(
        "--min-similarity",
        type=ranged(float, -1, 1),
        default=0.4,
        help="cosine similarity (with --checkpoint)",
    )
    p.add_argument(
        "--max-gap",
        type=ranged(int, 0),
        default=2,
        help="sampled frames a person may be missed (default 2)",
    )
    p.add_argument(
        "--duplicate-below",
        type=ranged(float, 0, 255),
        default=12.0,
        help="drop a crop whose grey thumbnail differs from the person's last kept crop by "
        "less than this many grey levels on average (default 12)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--overwrite", action="store_true", help="replace videos already extracted")
    add_json_option(p, "write every video's summary to this JSON file", (".json",))
    add_progress_option(p)
    p.set_defaults(func=_extract_faces)


def _add_sample_options(parser: argparse.ArgumentParser, identities: int, per: int) -> None:
    parser.add_argument(
        "--identities",
        type=ranged(int, 1),
        default=identities,
        help=f"identities shown (default {identities})",
    )
    parser.add_argument(
        "--per-identity",
        type=ranged(int, 1),
        default=per,
        help=f"faces of each identity (default {per})",
    )


def _register_visualize(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "visualize",
        help="plot embeddings in 2-D, or animate 2-D features over a training run",
        description="embeddings: a 2-D map (PCA, or t-SNE with scikit-learn) of the faces of "
        "a few identities of any dataset, embedded by any model. training: train a recipe "
        "with a 2-D embedding and write a GIF of its features every --every steps (the "
        "softmax versus center loss figures). Examples: faceforge visualize embeddings "
        "lfw-112x112/ --checkpoint last.pt -o map.png; faceforge visualize training "
        "--config quickstart head.type=softmax loss.center_weight=0.01 -o center.gif",
    )
    kinds = p.add_subparsers(dest="kind", required=True)
    e = kinds.add_parser("embeddings", help="a 2-D map of the embeddings of N identities")
    e.add_argument("src", help=f"the dataset (aligned crops): {FORMATS}")
    add_source_options(e)
    e.add_argument("-o", "--output", type=output_file(".png"), required=True, help="the PNG")
    e.add_argument("--method", choices=("pca", "tsne"), default="pca", help="projection")
    _add_sample_options(e, 10, 20)
    e.add_argument(
        "--resize",
        choices=RESIZE_CHOICES,
        metavar="MODE",
        help="fit crops of another size to the model: %(choices)s",
    )
    e.add_argument(
        "--seed", type=ranged(int, 0), default=0, help="which identities and faces (default 0)"
    )
    add_flip_option(e)
    add_runtime_options(e)
    e.set_defaults(func=_visualize_embeddings)

    t = kinds.add_parser("training", help="a GIF of 2-D features over a training run")
    t.add_argument("--config", help="YAML file or shipped recipe name (e.g. quickstart)")
    t.add_argument("-o", "--output", type=output_file(".gif"), required=True, help="the GIF")
    t.add_argument(
        "--every", type=ranged(int, 1), default=20, help="steps between frames (default 20)"
    )
    _add_sample_options(t, 8, 30)
    t.add_argument(
        "--fps", type=ranged(float, above=0), default=4.0, help="frames per second (default 4)"
    )
    add_progress_option(t)
    t.add_argument(
        "overrides", nargs="*", help=f"{OVERRIDE_HELP} (model.embedding_size=2 is set first)"
    )
    t.set_defaults(func=_visualize_training)
