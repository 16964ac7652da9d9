"""``faceforge eval`` (1:1 verification sets) and ``faceforge identify-bench`` (MegaFace-style).

Handlers only gather inputs and print: the work is done by :mod:`faceforge.evaluation`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.cli.arguments import image_side, ranged
from faceforge.cli.model_commands import add_max_pixels_option, add_source_options, model_source
from faceforge.cli.outputs import check_output as _check_output
from faceforge.cli.outputs import check_output_folder
from faceforge.core.precision import PRECISIONS
from faceforge.data.image_io import MAX_PHOTO_PIXELS
from faceforge.data.images import RESIZE_MODES
from faceforge.errors import DataError

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


def _roc_suffixes() -> tuple[str, ...]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return tuple(f".{name}" for name in sorted(FigureCanvasAgg.get_supported_filetypes()))


def _pair_lists(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """``(name, PairList)`` of every ``--pairs`` and ``--pair-list`` file, files checked."""
    from faceforge.evaluation.pairs import read_pair_list
    from faceforge.prepare.pairs_file import read_pairs_on

    if args.pairs and not args.images:
        raise DataError(
            "--pairs needs --images (the folder with <name>/<name>_NNNN.jpg, or the RecordIO, "
            "LMDB or list dataset faceforge pairs drew the pairs from)"
        )
    pair_lists = [(Path(p).stem, read_pairs_on(p, args.images)) for p in args.pairs]
    pair_lists += [(Path(p).stem, read_pair_list(p, args.root)) for p in args.pair_list]
    return pair_lists


def _pack_bin(args: argparse.Namespace) -> int:
    """Write one insightface ``.bin`` from a pairs file over an image folder."""
    _check_output(args.output, "output")
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
        progress=not args.quiet,
    )
    print(f"wrote {args.output}: {len(vset.issame)} pairs ({int(vset.issame.sum())} same)")
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


def _evaluate(args: argparse.Namespace, embedder: Any, name: str, data: Any, flip: bool) -> Any:
    """One set's result: a pair list streamed from its files, anything else in memory."""
    from faceforge.evaluation.pairs import PairList
    from faceforge.evaluation.run import evaluate_embedder, evaluate_pair_list

    options = {"flip": flip, "folds": args.folds, "progress": not args.quiet}
    if isinstance(data, PairList):
        return evaluate_pair_list(
            embedder, name, data, resize=args.resize, max_pixels=args.max_pixels, **options
        )
    return evaluate_embedder(embedder, data, **options)


def _eval(args: argparse.Namespace) -> int:
    from faceforge.core.embedder import load_embedder
    from faceforge.evaluation.report import format_result, plot_roc, write_json

    _check_output(args.json, "--json")
    if args.roc:
        _check_output(args.roc, "--roc", _roc_suffixes())
    check_output_folder(args.report, "--report")
    embedder = load_embedder(model_source(args), device=args.device, precision=args.precision)
    sets = _sets(args, embedder)
    settings = embedder.config.eval
    embedder.batch_size = args.batch_size or settings.batch_size
    flip = settings.flip if args.flip is None else args.flip
    results = {}
    for name, data in sets:
        result = _evaluate(args, embedder, name, data, flip)
        results[name] = result
        print(format_result(name, result) + _recorded(embedder.metrics, name))
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    meta = {
        "checkpoint": str(args.checkpoint),
        "backbone": embedder.model.arch or embedder.description,
        "flip": flip,
        "precision": args.precision,
        "folds": args.folds,
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


def _identify_bench(args: argparse.Namespace) -> int:
    import json

    from faceforge.evaluation.identification import NpyFolder, megaface, open_npy

    _check_output(args.json, "--json")
    if args.probe_embeddings:
        if not (args.probe_labels and args.distractor_embeddings):
            raise DataError("--probe-embeddings needs --probe-labels and --distractor-embeddings")
        probes = open_npy(args.probe_embeddings)
        labels = open_npy(args.probe_labels)
        path = Path(args.distractor_embeddings)
        distractors = NpyFolder(path) if path.is_dir() else open_npy(path)
        result = megaface(probes, labels, distractors)
    elif args.checkpoint:
        from faceforge.core.embedder import load_embedder
        from faceforge.evaluation.synthetic_megaface import run_synthetic_megaface

        embedder = load_embedder(
            args.checkpoint, device=args.device, precision=args.precision, flip=args.flip
        )
        result = run_synthetic_megaface(
            embedder,
            seed=embedder.config.data.synthetic.seed,
            num_identities=args.identities,
            images_per_identity=args.images_per_identity,
            num_distractors=args.distractors,
            progress=not args.quiet,
        )
    else:
        raise DataError("give --checkpoint (synthetic faces) or --probe-embeddings (.npy)")
    ranks = ", ".join(f"rank-{k} {100 * v:.2f}" for k, v in result.rank_accuracy.items())
    tars = ", ".join(f"TAR@FAR={k:g} {100 * v:.2f}" for k, v in result.tar_at_far.items())
    print(
        f"{result.num_probes} probes of {result.num_identities} identities, "
        f"{result.num_distractors} distractors, {result.num_searches} searches: {ranks}; {tars}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS.names(),
        default="auto",
        help="compute precision (auto: bf16 on CPUs with native bf16, fp16 on CUDA)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", help="write the results to this JSON file")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval`` and ``identify-bench`` to the ``faceforge`` parser."""
    p = subparsers.add_parser(
        "eval",
        help="1:1 verification accuracy (insightface protocol) of a model",
        description="10-fold accuracy with flip TTA, XNorm, VR@FAR=1e-3, AUC, EER and "
        "TAR@FAR on insightface .bin files, LFW pairs.txt, CSV/TSV pair lists or the "
        "checkpoint's synthetic held-out pairs. Example: faceforge eval --checkpoint "
        "runs/quickstart/last.pt --bin lfw.bin cfp_fp.bin agedb_30.bin --roc roc.png",
    )
    add_source_options(p)
    p.add_argument("--bin", nargs="+", default=[], help="insightface .bin verification sets")
    p.add_argument("--pairs", nargs="+", default=[], help="LFW-style pairs.txt file(s)")
    p.add_argument("--images", help=IMAGES_HELP)
    p.add_argument(
        "--pair-list", nargs="+", default=[], help="CSV/TSV pair lists: path_a,path_b,same"
    )
    p.add_argument("--root", help="folder relative --pair-list paths start from")
    add_max_pixels_option(p, MAX_PHOTO_PIXELS, "pair-list and pairs.txt images")
    p.add_argument(
        "--synthetic", action="store_true", help="the checkpoint config's synthetic held-out pairs"
    )
    p.add_argument(
        "--resize",
        choices=RESIZE_MODES.names(),
        help="fit images that are not the model's input size (default: require it)",
    )
    p.add_argument(
        "--batch-size",
        type=ranged(int, 1),
        help="images per batch (default: the config's eval.batch_size)",
    )
    p.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        help="flip test-time augmentation (default: the config's eval.flip, normally on)",
    )
    p.add_argument(
        "--folds", type=ranged(int, 2), default=10, help="cross-validation folds (default 10)"
    )
    p.add_argument("--roc", help="write ROC curves (log FAR axis) to this PNG")
    p.add_argument(
        "--report",
        metavar="DIR",
        help="write DIR/report.html: ROC and DET curves, distance histograms, TAR at each FAR, "
        "accuracy per fold and the hardest false accepts / rejects as thumbnails",
    )
    _add_runtime_options(p)
    p.set_defaults(func=_eval)

    p = subparsers.add_parser(
        "pack-bin",
        help="write an insightface .bin verification set from a pairs file",
        description="Decode the images of an LFW pairs.txt (with --images) or a CSV/TSV pair "
        "list (with --root) and write them as an insightface .bin (pickle of encoded images "
        "and issame flags). Example: faceforge pack-bin lfw.bin --pairs pairs.txt "
        "--images lfw-112x112/",
    )
    p.add_argument("output", help="the .bin file to write")
    p.add_argument("--pairs", nargs=1, default=[], help="LFW-style pairs.txt")
    p.add_argument("--images", help=IMAGES_HELP)
    p.add_argument("--pair-list", nargs=1, default=[], help="CSV/TSV pair list")
    p.add_argument("--root", help="folder relative --pair-list paths start from")
    p.add_argument(
        "--size", type=image_side, default=112, help="image side in the .bin (default 112)"
    )
    p.add_argument("--resize", choices=RESIZE_MODES.names(), help="fit images of another size")
    p.add_argument("--ext", choices=(".jpg", ".png"), default=".jpg", help="image encoding")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_pack_bin)

    p = subparsers.add_parser(
        "identify-bench",
        help="MegaFace-style 1:N identification with distractors",
        description="Rank-1/5/10 identification and TAR@FAR=1e-6 verification of probes "
        "hidden among distractors: synthetic faces embedded by --checkpoint, or precomputed "
        "embeddings (.npy). Example: faceforge identify-bench --checkpoint last.pt "
        "--distractors 100000",
    )
    p.add_argument("--checkpoint", help="faceforge checkpoint: embed synthetic faces")
    p.add_argument(
        "--distractors", type=ranged(int, 0), default=10_000, help="synthetic distractor count"
    )
    p.add_argument(
        "--identities", type=ranged(int, 1), default=80, help="synthetic probe identities"
    )
    p.add_argument(
        "--images-per-identity",
        type=ranged(int, 2),
        default=5,
        help="synthetic photos per probe identity (one probe, the others its gallery)",
    )
    p.add_argument("--flip", action="store_true", help="flip test-time augmentation")
    p.add_argument("--probe-embeddings", help="(N, D) .npy of probe embeddings")
    p.add_argument("--probe-labels", help="(N,) .npy of probe identity labels")
    p.add_argument(
        "--distractor-embeddings", help="(M, D) .npy, or a folder of .npy files, of distractors"
    )
    _add_runtime_options(p)
    p.set_defaults(func=_identify_bench)
