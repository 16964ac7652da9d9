"""The identification tasks of ``faceforge eval``: ``ijb`` (IJB-B/C templates), ``identify``
(1:N over photo folders or an enroll gallery) and ``megaface`` (probes among distractors).

Handlers only gather inputs and print: the work is done by :mod:`faceforge.evaluation`.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceforge.cli.arguments import (
    add_progress_option,
    progress_bar,
    ranged,
)
from faceforge.cli.model_commands import (
    add_max_pixels_option,
    add_model_options,
    add_runtime_options,
    add_source_options,
    build_pipeline,
    model_source,
    runtime_kwargs,
)
from faceforge.cli.outputs import add_json_option, output_folder, plot_file, write_json
from faceforge.data.limits import MAX_PHOTO_PIXELS
from faceforge.errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from faceforge.evaluation.identification import MegaFaceResult
    from faceforge.inference.pipeline import FacePipeline

#: ``faceforge eval TASK`` words this module adds
TASKS = ("ijb", "identify", "megaface")


def _embed_files(
    pipeline: FacePipeline, files: list[Path], desc: str, args: argparse.Namespace
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the images ``files`` name and which of them were kept: images where no
    face is usable are reported on stderr and left out."""
    import numpy as np

    with progress_bar(args, len(files), desc) as bar:
        embeddings, errors = pipeline.try_embed(files, bar.update)
    for error in errors:
        if error:  # the message starts with the image's path
            print(f"warning: {error}; left out", file=sys.stderr)
    kept = np.array([error is None for error in errors], bool)
    return embeddings[kept], kept


def _labelled(
    pipeline: FacePipeline, folder: str, args: argparse.Namespace
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and identity names of a ``folder/<identity>/<image>`` tree (usable faces)."""
    import numpy as np

    from faceforge.data.image_io import identity_folders

    files = [(name, path) for name, paths in identity_folders(folder) for path in paths]
    if not files:
        raise DataError(f"{folder}: no images in <identity>/ sub-folders")
    desc = f"embedding {Path(folder).name}"
    embeddings, kept = _embed_files(pipeline, [path for _, path in files], desc, args)
    return embeddings, np.array([name for name, _ in files])[kept]


def _gallery(
    pipeline: FacePipeline, folder: str, args: argparse.Namespace
) -> tuple[np.ndarray, np.ndarray]:
    """A gallery saved by ``enroll`` (its stored embeddings), else an identity-folder tree."""
    import numpy as np

    from faceforge.inference.matching.gallery import Gallery
    from faceforge.inference.matching.gallery_json import METADATA_FILE
    from faceforge.inference.matching.storage import read_gallery

    if not (Path(folder) / METADATA_FILE).is_file():
        return _labelled(pipeline, folder, args)
    data = read_gallery(folder)
    embedder = pipeline.embedder
    Gallery(data.embedding_size, data.fingerprint, model=data.model).check_model(
        embedder.fingerprint, embedder.embedding_size, folder
    )
    names = [name for name, rows in data.embeddings.items() for _ in range(len(rows))]
    return np.concatenate(list(data.embeddings.values())), np.array(names)


def plot_cmc(path: str | Path, cmc: dict[int, float]) -> None:
    """The cumulative match characteristic (identification rate by rank) as a PNG."""
    from faceforge.evaluation.report_figures import new_figure, save_figure

    figure = new_figure()
    axes = figure.add_subplot()
    axes.plot(list(cmc), [100 * v for v in cmc.values()], marker="o")
    axes.set_xlabel("rank")
    axes.set_ylabel("identification rate (%)")
    axes.set_title("CMC")
    axes.grid(True, alpha=0.3)
    save_figure(figure, path)


def _identify(args: argparse.Namespace) -> int:
    from faceforge.evaluation.identification import FPIR_TARGETS, RANKS, identify

    max_rank = max(RANKS)
    pipeline = build_pipeline(args)
    gallery, gallery_ids = _gallery(pipeline, args.gallery, args)
    probes, probe_ids = _labelled(pipeline, args.probes, args)
    result = identify(gallery, gallery_ids, probes, probe_ids, ranks=tuple(range(1, max_rank + 1)))
    ranks = ", ".join(f"rank-{k} {100 * result.cmc[k]:.2f}" for k in RANKS)
    print(f"{result.num_mated} mated probes ({len(set(gallery_ids))} identities): {ranks}")
    if result.tpir_at_fpir:
        tpirs = ", ".join(f"TPIR@FPIR={k:g} {100 * v:.2f}" for k, v in result.tpir_at_fpir.items())
        print(f"{result.num_non_mated} non-mated probes: {tpirs}")
        for fpir in (f for f in result.tpir_at_fpir if f * result.num_non_mated < 1):
            print(
                f"note: {result.num_non_mated} non-mated probes cannot resolve FPIR={fpir:g} "
                f"(it needs {math.ceil(1 / fpir)}): TPIR@FPIR={fpir:g} counts the mated probes "
                "found above every non-mated probe's best score"
            )
    else:
        print(f"open-set TPIR@FPIR {FPIR_TARGETS} needs probes of identities not in the gallery")
    write_json(args.json, result.to_dict())
    if args.plot:
        plot_cmc(args.plot, result.cmc)
        print(f"wrote {args.plot}")
    return 0


def _eval_ijb(args: argparse.Namespace) -> int:
    from faceforge.core.embedder import load_embedder
    from faceforge.evaluation.ijb import identify_templates, verify_templates
    from faceforge.evaluation.ijb_features import ijb_features
    from faceforge.evaluation.ijb_layout import read_ijb

    meta = read_ijb(args.root, args.target)
    embedder = load_embedder(model_source(args), batch_size=args.batch_size, **runtime_kwargs(args))
    features = ijb_features(
        embedder, args.root, meta, max_pixels=args.max_pixels, progress=not args.no_progress
    )
    faceness = meta.faceness if args.faceness else None
    ids = (meta.template_ids, meta.media_ids)
    options = {"normalise": args.normalise}
    verified = verify_templates(features, faceness, *ids, meta.pairs, meta.labels, **options)
    results: dict[str, Any] = {"1:1": verified}
    tars = verified.tar_at_far.items()
    print(f"{args.target} 1:1 " + ", ".join(f"TAR@FAR={k:g} {100 * v:.2f}" for k, v in tars))
    if meta.gallery is not None and meta.probes is not None:
        found = identify_templates(features, faceness, *ids, meta.gallery, meta.probes, **options)
        results["1:N"] = found
        ranks = ", ".join(f"rank-{k} {100 * v:.2f}" for k, v in found.rank_accuracy.items())
        tpirs = ", ".join(f"TPIR@FPIR={k:g} {100 * v:.2f}" for k, v in found.tpir_at_fpir.items())
        print(f"{args.target} 1:N {ranks}, {tpirs}")
    write_json(args.json, {name: result.to_dict() for name, result in results.items()})
    return 0


def _megaface_from_npy(args: argparse.Namespace) -> MegaFaceResult:
    from faceforge.evaluation.identification import NpyFolder, megaface, open_npy

    if not (args.probe_labels and args.distractor_embeddings):
        raise DataError("--probe-embeddings needs --probe-labels and --distractor-embeddings")
    path = Path(args.distractor_embeddings)
    distractors = NpyFolder(path) if path.is_dir() else open_npy(path)
    return megaface(open_npy(args.probe_embeddings), open_npy(args.probe_labels), distractors)


def _megaface_from_photos(args: argparse.Namespace) -> MegaFaceResult:
    """Probes from ``--probes`` identity folders hidden among every image under
    ``--distractor-images``; with ``--save-embeddings`` the embeddings are kept as ``.npy``
    so a rerun (another probe set, another metric) need not embed the distractors again."""
    from faceforge.data.image_io import list_images
    from faceforge.evaluation.identification import megaface

    if not (args.probes and args.distractor_images):
        raise DataError("photo folders need both --probes DIR and --distractor-images DIR")
    files = list_images(args.distractor_images, recursive=True)
    if not files:
        raise DataError(f"{args.distractor_images}: no images found (searched sub-folders too)")
    pipeline = build_pipeline(args)
    probes, labels = _labelled(pipeline, args.probes, args)
    distractors, _ = _embed_files(pipeline, files, "embedding distractors", args)
    if args.save_embeddings:
        _save_embeddings(Path(args.save_embeddings), probes, labels, distractors)
    return megaface(probes, labels, distractors)


def _save_embeddings(
    folder: Path, probes: np.ndarray, labels: np.ndarray, distractors: np.ndarray
) -> None:
    """``probes.npy``, ``probe_labels.npy`` and ``distractors.npy`` (written atomically), and
    the options that evaluate them again."""
    import numpy as np

    from faceforge.files import atomic_open

    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"probes": probes, "probe_labels": labels, "distractors": distractors}
    for name, array in arrays.items():
        with atomic_open(folder / f"{name}.npy") as f:
            np.save(f, array, allow_pickle=False)
    options = ("--probe-embeddings", "--probe-labels", "--distractor-embeddings")
    again = " ".join(f"{o} {folder / n}.npy" for o, n in zip(options, arrays, strict=True))
    print(f"wrote {folder}/{{{','.join(arrays)}}}.npy; evaluate them again with: {again}")


def _megaface_from_synthetic_faces(args: argparse.Namespace) -> MegaFaceResult:
    from faceforge.core.embedder import load_embedder
    from faceforge.evaluation.synthetic_megaface import run_synthetic_megaface

    embedder = load_embedder(model_source(args), **runtime_kwargs(args))
    from faceforge.core.embedder import resolve_flip

    resolve_flip(embedder, args.flip)
    return run_synthetic_megaface(
        embedder,
        seed=embedder.config.data.synthetic.seed,
        num_identities=args.identities,
        images_per_identity=args.images_per_identity,
        num_distractors=args.distractors,
        progress=not args.no_progress,
    )


def _megaface(args: argparse.Namespace) -> int:
    if args.probe_embeddings:
        result = _megaface_from_npy(args)
    elif not args.checkpoint:
        raise DataError(
            "give --checkpoint (with --probes and --distractor-images for photo folders, "
            "alone for synthetic faces) or --probe-embeddings (.npy)"
        )
    elif args.probes or args.distractor_images:
        result = _megaface_from_photos(args)
    else:
        result = _megaface_from_synthetic_faces(args)
    ranks = ", ".join(f"rank-{k} {100 * v:.2f}" for k, v in result.rank_accuracy.items())
    tars = ", ".join(f"TAR@FAR={k:g} {100 * v:.2f}" for k, v in result.tar_at_far.items())
    print(
        f"{result.num_probes} probes of {result.num_identities} identities, "
        f"{result.num_distractors} distractors, {result.num_searches} searches: {ranks}; {tars}"
    )
    impostors = result.num_probes * result.num_distractors
    for far in (far for far in result.tar_at_far if far * impostors < 1):
        print(
            f"note: {impostors} impostor pairs cannot resolve FAR={far:g} (it needs "
            f"{math.ceil(1 / far)}): TAR@FAR={far:g} counts the genuine pairs scoring above "
            "every impostor"
        )
    write_json(args.json, result.to_dict())
    return 0


def register(tasks: argparse._SubParsersAction) -> None:
    """Add ``ijb``, ``identify`` and ``megaface`` to ``faceforge eval``."""
    p = tasks.add_parser(
        "ijb",
        help="IJB-B / IJB-C 1:1 TAR@FAR and 1:N identification (insightface protocol)",
        description="Align every loose crop from its meta landmarks, embed it and its mirror "
        "image (flip always, as the protocol), pool into templates and print TAR@FAR "
        "1e-6..1e-1 (and 1:N rank-k and TPIR@FPIR when the 1:N CSVs are there). Example: "
        "faceforge eval ijb --checkpoint best.pt --root IJB_release/IJBC --target IJBC",
    )
    p.add_argument("--root", required=True, help="folder with loose_crop/ and meta/")
    p.add_argument("--target", choices=("IJBB", "IJBC"), default="IJBC")
    add_max_pixels_option(p, MAX_PHOTO_PIXELS, "loose crops")
    p.add_argument(
        "--faceness",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="weight image features by the detector score (default on, as insightface)",
    )
    p.add_argument(
        "--normalise", action="store_true", help="L2-normalise image features before pooling"
    )
    p.add_argument("--batch-size", type=ranged(int, 1), default=64, help="images per batch")
    add_runtime_options(p)
    add_json_option(p)
    add_progress_option(p)
    add_source_options(p)
    p.set_defaults(func=_eval_ijb, command="eval ijb")

    p = tasks.add_parser(
        "identify",
        help="1:N identification: CMC rank-1/5/10 and open-set TPIR@FPIR",
        description="Search every probe photo in the gallery (a folder of per-identity "
        "folders, or a gallery made by enroll); probes of identities outside the gallery "
        "give the open-set TPIR@FPIR. Example: faceforge eval identify --checkpoint best.pt "
        "--gallery gallery/ --probes probes/ --aligned --plot cmc.png",
    )
    p.add_argument("--gallery", required=True, help="<identity>/<image> folder or enroll gallery")
    p.add_argument("--probes", required=True, help="<identity>/<image> folder of probe photos")
    add_json_option(p)
    p.add_argument("--plot", type=plot_file, help="write the CMC curve to this PNG")
    add_progress_option(p)
    add_model_options(p)
    p.set_defaults(func=_identify, command="eval identify")
    _register_megaface(tasks)


def _register_megaface(tasks: argparse._SubParsersAction) -> None:
    p = tasks.add_parser(
        "megaface",
        help="MegaFace-style 1:N identification with distractors",
        description="Rank-1/5/10 identification and TAR@FAR=1e-6 verification of probes "
        "hidden among distractors. The embeddings come from photo folders (--probes "
        "<identity>/<image> and every image under --distractor-images, e.g. FaceScrub among "
        "MegaFace), from synthetic faces (--checkpoint alone), or precomputed .npy files. "
        "Example: faceforge eval megaface --checkpoint best.pt --probes facescrub/ "
        "--distractor-images megaface/ --aligned --save-embeddings emb/",
    )
    p.add_argument("--probes", metavar="DIR", help="<identity>/<image> folder of probe photos")
    p.add_argument(
        "--distractor-images",
        metavar="DIR",
        help="folder of distractor photos (sub-folders searched too), of no probe identity",
    )
    p.add_argument(
        "--save-embeddings",
        type=output_folder,
        metavar="DIR",
        help="with photo folders: keep the embeddings as .npy files to evaluate again",
    )
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
    p.add_argument("--probe-embeddings", help="(N, D) .npy of probe embeddings")
    p.add_argument("--probe-labels", help="(N,) .npy of probe identity labels")
    p.add_argument(
        "--distractor-embeddings", help="(M, D) .npy, or a folder of .npy files, of distractors"
    )
    add_model_options(p, required=False)
    add_json_option(p)
    add_progress_option(p, quiet=True)
    p.set_defaults(func=_megaface, command="eval megaface")
