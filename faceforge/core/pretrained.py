"""Named, well-known public face recognition weights and the contract each was trained with
(timm's pretrained configs: weights are useless without their input size, colour order,
normalisation and alignment).

faceforge downloads nothing: a user fetches the file from the entry's ``source`` and names it
(``faceforge import --pretrained NAME FILE OUT``, or ``--checkpoint FILE --pretrained NAME``
in any command). The file's SHA-256 is checked against the published one where a published
value exists; where none does, loading says the file could not be verified. Names are
``<architecture>.<training>``, as timm's ``<model>.<tag>``.

>>> pretrained_weights("iresnet100.adaface_webface12m").preprocess.color
'BGR'
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from faceforge.core.preprocess import Preprocess
from faceforge.errors import CheckpointError
from faceforge.registry import Registry

INSIGHTFACE_ZOO = "https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch"
INSIGHTFACE_LICENCE = "insightface model zoo: non-commercial research purposes only"
#: what the arcface_torch figures below measure, in their order
INSIGHTFACE_FIGURES = (
    "IJB-C TAR@FAR=1e-4",
    "LFW",
    "CFP-FP",
    "AgeDB-30",
    "ICCV2021-MFR-ALL TAR@FAR=1e-6",
)
ADAFACE_ZOO = "https://github.com/mk-minchul/AdaFace#pretrained-models"
ADAFACE_LICENCE = (
    "AdaFace code MIT; weights trained on a research dataset (MS1MV2 / WebFace), "
    "check its terms before commercial use"
)
#: AdaFace models take BGR input normalised to [-1, 1] (its README, "Pretrained Models")
ADAFACE_CONTRACT = Preprocess(color="BGR")
FACENET_RELEASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
FACENET_LICENCE = (
    "facenet-pytorch and davidsandberg/facenet (the original TensorFlow weights) MIT; trained "
    "on a research dataset (VGGFace2 / CASIA-WebFace), check its terms before commercial use"
)
#: facenet-pytorch's ``fixed_image_standardization``: (x - 127.5) / 128 on RGB 160x160 crops
FACENET_CONTRACT = Preprocess(input_size=(160, 160), std=(128 / 255,) * 3, template="facenet")
TREB1EN_ZOO = "https://github.com/TreB1eN/InsightFace_Pytorch#2-pretrained-models--performance"
TREB1EN_LICENCE = (
    "InsightFace_Pytorch code MIT; weights trained on insightface's MS1M data (a research "
    "dataset), check its terms before commercial use"
)
#: TreB1eN's training images were written from insightface's records as decoded (BGR) and
#: read back as RGB, and its evaluation turns RGB into BGR: its models take BGR in [-1, 1]
TREB1EN_CONTRACT = Preprocess(color="BGR")
#: bytes hashed at a time
CHUNK = 1 << 20


@dataclass(frozen=True)
class PretrainedWeights:
    """A published weights file: what network it fits, how its inputs were prepared during
    training, and where it comes from."""

    name: str
    #: faceforge backbone the weights load into
    arch: str
    embedding_size: int
    preprocess: Preprocess
    licence: str
    #: published figures, in percent, as the authors report them
    accuracy: Mapping[str, float]
    #: where users get the file, and its published name
    source: str
    file: str
    #: SHA-256 of the published file; None where no published value could be found
    sha256: str | None = None
    #: a :data:`~faceforge.core.weight_adapters.WEIGHT_ADAPTERS` name for another layout
    adapter: str | None = None
    #: key prefixes of training-only tensors in the file (classifier heads)
    drop: tuple[str, ...] = ()
    notes: str = field(default="", compare=False)


def _insightface(folder: str, figures: Sequence[float]) -> PretrainedWeights:
    """The arcface_torch model-zoo file ``folder/backbone.pth`` (``{set}_r{depth}_fp16...``) as
    ``iresnet{depth}.{set}``, with the figures of the README table whose rows link each
    training log by this folder's name: IJB-C TAR@FAR=1e-4, LFW, CFP-FP, AgeDB-30 and
    ICCV2021-MFR-ALL TAR@FAR=1e-6 (later tables list other runs, under other names)."""
    training_set, depth = re.fullmatch(r"(\w+?)_r(\d+)_fp16.*", folder).groups()
    return PretrainedWeights(
        f"iresnet{depth}.{training_set}",
        f"iresnet{depth}",
        512,
        Preprocess(),
        INSIGHTFACE_LICENCE,
        dict(zip(INSIGHTFACE_FIGURES, figures, strict=True)),
        INSIGHTFACE_ZOO + "#model-zoo",
        f"{folder}/backbone.pth",
    )


def _adaface(name: str, arch: str, file: str, lfw: float, ijbc: float) -> PretrainedWeights:
    return PretrainedWeights(
        name,
        arch,
        512,
        ADAFACE_CONTRACT,
        ADAFACE_LICENCE,
        {"LFW": lfw, "IJB-C TAR@FAR=1e-4": ijbc},
        ADAFACE_ZOO,
        file,
        adapter="treb1en_ir",
        notes="a PyTorch Lightning checkpoint; the head and optimizer state are left out",
    )


def _facenet(name: str, file: str, lfw: float, sha256: str | None) -> PretrainedWeights:
    return PretrainedWeights(
        name,
        "inception_resnet_v1",
        512,
        FACENET_CONTRACT,
        FACENET_LICENCE,
        {"LFW": lfw},
        FACENET_RELEASE + file,
        file,
        sha256=sha256,
        drop=("logits.",),
        notes=(
            "facenet-pytorch's port of davidsandberg/facenet; the logits.* classifier is left "
            "out. It was fed MTCNN box crops (margin 14) resized to 160x160, which the facenet "
            "5-point template approximates (faces are not stretched to the box's aspect)"
        ),
    )


def _treb1en(
    name: str, arch: str, file: str, accuracy: Mapping[str, float], adapter: str | None = None
) -> PretrainedWeights:
    return PretrainedWeights(
        name,
        arch,
        512,
        TREB1EN_CONTRACT,
        TREB1EN_LICENCE,
        accuracy,
        TREB1EN_ZOO,
        file,
        adapter=adapter,
        notes=(
            "a bare state dict from TreB1eN's InsightFace_Pytorch (the repository trains on "
            "insightface's faces_emore by default; its README does not name the set)"
        ),
    )


#: arcface_torch's released folders and their figures, in the order of INSIGHTFACE_FIGURES
INSIGHTFACE_FILES = {
    "ms1mv3_arcface_r18_fp16": (94.66, 99.77, 97.73, 97.77, 68.33),
    "ms1mv3_arcface_r34_fp16": (95.90, 99.80, 98.67, 98.10, 77.36),
    "ms1mv3_arcface_r50_fp16": (96.46, 99.83, 98.96, 98.35, 80.53),
    "ms1mv3_arcface_r100_fp16": (96.81, 99.85, 99.06, 98.48, 84.31),
    "glint360k_cosface_r18_fp16_0.1": (95.33, 99.77, 97.73, 97.72, 72.07),
    "glint360k_cosface_r34_fp16_0.1": (96.56, 99.82, 98.78, 98.33, 83.02),
    "glint360k_cosface_r50_fp16_0.1": (96.97, 99.83, 99.20, 98.38, 87.08),
    "glint360k_cosface_r100_fp16_0.1": (97.32, 99.82, 99.29, 98.48, 90.66),
}


ENTRIES = (
    *(_insightface(folder, figures) for folder, figures in INSIGHTFACE_FILES.items()),
    _adaface(
        "iresnet18.adaface_webface4m", "iresnet18", "adaface_ir18_webface4m.ckpt", 99.53, 94.99
    ),
    _adaface("iresnet50.adaface_ms1mv2", "iresnet50", "adaface_ir50_ms1mv2.ckpt", 99.82, 96.27),
    _adaface(
        "iresnet50.adaface_webface4m", "iresnet50", "adaface_ir50_webface4m.ckpt", 99.78, 96.98
    ),
    _adaface("iresnet100.adaface_ms1mv2", "iresnet100", "adaface_ir101_ms1mv2.ckpt", 99.82, 96.89),
    _adaface(
        "iresnet100.adaface_webface12m",
        "iresnet100",
        "adaface_ir101_webface12m.ckpt",
        99.82,
        97.66,
    ),
    _facenet(
        "inception_resnet_v1.vggface2",
        "20180402-114759-vggface2.pt",
        99.65,
        # not published by facenet-pytorch; the same value is pinned (sha256sum -c, 111,898,327
        # bytes) by several independent projects that download the v2.2.9 release file
        "281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b",
    ),
    _facenet("inception_resnet_v1.casia_webface", "20180408-102900-casia-webface.pt", 99.05, None),
    _treb1en(
        "se_iresnet50.treb1en_ms1m",
        "se_iresnet50",
        "model_ir_se50.pth",
        {"LFW": 99.52, "CFP-FP": 95.04, "AgeDB-30": 96.22, "CALFW": 95.57, "CPLFW": 91.07},
        adapter="treb1en_ir",
    ),
    _treb1en(
        "mobilefacenet.treb1en_ms1m",
        "mobilefacenet",
        "model_mobilefacenet.pth",
        {"LFW": 99.18, "CFP-FP": 89.86, "AgeDB-30": 93.47, "CALFW": 94.02, "CPLFW": 86.60},
    ),
    PretrainedWeights(
        "mobilefacenet.casia_112x96",
        "mobilefacenet",
        128,
        # SphereFace-style 112x96 crops, (x - 127.5) / 128 in RGB
        Preprocess(input_size=(112, 96), std=(128 / 255,) * 3),
        "none stated by the author",
        {"LFW": 99.30},
        "https://github.com/Xiaoccer/MobileFaceNet_Pytorch (model/best/068.ckpt)",
        "068.ckpt",
        # the file as published in that repository
        sha256="e839247cdbdfc023fb7cadeaf53a4549d50c8fc24ad154c02e35920ea8910d99",
        notes="trained on CASIA-WebFace; its own key names, matched to MobileFaceNet by order",
    ),
)

#: pretrained entry name -> its :class:`PretrainedWeights`
PRETRAINED: Registry[PretrainedWeights] = Registry.of(
    "pretrained weights", {entry.name: (lambda entry=entry: entry) for entry in ENTRIES}
)


def pretrained_weights(name: str) -> PretrainedWeights:
    """The entry called ``name``; UnknownChoiceError listing the entries otherwise."""
    return PRETRAINED.get(name, "--pretrained")()


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(entry: PretrainedWeights, path: str | Path) -> None:
    """Check that ``path`` is ``entry``'s published file: CheckpointError when its SHA-256
    differs, a warning when no published hash exists to compare with."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"weights file {str(path)!r} does not exist; get {entry.file} from {entry.source}"
        )
    if entry.sha256 is None:
        warnings.warn(
            f"{path.name}: the hash could not be verified (no published SHA-256 for "
            f"{entry.name}); make sure it is {entry.file} from {entry.source}",
            stacklevel=3,
        )
        return
    actual = file_sha256(path)
    if actual != entry.sha256:
        raise CheckpointError(
            f"{path} is not the published {entry.name} file: its SHA-256 is {actual}, "
            f"expected {entry.sha256} (another release, or a damaged download)"
        )
