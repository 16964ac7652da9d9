"""How every command names a model and turns photos into embeddings.

A model is a faceforge checkpoint, an ONNX file, or a weights file with ``--arch`` or
``--pretrained`` (see :class:`~faceforge.core.model_source.ModelSource`); the same options
mean the same thing in ``eval``, ``verify``, ``enroll``, ``search``, ``export`` and
``import``. Nothing heavy is imported here: choice lists are read when they are checked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from faceforge.cli.arguments import LazyChoices, add_flip_option, image_side, ranged
from faceforge.data.limits import MAX_PHOTO_PIXELS
from faceforge.errors import ConfigError, shorten

if TYPE_CHECKING:
    from faceforge.core.model_source import ModelSource
    from faceforge.core.preprocess import Preprocess
    from faceforge.inference.matching.threshold import Threshold
    from faceforge.inference.pipeline import FacePipeline

PRECISION_CHOICES = LazyChoices("faceforge.core.precision", "PRECISIONS")
TEMPLATE_CHOICES = LazyChoices("faceforge.data.face_template", "TEMPLATES")
RESIZE_CHOICES = LazyChoices("faceforge.data.images", "RESIZE_MODES")
SELECTION_CHOICES = LazyChoices("faceforge.inference.detection.base", "SELECTION_POLICIES")
#: the specs ``--detector`` accepts (parsed by faceforge.inference.detection.registry)
DETECTOR_SPECS = (
    "mtcnn, mtcnn:DIR (folder with pnet.pt, rnet.pt, onet.pt) or scrfd:PATH.onnx "
    "(an insightface SCRFD model with keypoints)"
)
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


def _embedding_size(text: str) -> int:
    """An argparse ``type``: an ``--embedding-size`` a gallery can store."""
    from faceforge.inference.matching.gallery_json import MAX_EMBEDDING_SIZE

    return int(ranged(int, 1, MAX_EMBEDDING_SIZE)(text))


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
    parser.add_argument(
        "--template",
        choices=TEMPLATE_CHOICES,
        metavar="NAME",
        help="alignment template: %(choices)s (default arcface)",
    )


def add_weights_options(parser: argparse.ArgumentParser) -> None:
    """How to read a weights file of another project: ``--arch`` with ``--embedding-size``,
    the contract options and ``--key-map``, or ``--pretrained`` (which brings them all)."""
    parser.add_argument("--arch", help="architecture of a weights file (iresnet50, ...)")
    parser.add_argument(
        "--embedding-size",
        type=_embedding_size,
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


def add_source_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--checkpoint`` (checkpoint, .onnx or weights file) and :func:`add_weights_options`."""
    parser.add_argument(
        "--checkpoint",
        required=required,
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


def add_model_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The model source plus how photos become embeddings (detector, flip, device)."""
    add_source_options(parser, required)
    add_flip_option(parser)
    add_runtime_options(parser)
    parser.add_argument(
        "--aligned",
        action="store_true",
        help="inputs are already aligned face crops: skip detection",
    )
    add_face_policy_options(parser, "best")
    add_detector_options(parser)
    add_max_pixels_option(parser, MAX_PHOTO_PIXELS, "photos")


def add_face_policy_options(
    parser: argparse.ArgumentParser,
    selection: str,
    selections: object = SELECTION_CHOICES,
    fallbacks: object = RESIZE_CHOICES,
    fallback: str | None = None,
) -> None:
    """``--selection`` (which face of several) and ``--fallback`` (images without a face):
    one spelling in every command that detects faces."""
    parser.add_argument(
        "--selection",
        choices=selections,
        metavar="POLICY",
        default=selection,
        help=f"which face to use when an image shows several: %(choices)s (default {selection})",
    )
    parser.add_argument(
        "--fallback",
        choices=fallbacks,
        metavar="MODE",
        default=fallback,
        help="what to do with an image where no face is found (or, with --aligned, with every "
        f"image): %(choices)s (default {fallback or 'fail'})",
    )


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--precision``, ``--compile``, ``--winograd``: where and how a PyTorch
    model runs."""
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    parser.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        metavar="NAME",
        default="auto",
        help="PyTorch compute precision: %(choices)s (auto: bf16 on CPUs with native bf16, "
        "fp16 on CUDA)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="run the PyTorch network through torch.compile: faster for long jobs after a "
        "one-time compile (10-30 s, cached on disk)",
    )
    parser.add_argument(
        "--winograd",
        action=argparse.BooleanOptionalAction,
        help="3x3 convolutions of 128+ channels by Winograd F(4x4, 3x3) (default: on for fp32 "
        "on CPU, where IResNets run ~1.4x faster; the transformed weights take 4x the memory "
        "of those layers, +311 MiB for IResNet-50)",
    )


def runtime_kwargs(args: argparse.Namespace) -> dict:
    """The ``load_embedder`` keywords that :func:`add_runtime_options` parsed."""
    options = {"precision": args.precision, "compile": args.compile, "winograd": args.winograd}
    return {"device": args.device, **options}


def build_pipeline(args: argparse.Namespace) -> FacePipeline:
    """The detection + embedding pipeline the model options describe (flip: as
    :func:`~faceforge.core.embedder.resolve_flip`)."""
    from faceforge.cli.liveness_commands import liveness_checker
    from faceforge.inference.pipeline import FacePipeline

    return FacePipeline.load(
        model_source(args),
        detector=None if args.aligned else detector_spec(args),
        flip=args.flip,
        **runtime_kwargs(args),
        selection=args.selection,
        fallback=args.fallback,
        threshold=getattr(args, "threshold", None),
        eval_set=getattr(args, "eval_set", None),
        max_pixels=args.max_pixels,
        liveness=liveness_checker(args),
        min_quality=getattr(args, "min_quality", None),
    )


def decision_threshold(pipeline: FacePipeline) -> Threshold:
    """The pipeline's threshold, with a one-line warning when it cannot be trusted."""
    threshold = pipeline.threshold
    if threshold.warning:
        print(f"warning: {threshold.warning}", file=sys.stderr)
    return threshold


def add_threshold_options(parser: argparse.ArgumentParser) -> None:
    """``--threshold`` (cosine) and ``--eval-set`` (whose stored threshold): every decision."""
    parser.add_argument(
        "--threshold",
        type=ranged(float, -1, 1),
        help="cosine-similarity threshold (default: the model's stored best 10-fold threshold)",
    )
    parser.add_argument(
        "--eval-set", help="evaluation set whose stored threshold to use (e.g. lfw, synthetic)"
    )
