"""How every command names a model, plus ``faceforge identify`` and ``eval-ijb``.

A model is a faceforge checkpoint, an ONNX file, or a weights file with ``--arch`` or
``--pretrained`` (see :class:`~faceforge.core.model_source.ModelSource`); the same options
mean the same thing in ``eval``, ``verify``, ``enroll``, ``search``, ``export``,
``identify``, ``eval-ijb`` and ``import``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceforge.cli.arguments import image_side, ranged
from faceforge.core.precision import PRECISIONS
from faceforge.data.image_io import MAX_PHOTO_PIXELS
from faceforge.data.images import RESIZE_MODES
from faceforge.errors import ConfigError, DataError, shorten
from faceforge.inference.detection.base import SELECTION_POLICIES
from faceforge.inference.detection.registry import DETECTOR_SPECS
from faceforge.inference.matching.storage import MAX_EMBEDDING_SIZE

if TYPE_CHECKING:
    from faceforge.core.model_source import ModelSource
    from faceforge.core.preprocess import Preprocess
    from faceforge.inference.pipeline import FacePipeline

#: an ``--embedding-size`` a gallery can store
EMBEDDING_SIZE = ranged(int, 1, MAX_EMBEDDING_SIZE)
#: preprocessing flags of a ``--arch`` model -> Preprocess field
_CONTRACT_FLAGS = {
    "input_size": "--input-size",
    "color": "--color",
    "mean": "--mean",
    "std": "--std",
    "template": "--template",
}


def _input_size(text: str) -> tuple[int, int]:
    """``112x96`` -> (112, 96): height x width."""
    parts = text.lower().split("x")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(
            f"expected HEIGHTxWIDTH such as 112x96, got {shorten(text)}"
        )
    height, width = (image_side(part) for part in parts)
    return height, width


def add_contract_options(parser: argparse.ArgumentParser) -> None:
    """Preprocessing contract of external weights (default: insightface's)."""
    parser.add_argument(
        "--input-size", type=_input_size, help="model input HEIGHTxWIDTH (default 112x112)"
    )
    parser.add_argument("--color", choices=("RGB", "BGR"), help="channel order (default RGB)")
    parser.add_argument(
        "--mean",
        type=ranged(float),
        nargs=3,
        help="per-channel mean of pixel/255 (default 0.5 0.5 0.5)",
    )
    parser.add_argument(
        "--std",
        type=ranged(float, above=0),
        nargs=3,
        help="per-channel std of pixel/255 (default 0.5 0.5 0.5)",
    )
    parser.add_argument("--template", help="alignment template (default arcface)")


def add_weights_options(parser: argparse.ArgumentParser) -> None:
    """How to read a weights file of another project: ``--arch`` with ``--embedding-size``,
    the contract options and ``--key-map``, or ``--pretrained`` (which brings them all)."""
    parser.add_argument("--arch", help="architecture of a weights file (iresnet50, ...)")
    parser.add_argument(
        "--embedding-size",
        type=EMBEDDING_SIZE,
        default=512,
        help="embedding size of --arch weights",
    )
    add_contract_options(parser)
    parser.add_argument(
        "--key-map",
        metavar="FILE",
        help="lines of 'SOURCE TARGET' renaming keys of --arch weights that cannot be matched "
        "by name or order ('prefix.' renames a prefix, a TARGET of - drops the key)",
    )
    parser.add_argument(
        "--pretrained",
        metavar="NAME",
        help="the file is this published model's (see faceforge models): its architecture "
        "and preprocessing are known and its hash is checked",
    )


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint`` (checkpoint, .onnx or weights file) and :func:`add_weights_options`."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="faceforge checkpoint (.pt), ONNX model (.onnx), or a weights file together "
        "with --arch or --pretrained",
    )
    add_weights_options(parser)


def contract(args: argparse.Namespace) -> Preprocess:
    """The Preprocess the contract options describe (insightface's defaults otherwise)."""
    from faceforge.core.preprocess import Preprocess

    given = {k: getattr(args, k) for k in _CONTRACT_FLAGS if getattr(args, k) is not None}
    return Preprocess(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})


def weights_source(args: argparse.Namespace, path: str) -> ModelSource:
    """The model file ``path`` read as the weights options say; contract options and
    ``--key-map`` only go with ``--arch``, and ``--pretrained`` replaces them all."""
    from faceforge.core.model_source import ModelSource

    given = [flag for k, flag in _CONTRACT_FLAGS.items() if getattr(args, k) is not None]
    given += ["--key-map"] if args.key_map is not None else []
    if args.pretrained is not None and (given or args.arch is not None):
        named = ", ".join(given + (["--arch"] if args.arch is not None else []))
        raise ConfigError(
            f"--pretrained {args.pretrained} brings its own architecture and preprocessing; "
            f"drop {named}"
        )
    if args.arch is None and given:
        raise ConfigError(
            f"{', '.join(given)} describe a weights file and need --arch; checkpoints and "
            "ONNX files carry their own preprocessing"
        )
    key_map = None if args.key_map is None else Path(args.key_map)
    return ModelSource(
        Path(path), args.arch, args.embedding_size, contract(args), args.pretrained, key_map
    )


def model_source(args: argparse.Namespace) -> ModelSource:
    """The model the source options name."""
    return weights_source(args, args.checkpoint)


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detector",
        default="mtcnn",
        metavar="SPEC",
        help=f"face detector: {DETECTOR_SPECS} (default: mtcnn)",
    )
    parser.add_argument(
        "--mtcnn-weights",
        metavar="DIR",
        help="folder with pnet.pt, rnet.pt, onet.pt (short for --detector mtcnn:DIR)",
    )


def add_max_pixels_option(parser: argparse.ArgumentParser, default: int, images: str) -> None:
    """``--max-pixels``: the decompression-bomb guard of every image the command decodes."""
    parser.add_argument(
        "--max-pixels",
        type=ranged(int, 1),
        default=default,
        metavar="N",
        help=f"refuse {images} whose header declares more than N pixels, before decoding "
        f"them (default {default}, {default / 1e6:.1f} megapixels)",
    )


def detector_spec(args: argparse.Namespace) -> str:
    """``--detector``, with ``--mtcnn-weights DIR`` read as ``mtcnn:DIR``."""
    if args.mtcnn_weights is None:
        return args.detector
    if args.detector != "mtcnn":
        raise ConfigError(
            f"--mtcnn-weights is short for --detector mtcnn:DIR; it cannot be combined with "
            f"--detector {args.detector}"
        )
    return f"mtcnn:{args.mtcnn_weights}"


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The model source plus how photos become embeddings (detector, flip, device)."""
    add_source_options(parser)
    parser.add_argument("--flip", action="store_true", help="add the mirrored view (flip TTA)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS.names(),
        default="auto",
        help="PyTorch compute precision (auto: bf16 on CPUs with native bf16, fp16 on CUDA)",
    )
    parser.add_argument(
        "--aligned",
        action="store_true",
        help="inputs are already aligned face crops: skip detection",
    )
    parser.add_argument(
        "--fallback",
        choices=RESIZE_MODES.names(),
        help="fit images where no face is found (or all images with --aligned) this way "
        "instead of failing",
    )
    parser.add_argument(
        "--selection",
        choices=SELECTION_POLICIES.names(),
        default="best",
        help="which face to use when an image shows several",
    )
    add_detector_options(parser)
    add_max_pixels_option(parser, MAX_PHOTO_PIXELS, "photos")


def build_pipeline(args: argparse.Namespace) -> FacePipeline:
    """The detection + embedding pipeline the model options describe."""
    from faceforge.cli.liveness_commands import liveness_checker
    from faceforge.inference.pipeline import FacePipeline

    return FacePipeline.load(
        model_source(args),
        detector=None if args.aligned else detector_spec(args),
        device=args.device,
        flip=args.flip,
        precision=args.precision,
        selection=args.selection,
        fallback=args.fallback,
        threshold=getattr(args, "threshold", None),
        eval_set=getattr(args, "eval_set", None),
        max_pixels=args.max_pixels,
        liveness=liveness_checker(args),
        min_quality=getattr(args, "min_quality", None),
    )


def _labelled(pipeline: FacePipeline, folder: str) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and identity names of a ``folder/<identity>/<image>`` tree; images where
    no face is usable are reported and left out."""
    from faceforge.data.image_io import identity_folders

    files = [(name, path) for name, paths in identity_folders(folder) for path in paths]
    if not files:
        raise DataError(f"{folder}: no images in <identity>/ sub-folders")
    embeddings, errors = pipeline.try_embed([path for _, path in files])
    for (_, path), error in zip(files, errors, strict=True):
        if error:
            print(f"warning: {path}: {error}; left out", file=sys.stderr)
    kept = np.array([error is None for error in errors])
    return embeddings[kept], np.array([name for name, _ in files])[kept]


def _gallery(pipeline: FacePipeline, folder: str) -> tuple[np.ndarray, np.ndarray]:
    """A gallery saved by ``enroll`` (its stored embeddings), else an identity-folder tree."""
    from faceforge.inference.matching.gallery import Gallery
    from faceforge.inference.matching.storage import METADATA_FILE, read_gallery

    if not (Path(folder) / METADATA_FILE).is_file():
        return _labelled(pipeline, folder)
    data = read_gallery(folder)
    embedder = pipeline.embedder
    Gallery(data.embedding_size, data.fingerprint, model=data.model).check_model(
        embedder.fingerprint, embedder.embedding_size, folder
    )
    names = [name for name, rows in data.embeddings.items() for _ in range(len(rows))]
    return np.concatenate(list(data.embeddings.values())), np.array(names)


def plot_cmc(path: str | Path, cmc: dict[int, float]) -> None:
    """The cumulative match characteristic (identification rate by rank) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(list(cmc), [100 * v for v in cmc.values()], marker="o")
    axes.set_xlabel("rank")
    axes.set_ylabel("identification rate (%)")
    axes.set_title("CMC")
    axes.grid(True, alpha=0.3)
    figure.savefig(path)


def _identify(args: argparse.Namespace) -> int:
    from faceforge.evaluation.identification import FPIR_TARGETS, RANKS, identify

    max_rank = max(RANKS)
    pipeline = build_pipeline(args)
    gallery, gallery_ids = _gallery(pipeline, args.gallery)
    probes, probe_ids = _labelled(pipeline, args.probes)
    result = identify(gallery, gallery_ids, probes, probe_ids, ranks=tuple(range(1, max_rank + 1)))
    ranks = ", ".join(f"rank-{k} {100 * result.cmc[k]:.2f}" for k in RANKS)
    print(f"{result.num_mated} mated probes ({len(set(gallery_ids))} identities): {ranks}")
    if result.tpir_at_fpir:
        tpirs = ", ".join(f"TPIR@FPIR={k:g} {100 * v:.2f}" for k, v in result.tpir_at_fpir.items())
        print(f"{result.num_non_mated} non-mated probes: {tpirs}")
    else:
        print(f"open-set TPIR@FPIR {FPIR_TARGETS} needs probes of identities not in the gallery")
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
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
    embedder = load_embedder(
        model_source(args),
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
    )
    features = ijb_features(embedder, args.root, meta, max_pixels=args.max_pixels)
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
    if args.json:
        report = {name: result.to_dict() for name, result in results.items()}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``identify`` and ``eval-ijb`` to the ``faceforge`` parser."""
    p = subparsers.add_parser(
        "identify",
        help="1:N identification: CMC rank-1/5/10 and open-set TPIR@FPIR",
        description="Search every probe photo in the gallery (a folder of per-identity "
        "folders, or a gallery made by enroll); probes of identities outside the gallery "
        "give the open-set TPIR@FPIR. Example: faceforge identify --checkpoint best.pt "
        "--gallery gallery/ --probes probes/ --aligned --plot cmc.png",
    )
    p.add_argument("--gallery", required=True, help="<identity>/<image> folder or enroll gallery")
    p.add_argument("--probes", required=True, help="<identity>/<image> folder of probe photos")
    p.add_argument("--json", help="write the results to this JSON file")
    p.add_argument("--plot", help="write the CMC curve to this PNG")
    add_model_options(p)
    p.set_defaults(func=_identify)

    p = subparsers.add_parser(
        "eval-ijb",
        help="IJB-B / IJB-C 1:1 TAR@FAR and 1:N identification (insightface protocol)",
        description="Align every loose crop from its meta landmarks, embed it and its mirror "
        "image, pool into templates and print TAR@FAR 1e-6..1e-1 (and 1:N rank-k and "
        "TPIR@FPIR when the 1:N CSVs are there). Example: faceforge eval-ijb --checkpoint "
        "best.pt --root IJB_release/IJBC --target IJBC",
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
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--precision", choices=PRECISIONS.names(), default="auto")
    p.add_argument("--json", help="write the results to this JSON file")
    add_source_options(p)
    p.set_defaults(func=_eval_ijb)
