"""Inference speed: MTCNN detection ms/image and embedding images/s on this machine.

Embedding compares, on the same model and images, faceforge's default path
(the :class:`faceforge.core.Embedder`'s ``torch`` backend: BatchNorm folded, channels-last,
bf16 autocast on CPUs with native bf16), plain eager PyTorch (fp32, NCHW) and the embedder's
``onnxruntime`` backend (fp32, default session options, as many threads as PyTorch) and its
``onnxruntime-int8`` backend (static int8, timed even where its self-check would fall back to
fp32), at the given batch size, and the torch backend under ``torch.compile`` (its one-time
compile is timed separately). The "agree" column is
the smallest cosine similarity between that path's embeddings and eager fp32's; it is only
meaningful with trained weights (``--checkpoint``): untrained networks map faces alike.

    python bench/infer_speed.py                          # full run
    python bench/infer_speed.py --images 64 --repeats 1  # quick check

Figures depend on the CPU and on other load (the 1-minute load average is printed). Like
the ``faceforge`` command, the benchmark keeps freed memory for the next batch
(:mod:`faceforge.allocator`); ``--glibc-default`` times glibc's own behaviour.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from faceforge.allocator import retain_freed_memory
from faceforge.core.embedder import Embedder, load_embedder
from faceforge.core.model_source import load_model
from faceforge.core.preprocess import Preprocess
from faceforge.inference.export import export_onnx, synthetic_faces
from faceforge.models import build_backbone

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def best_time(run: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` timed runs after one warm-up run (seconds)."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def detection_images() -> dict[str, np.ndarray]:
    """A 250x250 and a 640x480 photo: real ones from ../shared/data when present."""
    from faceforge.data.image_io import read_image

    lfw = SHARED_DATA / "lfw-view1" / "images" / "AJ_Cook" / "AJ_Cook_0001.jpg"
    photo = SHARED_DATA / "photos" / "deepface_tests" / "id05" / "img62.jpg"
    if lfw.is_file() and photo.is_file():
        small, large = read_image(lfw), read_image(photo)
    else:
        face = synthetic_faces(1)[0]
        small = cv2.resize(face, (250, 250))
        large = np.full((480, 640, 3), 110, np.uint8)
        large[120:370, 200:450] = small
    return {"250x250": small, "640x480": cv2.resize(large, (640, 480))}


def bench_detection(repeats: int) -> None:
    from faceforge.inference.detection.mtcnn import MTCNN

    detector = MTCNN.from_weights(device="cpu")
    print("MTCNN detection (CPU)")
    for name, image in detection_images().items():
        seconds = best_time(lambda image=image: detector.detect(image), repeats)
        print(f"  {name:>8}: {seconds * 1000:7.1f} ms/image")


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bench_embedding(
    name: str, model: torch.nn.Module, faces: np.ndarray, batch: int, repeats: int
) -> None:
    preprocess = Preprocess()
    model = model.eval()

    def eager() -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(faces), batch):
                x = torch.from_numpy(preprocess.normalize(faces[start : start + batch]))
                out.append(model(x).numpy())
        return np.concatenate(out)

    faceforge = Embedder.from_backbone(model, preprocess, device="cpu", batch_size=batch)
    start = time.perf_counter()  # the embedder's first (size-checking) pass compiles
    compiled = Embedder.from_backbone(
        model, preprocess, device="cpu", batch_size=batch, compile=True
    )
    print(f"{name}: {len(faces)} images, batch {batch}; faceforge = {faceforge.backend!r}")
    print(f"  torch.compile: {time.perf_counter() - start:.1f} s once (then cached on disk)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.onnx"
        export_onnx(model, preprocess, path, check_images=faces[:2])
        threads = torch.get_num_threads()
        ort = load_embedder(path, batch_size=batch, threads=threads)
        int8 = load_embedder(path, batch_size=batch, threads=threads, precision="int8")
        int8.backend.fall_back_to_fp32 = lambda: None  # time the int8 graph whatever it agrees
        int8.backend._active = int8.backend.int8
        paths = {
            "faceforge": lambda: faceforge.embed(faces),
            "faceforge compiled": lambda: compiled.embed(faces),
            "eager fp32": lambda: unit(eager()),
            "onnxruntime fp32": lambda: ort.embed(faces),
            "onnxruntime int8": lambda: int8.embed(faces),
        }
        reference = paths["eager fp32"]()
        rates = {label: len(faces) / best_time(run, repeats) for label, run in paths.items()}
        for label, run in paths.items():
            cosines = (run() * reference).sum(axis=1)
            agree = f"{cosines.min():.5f} (mean {cosines.mean():.5f})"
            ratio = rates[label] / rates["onnxruntime fp32"]
            print(
                f"  {label:>18}: {rates[label]:8.1f} images/s  ({ratio:4.2f}x ORT)  agree {agree}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="faces embedded per timing")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["mobilefacenet", "iresnet50"])
    parser.add_argument("--checkpoint", help="faceforge checkpoint to use instead of --models")
    parser.add_argument("--skip-detection", action="store_true")
    parser.add_argument(
        "--threads", type=int, help="threads for PyTorch and ONNX Runtime (default: torch's)"
    )
    parser.add_argument(
        "--glibc-default",
        action="store_true",
        help="leave glibc's malloc thresholds as they are (the faceforge command raises them)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    retained = not args.glibc_default and retain_freed_memory()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.2f}, glibc malloc thresholds "
        f"{'raised (faceforge.allocator)' if retained else 'as the environment sets them'}"
    )
    if not args.skip_detection:
        bench_detection(args.repeats)
    faces = synthetic_faces(args.images)
    if args.checkpoint:
        loaded = load_model(args.checkpoint)
        models = {loaded.arch: loaded.backbone}
    else:
        torch.manual_seed(0)
        models = {name: build_backbone(name) for name in args.models}
    for name, model in models.items():
        bench_embedding(name, model, faces, args.batch, args.repeats)


if __name__ == "__main__":
    main()
