"""Evaluation speed: embedding throughput, the metric computation, and a MegaFace-style search.

Prints images/s of faceforge's ``embed_images`` (BatchNorm folded, channels_last, bf16 autocast
on CPUs with native bf16, micro-batches) against a plain eager fp32 loop over the same
randomly initialised backbones and images, the time of the accuracy part of a 6000-pair
evaluation, and optionally a MegaFace-style run over random embeddings checked against brute
force on a subsample of probes.

    python bench/eval_speed.py --images 256 --megaface-distractors 100000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from faceforge.core.batch_embed import BatchEmbedder
from faceforge.evaluation.identification import megaface
from faceforge.evaluation.verification import evaluate_embeddings
from faceforge.models import build_backbone


def plain_loop(model: torch.nn.Module, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The reference: insightface's eval loop, eager fp32, NCHW."""
    out = []
    with torch.no_grad():
        for lo in range(0, len(images), batch_size):
            x = torch.from_numpy(images[lo : lo + batch_size]).permute(0, 3, 1, 2).float()
            out.append(model(((x / 255) - 0.5) / 0.5).numpy())
    return np.concatenate(out)


def best_rate(fn, count: int, repeats: int) -> float:
    """Images per second of the fastest of ``repeats`` runs (the machine is shared)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return count / best


def bench_embedding(name: str, images: np.ndarray, batch_size: int, repeats: int) -> None:
    torch.manual_seed(0)
    model = build_backbone(name).eval()
    plain = plain_loop(model, images[:16], batch_size)  # warm-up
    rows = {"plain eager fp32": lambda: plain_loop(model, images, batch_size)}
    for precision in ("fp32", "auto"):
        embedder = BatchEmbedder(model, precision=precision)
        embedder.embed(images[:16])  # warm-up
        label = f"faceforge {precision} ({embedder.autocast or torch.float32})"
        rows[label] = lambda e=embedder: [
            e.embed(images[lo : lo + batch_size]) for lo in range(0, len(images), batch_size)
        ]
        fast = embedder.embed(images[:16])
        cos = (fast * plain).sum(1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(plain, axis=1)
        print(f"  {name} {label}: min cosine vs plain fp32 {cos.min():.6f}")
    for label, fn in rows.items():
        print(f"  {name:14s} {label:36s} {best_rate(fn, len(images), repeats):8.1f} img/s")


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
    parser.add_argument("--images", type=int, default=512, help="images per throughput run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--megaface-distractors", type=int, default=0)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--check-identities", type=int, default=10)
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    images = np.random.default_rng(0).integers(0, 256, (args.images, 112, 112, 3), np.uint8)
    print("embedding throughput:")
    for name in args.models:
        bench_embedding(name, images, args.batch_size, args.repeats)
    print("verification metrics:")
    bench_metrics(args.pairs, args.repeats)
    if args.megaface_distractors:
        print("MegaFace-style identification (random embeddings):")
        bench_megaface(args.megaface_distractors, args.dim, args.check_identities)


if __name__ == "__main__":
    main()
