"""Evaluation speed: LFW-View-2-sized ``faceforge eval --pairs`` runs, the metric computation,
and a MegaFace-style search.

The pairs run has LFW View 2's shape: 6,000 pairs (3,000 same, 3,000 different) over 7,701
distinct 112x112 JPEG files (synthetic faces, written once to ``--data``), flip TTA on. For
each backbone it prints the batch embedder's own images/s on the same images already in
memory (both views), and the end-to-end images/s of the evaluation (distinct images per
second: decoding, embedding and scoring), which decodes and embeds every distinct image once
with decoding overlapped; the ratio shows what decoding and pairing cost on top of the
network. Then the time of the accuracy part of a 6,000-pair evaluation, and optionally a
MegaFace-style run over random embeddings checked against brute force on a subsample.

    python bench/eval_speed.py                                  # mobilefacenet, iresnet50
    python bench/eval_speed.py --models mobilefacenet --megaface-distractors 100000
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from faceforge.allocator import retain_freed_memory
from faceforge.core.embedder import Embedder
from faceforge.data.images import load_images
from faceforge.evaluation.identification import megaface
from faceforge.evaluation.pairs import read_lfw_pairs
from faceforge.evaluation.run import evaluate_pair_list
from faceforge.evaluation.verification import evaluate_embeddings
from faceforge.models import build_backbone

#: LFW View 2: 7,701 distinct images in 6,000 pairs; here 2,567 people x 3 photos
PEOPLE, PHOTOS, PAIRS, FOLDS = 2_567, 3, 6_000, 10


def write_view2_sized_set(root: Path) -> Path:
    """``root/images/<name>/<name>_000k.jpg`` and ``root/pairs.txt`` of LFW View 2's size
    (kept and reused when already there); returns the pairs file."""
    from faceforge.data.synthetic import SyntheticFaces

    pairs_file = root / "pairs.txt"
    header = f"{FOLDS}\t{PAIRS // FOLDS // 2}"
    if pairs_file.is_file() and pairs_file.read_text().startswith(header + "\n"):
        return pairs_file
    faces = SyntheticFaces(seed=11)
    for person in range(PEOPLE):
        folder = root / "images" / f"P{person:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for photo in range(1, PHOTOS + 1):
            image = faces.render(person, photo)[:, :, ::-1]
            cv2.imwrite(str(folder / f"P{person:04d}_{photo:04d}.jpg"), image)
    extra = PAIRS // 2 - PEOPLE  # same pairs beyond one per person, different likewise
    same = [f"P{i:04d}\t1\t2" for i in range(PEOPLE)]
    same += [f"P{i:04d}\t1\t3" for i in range(extra)]
    different = [f"P{i:04d}\t3\tP{(i + 1) % PEOPLE:04d}\t3" for i in range(PEOPLE)]
    different += [f"P{i:04d}\t2\tP{(i + 7) % PEOPLE:04d}\t1" for i in range(extra)]
    half = PAIRS // FOLDS // 2  # each fold: its same pairs, then its different ones, as View 2
    lines = [header]
    for k in range(FOLDS):
        lines += same[k * half : (k + 1) * half] + different[k * half : (k + 1) * half]
    pairs_file.write_text("\n".join(lines) + "\n")
    return pairs_file


def bench_pairs(name: str, root: Path, batch_size: int) -> None:
    pairs = read_lfw_pairs(write_view2_sized_set(root), root / "images")
    files, _ = pairs.unique()
    torch.manual_seed(0)
    embedder = Embedder.from_backbone(build_backbone(name).eval(), batch_size=batch_size)
    images = load_images(files, [str(f) for f in files])
    embedder.views(images[:batch_size], flip=True)  # warm-up
    started = time.perf_counter()
    embedder.views(images, flip=True)
    in_memory = len(files) / (time.perf_counter() - started)
    started = time.perf_counter()
    result = evaluate_pair_list(embedder, "view2", pairs, flip=True)
    end_to_end = len(files) / (time.perf_counter() - started)
    print(
        f"  {name:14s} {len(pairs)} pairs, {len(files)} images, flip, "
        f"{embedder.backend.precision}: embedder {in_memory:7.1f} images/s in memory, "
        f"eval --pairs {end_to_end:7.1f} images/s end to end "
        f"({end_to_end / in_memory:.2f}x; accuracy {100 * result.accuracy:.2f})"
    )


def bench_metrics(pairs: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    issame = np.arange(pairs) % 2 == 0
    emb = rng.normal(size=(2 * pairs, 512)).astype(np.float32)
    emb[1::2][issame] += 1.5 * emb[0::2][issame]
    flipped = emb + 0.1 * rng.normal(size=emb.shape).astype(np.float32)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = evaluate_embeddings(emb, issame, flipped=flipped)
        seconds.append(time.perf_counter() - started)
    print(
        f"  accuracy part of a {pairs}-pair evaluation (flip, 512-d, 10 folds, VR@FAR, ROC): "
        f"{min(seconds):.3f} s (accuracy {100 * result.accuracy:.2f})"
    )


def _random_people(ids: int, per_id: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(ids), per_id)
    return rng.normal(size=(ids, dim))[labels] + 2.0 * rng.normal(size=(len(labels), dim)), labels


def _distractor_blocks(count: int, dim: int, block: int = 50_000):
    for lo in range(0, count, block):
        rng = np.random.default_rng([1, lo])
        yield rng.normal(size=(min(block, count - lo), dim)).astype(np.float32)


def bench_megaface(count: int, dim: int, check_identities: int) -> None:
    probes, labels = _random_people(100, 5, dim, seed=0)
    started = time.perf_counter()
    result = megaface(probes, labels, _distractor_blocks(count, dim), num_distractors=count)
    seconds = time.perf_counter() - started
    print(
        f"  {result.num_probes} probes, {count} distractors ({dim}-d): rank-1 "
        f"{100 * result.rank_accuracy[1]:.2f}, TAR@FAR=1e-6 {100 * result.tar_at_far[1e-6]:.2f} "
        f"in {seconds:.1f} s"
    )
    keep = labels < check_identities
    sub = megaface(
        probes[keep], labels[keep], _distractor_blocks(count, dim), num_distractors=count
    )
    p = probes[keep] / np.linalg.norm(probes[keep], axis=1, keepdims=True)
    best = np.full(len(p), -np.inf)
    for block in _distractor_blocks(count, dim):
        d = block / np.linalg.norm(block, axis=1, keepdims=True)
        best = np.maximum(best, (p @ d.T).max(1))
    same = labels[keep][:, None] == labels[keep][None, :]
    np.fill_diagonal(same, False)
    i, j = np.nonzero(same)
    brute = float(np.mean(np.einsum("ij,ij->i", p[i], p[j]) > best[i]))
    print(
        f"  subsample of {len(p)} probes: rank-1 {100 * sub.rank_accuracy[1]:.4f} "
        f"(FAISS, chunked) vs {100 * brute:.4f} (brute-force numpy)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilefacenet", "iresnet50"])
    parser.add_argument(
        "--data", default="runs/bench_view2", help="folder for the synthetic View-2-sized set"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--megaface-distractors", type=int, default=0)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--check-identities", type=int, default=10)
    args = parser.parse_args()
    retain_freed_memory()  # as the faceforge command does

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print("LFW-View-2-sized evaluation (CPU):")
    for name in args.models:
        bench_pairs(name, Path(args.data), args.batch_size)
    print("verification metrics:")
    bench_metrics(PAIRS, args.repeats)
    if args.megaface_distractors:
        print("MegaFace-style identification (random embeddings):")
        bench_megaface(args.megaface_distractors, args.dim, args.check_identities)


if __name__ == "__main__":
    main()
