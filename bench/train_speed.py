"""Training throughput of the real training step under each speed option, printed as a table.

    python bench/train_speed.py                 # MobileFaceNet, batch 64
    python bench/train_speed.py --backbone iresnet18 --batch-size 32 --compile

Every row runs faceforge's own :func:`faceforge.train.engine.train_step` (forward, ArcFace
head, loss, backward, SGD) on the same pre-rendered synthetic batches, so rows differ only in
the option.
A second table measures the input pipeline alone: JPEG decoding + augmentation with 0, 1 and 2
loader workers. Figures depend on the machine and its load: compare rows of one run only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader

from faceforge.allocator import retain_freed_memory
from faceforge.config import load_config
from faceforge.data.dataset import FaceDataset, collate_faces
from faceforge.data.readers import ImageFolderReader
from faceforge.data.synthetic import SyntheticFaces
from faceforge.data.transforms import build_train_transform
from faceforge.train.engine import train_step
from faceforge.train.main import setup

OPTIONS = {
    "eager fp32": ["train.amp=fp32", "train.channels_last=false"],
    "channels_last": ["train.amp=fp32", "train.channels_last=true"],
    "bf16 autocast": ["train.amp=bf16", "train.channels_last=false"],
    "channels_last + bf16": ["train.amp=bf16", "train.channels_last=true"],
}


#: insightface's published per-GPU figures (8 x V100 jobs) to read the CUDA rows against
INSIGHTFACE_V100 = {"iresnet50": 690, "mobilefacenet": 1500}


def time_training(
    args: argparse.Namespace, overrides: list[str], output: Path, backbone: str = ""
) -> float:
    cfg = load_config(
        None,
        [
            f"model.backbone={backbone or args.backbone}",
            f"train.batch_size={args.batch_size}",
            "data.synthetic.num_identities=50",
            f"data.synthetic.images_per_identity={max(2, args.batch_size // 10)}",
            "train.progress=false",
            "train.tensorboard=false",
            f"train.output_dir={output}",
            *overrides,
        ],
    )
    run, state = setup(cfg, log=lambda _: None)
    batches = list(run.loader(epoch=0))
    for batch in batches[: args.warmup]:
        train_step(run, state, batch)
    started = time.perf_counter()
    images = 0
    for i in range(args.steps):
        batch = batches[i % len(batches)]
        train_step(run, state, batch)
        images += len(batch.labels)
    return images / (time.perf_counter() - started)


def time_loading(root: Path, workers: int, batch_size: int) -> float:
    cfg = load_config(None, ["augment.hflip=0.5", "augment.random_crop_scale=0.1"])
    dataset = FaceDataset(ImageFolderReader(root), build_train_transform(cfg.augment))
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_faces, shuffle=True
    )
    started = time.perf_counter()
    count = sum(len(batch.labels) for batch in loader)
    return count / (time.perf_counter() - started)


def write_jpegs(root: Path, identities: int, per_identity: int) -> None:
    faces = SyntheticFaces(0)
    for i in range(identities):
        (root / f"id{i:04d}").mkdir(parents=True)
        for k in range(per_identity):
            bgr = cv2.cvtColor(faces.render(i, k), cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(root / f"id{i:04d}" / f"{k}.jpg"), bgr)


def cuda_table(args: argparse.Namespace, tmp: Path) -> Table:
    """Samples/s on one GPU at batch 128, fp16 with loss scaling, channels-last."""
    table = Table(title=f"CUDA: {torch.cuda.get_device_name()}, batch 128, fp16, per GPU")
    table.add_column("backbone")
    table.add_column("samples/s", justify="right")
    table.add_column("insightface, per V100 (8-GPU job)", justify="right")
    cuda = argparse.Namespace(**{**vars(args), "batch_size": 128})
    options = ["train.device=cuda", "train.amp=fp16", "train.channels_last=true"]
    for backbone, published in INSIGHTFACE_V100.items():
        speed = time_training(cuda, options, tmp / f"cuda_{backbone}", backbone)
        table.add_row(backbone, f"{speed:.0f}", str(published))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilefacenet")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row")
    args = parser.parse_args()
    retain_freed_memory()  # as the faceforge command does
    options = dict(OPTIONS)
    if args.compile:
        options["channels_last + bf16 + compile"] = [
            *OPTIONS["channels_last + bf16"],
            "train.compile=true",
        ]
    console = Console()
    table = Table(
        title=f"{args.backbone} training, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads"
    )
    table.add_column("option")
    table.add_column("images/s", justify="right")
    table.add_column("vs eager", justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        for name, overrides in options.items():
            speed = time_training(args, overrides, Path(tmp) / name.replace(" ", "_"))
            base = base or speed
            table.add_row(name, f"{speed:.1f}", f"{speed / base:.2f}x")
        console.print(table)
        if torch.cuda.is_available():
            console.print(cuda_table(args, Path(tmp)))
        else:
            console.print("no CUDA device: the per-GPU fp16 table is skipped")

        root = Path(tmp) / "jpegs"
        write_jpegs(root, identities=40, per_identity=25)
        loading = Table(title="input pipeline: JPEG decode (OpenCV) + augmentation, 1000 images")
        loading.add_column("loader workers")
        loading.add_column("images/s", justify="right")
        for workers in (0, 1, 2):
            loading.add_row(str(workers), f"{time_loading(root, workers, args.batch_size):.0f}")
        console.print(loading)


if __name__ == "__main__":
    main()
