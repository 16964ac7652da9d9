"""CPU time of ``verify`` on two real photos with and without silent anti-spoofing.

Runs FacePipeline.verify (MTCNN detection, alignment, embedding of both photos) with and
without the two shipped MiniFASNet models judging each face, and prints the CPU seconds per
verify (best of ``--repeats``, process CPU time so other load matters less) and the overhead
of liveness as a percentage. The target is at most 20% with an iresnet50 recognition model.

    python bench/liveness_speed.py                      # iresnet50, 5 repeats
    python bench/liveness_speed.py --arch mobilefacenet --repeats 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from faceforge.allocator import retain_freed_memory
from faceforge.core.embedder import Embedder
from faceforge.data.image_io import read_image
from faceforge.inference.detection.mtcnn import MTCNN
from faceforge.inference.liveness import LivenessChecker
from faceforge.inference.pipeline import FacePipeline
from faceforge.models import build_backbone

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PHOTOS = ("deepface_tests/id01/img27.jpg", "deepface_tests/id02/img47.jpg")


def cpu_seconds(pipeline: FacePipeline, images: list, repeats: int) -> float:
    """Smallest process CPU time of one verify over ``repeats`` runs after a warm-up."""
    pipeline.verify(*images)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        pipeline.verify(*images)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="iresnet50", help="recognition backbone")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time)")
    args = parser.parse_args()
    retain_freed_memory()  # as the faceforge command does
    torch.set_num_threads(args.threads)
    images = [read_image(SHARED_DATA / "photos" / name) for name in PHOTOS]
    embedder = Embedder.from_backbone(build_backbone(args.arch).eval(), device="cpu")
    detector = MTCNN.from_weights(device="cpu")
    plain = FacePipeline(embedder, detector, threshold=0.5)
    guarded = FacePipeline(embedder, detector, threshold=0.5, liveness=LivenessChecker.load())
    base = cpu_seconds(plain, images, args.repeats)
    with_liveness = cpu_seconds(guarded, images, args.repeats)
    print(f"verify ({args.arch}, MTCNN, 2 photos), CPU seconds, best of {args.repeats}:")
    print(f"  without liveness {base:.3f}")
    print(f"  with liveness    {with_liveness:.3f}")
    print(f"  overhead         {100 * (with_liveness / base - 1):.1f}% (target <= 20%)")


if __name__ == "__main__":
    main()
