"""Load figures of ``faceforge serve``: N concurrent clients over loopback with batching on
and off, then search latency over a gallery of synthetic identities (exact vs approximate).

    python bench/serve_load.py --clients 32 --requests 256 --identities 1000000

Prints requests/s, p50/p95/p99 latency, errors and server RSS per mode, then, per gallery
index type, build time, memory, p50/p95/p99 search latency and recall@1 against exact search.
``--skip-load --identities 100000`` is a quick check of the search part alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import faiss
import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceforge.config import Config, ModelConfig
from faceforge.core.checkpoint import Checkpoint
from faceforge.data.image_io import encode_image
from faceforge.data.synthetic.faces import SyntheticFaces
from faceforge.inference.matching.index import IndexSettings, build_index
from tests.model_helpers import primed_model
from tests.serve.conftest import Server


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _load(url: str, images: list[bytes], clients: int, total: int) -> tuple[list, int]:
    latencies, errors = [], 0
    counter = iter(range(total))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            start = time.perf_counter()
            files = [("image", ("a.png", images[i % len(images)], "image/png"))]
            answer = await http.post(f"{url}/v1/embed", files=files)
            latencies.append(time.perf_counter() - start)
            errors += answer.status_code != 200

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return latencies, errors


def load_table(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp())
    checkpoint = folder / "model.pt"
    Checkpoint(
        config=Config(model=ModelConfig(backbone=args.arch, embedding_size=512)),
        backbone=primed_model(args.arch, embedding_size=512).state_dict(),
        metrics={"synthetic": {"best_threshold": 1.0}},
    ).save(checkpoint)
    faces = SyntheticFaces(seed=0)
    images = [encode_image(faces.render(i, 0), ".png") for i in range(16)]
    print(f"{args.clients} clients, {args.requests} embed requests, {args.arch} 512-d")
    print("mode        req/s    p50 ms   p95 ms   p99 ms  errors  RSS MiB")
    for label, batch in (("batch-1", 1), (f"batch-{args.max_batch}", args.max_batch)):
        server = Server(
            checkpoint,
            f"sqlite:///{folder / f'{batch}.db'}",
            "--aligned",
            "--max-batch",
            str(batch),
            "--max-wait-ms",
            str(args.max_wait_ms),
        )
        try:
            asyncio.run(_load(server.url, images, args.clients, args.clients))  # warm-up
            start = time.perf_counter()
            lat, errors = asyncio.run(_load(server.url, images, args.clients, args.requests))
            rate = len(lat) / (time.perf_counter() - start)
            p50, p95, p99 = np.percentile(lat, [50, 95, 99]) * 1000
            rss = _rss_mib(server.process.pid)
            print(
                f"{label:<10} {rate:6.1f} {p50:9.1f} {p95:8.1f} {p99:8.1f} {errors:7d} {rss:8.0f}"
            )
        finally:
            server.kill()


def synthetic_identities(
    count: int, queries: int, dim: int = 512, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` random unit vectors (enrolled people), and ``queries`` probes each at cosine
    0.5-0.7 to one of them (a second photo of an enrolled person) with the index of its own."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, dim), dtype=np.float32)
    faiss.normalize_L2(vectors)
    owners = rng.choice(count, queries, replace=False)
    own = vectors[owners]
    noise = rng.standard_normal((queries, dim), dtype=np.float32)
    noise -= (noise * own).sum(1, keepdims=True) * own  # orthogonal to the enrolled vector
    faiss.normalize_L2(noise)
    cosine = rng.uniform(0.5, 0.7, (queries, 1)).astype(np.float32)
    probes = cosine * own + np.sqrt(1 - cosine**2) * noise
    return vectors, probes.astype(np.float32), owners


def _timed_searches(index: faiss.Index, probes: np.ndarray, top_k: int) -> tuple[list, np.ndarray]:
    """Per-query latencies (one query per call, as a server request issues it) and top-1 ids."""
    times, top = [], []
    for probe in probes:
        start = time.perf_counter()
        _, ids = index.search(probe[None], top_k)
        times.append(time.perf_counter() - start)
        top.append(ids[0, 0])
    return times, np.asarray(top)


def search_table(args: argparse.Namespace) -> None:
    faiss.omp_set_num_threads(args.threads)
    vectors, probes, owners = synthetic_identities(args.identities, args.queries)
    ids = np.arange(len(vectors), dtype=np.int64)
    settings = IndexSettings(nlist=args.nlist, nprobe=args.nprobe, rerank=args.rerank)
    print(
        f"\nsearch over {len(vectors):,} synthetic 512-d identities; {args.queries} probes at "
        f"cosine 0.5-0.7 to their own, one per call, top-{args.top_k}, {args.threads} thread(s)"
    )
    print("index   build s  memory MiB  p50 ms  p95 ms  p99 ms  recall@1 vs exact")
    exact_top = None
    for kind in ["flat", *(k for k in args.indexes.split(",") if k != "flat")]:
        before, start = _rss_mib(os.getpid()), time.perf_counter()
        index = build_index(kind, vectors, ids, settings)
        built, memory = time.perf_counter() - start, _rss_mib(os.getpid()) - before
        times, top = _timed_searches(index, probes, args.top_k)
        exact_top = top if exact_top is None else exact_top
        p50, p95, p99 = np.percentile(times, [50, 95, 99]) * 1000
        recall = np.mean(top == exact_top)
        print(
            f"{kind:<6} {built:8.1f} {memory:11.0f} {p50:7.2f} {p95:7.2f} {p99:7.2f} {recall:9.3f}"
        )
        del index
    own = np.mean(exact_top == owners)
    print(f"(exact search ranks the probe's own identity first for {own:.3f} of probes;")
    print(f" ivf nlist={args.nlist or 'sqrt(N)'} nprobe={args.nprobe}, pq rerank={args.rerank})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--arch", default="mobilefacenet")
    parser.add_argument("--identities", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--indexes", default="flat,pq", help="gallery index types to compare")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="FAISS threads per search")
    parser.add_argument("--nlist", type=int, default=0)
    parser.add_argument("--nprobe", type=int, default=64)
    parser.add_argument("--rerank", type=int, default=8)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    if not args.skip_load:
        load_table(args)
    if args.identities:
        search_table(args)


if __name__ == "__main__":
    main()
