"""Data loading speed: read + decode + augment + collate, per storage format and worker count,
next to a naive PIL pipeline; and the label cache's effect on opening a large ``.rec``.

Builds a synthetic set of 112x112 JPEGs as an image folder, a list file, a RecordIO file and
an LMDB database (with ``faceforge.prepare.convert``), then prints images/s of faceforge's
loader (OpenCV decode, uint8 augmentation, ``build_loader``) for 0, 1 and 2 workers. The
naive baseline opens each file with PIL and makes a normalised float tensor per image, as a
torchvision ``ImageFolder`` + ``ToTensor`` + ``Normalize`` pipeline does. Then it writes a
``.rec`` of ``--label-cache-images`` small JPEGs and times its first open (index parse and
header scan) and second open (label cache).

    python bench/data_speed.py --images 20000 --label-cache-images 200000
"""

from __future__ import annotations

import argparse
import itertools
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from faceforge.config import AugmentConfig, DataConfig
from faceforge.data.dataset import EpochSampler, FaceDataset
from faceforge.data.image_io import list_images
from faceforge.data.loader import build_loader
from faceforge.data.recordio.writer import RecordIOWriter
from faceforge.data.sources import DATA_SOURCES
from faceforge.data.transforms import build_train_transform
from faceforge.prepare.convert import ConvertOptions, convert

CPU = torch.device("cpu")
BATCH = 128
CHILDREN = resource.RUSAGE_CHILDREN


def face_like_jpeg(rng: np.random.Generator, size: int, quality: int) -> bytes:
    """A smooth image with some texture: JPEGs about as large as aligned face crops."""
    image = cv2.resize(rng.integers(0, 255, (14, 14, 3), np.uint8), (size, size))
    image = cv2.add(image, rng.integers(0, 24, (size, size, 3), np.uint8))
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def build_folder(root: Path, images: int, identities: int) -> None:
    rng = np.random.default_rng(0)
    pool = [face_like_jpeg(rng, 112, 95) for _ in range(min(images, 1000))]
    for i in range(images):
        folder = root / f"{i % identities:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:07d}.jpg").write_bytes(pool[i % len(pool)])


class NaivePil(Dataset):
    """PIL decode, per-image flip and float normalisation (torchvision-style)."""

    def __init__(self, root: Path) -> None:
        self.paths = [p for d in sorted(root.iterdir()) for p in list_images(d)]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.open(self.paths[index]).convert("RGB")
        if np.random.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
        return (x - 0.5) / 0.5, int(self.paths[index].parent.name)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the loader's workers)."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_rates(make_batches, images: int, repeats: int) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second) of the best of ``repeats``
    passes over the first ``images`` images of an epoch. The machine is shared: the best
    pass is the least disturbed, and CPU seconds (workers included, counted once they have
    exited) give the per-core figure that other processes cannot skew."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        started, used = time.perf_counter(), _cpu_seconds()
        for _ in itertools.islice(make_batches(), images // BATCH):
            pass  # leaving the loop ends the loader's iterator, which joins its workers
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, _cpu_seconds() - used)
    count = images // BATCH * BATCH
    return count / wall, count / cpu


def faceforge_loader(source: str, path: Path, workers: int):
    reader = DATA_SOURCES.get(source)(DataConfig(source=source, path=str(path)))
    dataset = FaceDataset(reader, build_train_transform(AugmentConfig()))
    sampler = EpochSampler(len(dataset))
    return lambda: build_loader(dataset, sampler, BATCH, workers, CPU)


def naive_loader(root: Path, workers: int):
    dataset = NaivePil(root)
    return lambda: DataLoader(dataset, BATCH, shuffle=True, num_workers=workers, drop_last=True)


def speed_table(
    work: Path, images: int, worker_counts: list[int], measure: int, repeats: int
) -> None:
    root = work / "folder"
    build_folder(root, images, max(2, images // 20))
    quiet = ConvertOptions(progress=False)
    convert(root, work / "list.txt", quiet)
    convert(root, work / "rec" / "train.rec", quiet)
    convert(root, work / "set.lmdb", quiet)
    rows = {
        "naive PIL folder": lambda w: naive_loader(root, w),
        "faceforge folder": lambda w: faceforge_loader("folder", root, w),
        "faceforge list": lambda w: faceforge_loader("list", work / "list.txt", w),
        "faceforge recordio": lambda w: faceforge_loader("recordio", work / "rec", w),
        "faceforge lmdb": lambda w: faceforge_loader("lmdb", work / "set.lmdb", w),
    }
    measured = min(images, measure)
    print(
        f"\nread + decode + augment + collate of {measured} of {images} 112x112 JPEGs, "
        f"batch {BATCH}, best of {repeats}",
        flush=True,
    )
    results = {
        name: [best_rates(loader(w), measured, repeats) for w in worker_counts]
        for name, loader in rows.items()
    }
    for column, title in enumerate(("images/s (wall clock)", "images per CPU second")):
        head = "".join(f"{f'{w} workers':>12}" for w in worker_counts)
        print(f"\n{title:22}{head}   vs naive (same workers)")
        naive = [rate[column] for rate in results["naive PIL folder"]]
        for name, rates in results.items():
            speeds = [rate[column] for rate in rates]
            ratios = " ".join(f"{s / n:4.1f}x" for s, n in zip(speeds, naive, strict=True))
            print(f"{name:22}" + "".join(f"{s:12.0f}" for s in speeds) + f"   {ratios}")


def label_cache(work: Path, images: int) -> None:
    rng = np.random.default_rng(1)
    pool = [face_like_jpeg(rng, 32, 75) for _ in range(256)]
    started = time.perf_counter()
    with RecordIOWriter(work / "big" / "train.rec") as writer:
        for i in range(images):
            writer.add(i // 50, pool[i % len(pool)])
    written = time.perf_counter() - started
    size = (work / "big" / "train.rec").stat().st_size / 1e6
    print(f"\nlabel cache: {images} images ({size:.0f} MB .rec) written in {written:.1f} s")
    for name in ("first open (index + header scan)", "second open (label cache)"):
        started = time.perf_counter()
        reader = DATA_SOURCES.get("recordio")(DataConfig(source="recordio", path=str(work / "big")))
        print(f"  {name:34} {time.perf_counter() - started:6.2f} s ({len(reader)} images)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="images of the speed set")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--measure", type=int, default=8_000, help="images timed per pass")
    parser.add_argument("--repeats", type=int, default=3, help="passes per figure (best)")
    parser.add_argument("--label-cache-images", type=int, default=200_000)
    args = parser.parse_args()
    if min(args.measure, args.images) < BATCH:
        parser.error(f"--measure and --images must be at least one batch ({BATCH} images)")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="faceforge-data-speed-") as tmp:
        speed_table(Path(tmp), args.images, args.workers, args.measure, args.repeats)
        label_cache(Path(tmp), args.label_cache_images)


if __name__ == "__main__":
    main()
