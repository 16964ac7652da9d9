"""Train a MiniFASNet anti-spoofing model on a ``live/`` + ``spoof/`` folder of face crops.

The crops must be cut as the checker cuts them at inference: the face box scaled by the
recipe's ``scale`` (recorded in the weights' file name, which tells the checker the scale).
:func:`read_spoof_folder` takes a ``crop`` function to cut them from photos
(:func:`~faceforge.inference.liveness.face_cropper`); without one the folder must hold such
crops already.

``spoof/`` holds images directly (two classes: spoof, live) or one sub-folder per attack type
(``spoof/print``, ``spoof/replay``: one class each). Class 1 is always *live*, as in the
published models, so a trained file drops into :class:`~faceforge.inference.liveness.
LivenessChecker`. The loss is cross-entropy plus ``fourier_weight`` times the mean squared
error of the Fourier branch against the input's spectrum (:func:`~faceforge.models.
minifasnet.fourier_target`). With ``synthesize``, live training images are also turned into
synthetic attacks (:mod:`faceforge.data.spoof`) on the fly.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from faceforge.config import build_dataclass, builtin_config_path, parse_override, parse_yaml
from faceforge.data.image_io import list_images, read_image
from faceforge.data.spoof import random_attack
from faceforge.errors import ConfigError, DataError
from faceforge.evaluation.pad import PadReport, pad_report
from faceforge.files import atomic_write_bytes
from faceforge.models.minifasnet import FourierNet, fourier_target, network_input
from faceforge.models.registry import build_antispoof_model

LIVE = "live"


@dataclass(frozen=True)
class AntiSpoofConfig:
    """An anti-spoofing recipe (``faceforge/configs/antispoof/*.yaml``)."""

    arch: str = "minifasnet_v2"
    input_size: int = 80
    scale: float = 2.7
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4
    fourier_weight: float = 1.0
    synthesize: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.input_size % 16 or self.input_size < 16:
            raise ConfigError(f"input_size must be a multiple of 16, got {self.input_size}")
        if self.steps < 1 or self.batch_size < 2:
            raise ConfigError("steps must be >= 1 and batch_size >= 2")


def load_antispoof_config(
    path: str | Path, overrides: tuple[str, ...] | list[str] = ()
) -> AntiSpoofConfig:
    """A recipe from YAML (a file, or a name shipped in ``configs/antispoof/``) with
    ``key=value`` overrides, every key checked."""
    file = Path(path)
    if not file.exists() and builtin_config_path(f"antispoof/{path}").is_file():
        file = builtin_config_path(f"antispoof/{path}")
    if not file.is_file():
        raise ConfigError(f"anti-spoofing recipe {str(path)!r} not found")
    values = parse_yaml(file.read_text(), str(file)) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{file}: expected a mapping of recipe keys")
    values.update(parse_override(text, AntiSpoofConfig) for text in overrides)
    return build_dataclass(AntiSpoofConfig, values)


@dataclass
class SpoofSet:
    """Images (N, S, S, 3) uint8 RGB, labels and class names (index 1 = live); ``left_out``:
    photos in which the ``crop`` function found no face."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    left_out: list[Path] = field(default_factory=list)


#: cuts the face of a photo (``None`` when it finds none)
Crop = Callable[[np.ndarray], "np.ndarray | None"]


def class_names(spoof_types: list[str]) -> list[str]:
    """Classes with *live* at index 1: ``[first type, live, other types...]``."""
    types = spoof_types or ["spoof"]
    return [types[0], LIVE, *types[1:]]


def read_spoof_folder(root: str | Path, size: int, crop: Crop | None = None) -> SpoofSet:
    """``root/live`` and ``root/spoof`` (optionally ``spoof/<type>/``): crops resized to
    ``size``, or with ``crop`` the face it cuts from each photo."""
    root = Path(root)
    spoof = root / "spoof"
    if not (root / LIVE).is_dir() or not spoof.is_dir():
        raise DataError(f"{root}: expected live/ and spoof/ sub-folders")
    types = sorted(p.name for p in spoof.iterdir() if p.is_dir())
    classes = class_names(types)
    folders = [(LIVE, root / LIVE)] + ([(t, spoof / t) for t in types] or [("spoof", spoof)])
    cut = crop or (lambda image: _fit(image, size))
    images, labels, left_out = [], [], []
    for name, folder in folders:
        for path in list_images(folder):
            face = cut(read_image(path))
            if face is None:
                left_out.append(path)
                continue
            images.append(face)
            labels.append(classes.index(name))
    if not images:
        raise DataError(f"{root}: no face found in any of its {len(left_out)} photos")
    return SpoofSet(np.stack(images), np.asarray(labels), classes, left_out)


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def _synthesized(data: SpoofSet, rng: np.random.Generator) -> SpoofSet:
    """Add one synthetic attack per live image (types as classes when the set has them)."""
    live = data.images[data.labels == 1]
    attacked = [random_attack(image, rng) for image in live]
    classes = data.classes
    labels = [classes.index(name) if name in classes else 0 for name, _ in attacked]
    images = np.concatenate([data.images, np.stack([image for _, image in attacked])])
    return SpoofSet(images, np.concatenate([data.labels, labels]), classes)


def train_antispoof(data: SpoofSet, cfg: AntiSpoofConfig) -> nn.Module:
    """Train a classifier (returned in eval mode, without the Fourier branch)."""
    live = int((data.labels == 1).sum())
    if not live or live == len(data.labels):
        raise DataError(
            f"training needs live and spoof images: found {live} live and "
            f"{len(data.labels) - live} spoof"
        )
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.synthesize:
        data = _synthesized(data, rng)
    model = build_antispoof_model(
        cfg.arch, num_classes=len(data.classes), conv6_kernel=cfg.input_size // 16
    )
    net = FourierNet(model).train()
    optimiser = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, cfg.lr, total_steps=cfg.steps)
    labels = torch.from_numpy(data.labels).long()
    for _ in range(cfg.steps):
        index = rng.choice(len(data.labels), size=min(cfg.batch_size, len(data.labels)))
        x = network_input(data.images[index])
        logits, spectrum = net(x)
        target = fourier_target(x, tuple(spectrum.shape[-2:]))
        loss = nn.functional.cross_entropy(logits, labels[index])
        loss = loss + cfg.fourier_weight * nn.functional.mse_loss(spectrum, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return model.eval()


@torch.inference_mode()
def live_scores(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Live probabilities (softmax index 1) of RGB uint8 crops."""
    return torch.softmax(model.eval()(network_input(images)), dim=1)[:, 1].numpy()


def evaluate_antispoof(model: nn.Module, data: SpoofSet, threshold: float = 0.5) -> PadReport:
    """APCER (worst attack type), BPCER, ACER, HTER and APCER at fixed BPCERs."""
    scores = live_scores(model, data.images)
    types = [data.classes[label] for label in data.labels]
    return pad_report(scores, data.labels == 1, threshold, types)


def save_antispoof(model: nn.Module, cfg: AntiSpoofConfig, folder: str | Path) -> Path:
    """Write the weights as ``folder/<published name>`` (see :func:`published_name`), the
    file ``faceforge liveness --liveness-model`` and the server load."""
    path = Path(folder) / published_name(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def published_name(cfg: AntiSpoofConfig) -> str:
    """The file name :func:`~faceforge.inference.liveness.load_liveness_model` reads."""
    kind = cfg.arch.removeprefix("minifasnet_").upper()
    whole = cfg.scale == int(cfg.scale)
    scale = f"{int(cfg.scale)}_0_0" if whole else f"{cfg.scale:g}".replace(".", "_")
    return f"{scale}_{cfg.input_size}x{cfg.input_size}_MiniFASNet{kind}.pth"
