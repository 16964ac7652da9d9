"""Load figures of ``faceforge serve``: N concurrent clients over loopback with batching on
and off, then search latency over a gallery of synthetic identities (exact vs approximate).

    python bench/serve_load.py --clients 32 --requests 256 --identities 1000000

Prints requests/s, p50/p95/p99 latency, errors and server RSS per mode, then search p50/p99
and the approximate index's recall@1 against exact search.
"""

from __future__ import annotations

import argparse
import asyncio
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


def search_table(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    n, dim = args.identities, 512
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    faiss.normalize_L2(vectors)
    picked = rng.choice(n, args.queries, replace=False)
    noise = rng.standard_normal((args.queries, dim), dtype=np.float32)
    queries = (vectors[picked] + args.noise / np.sqrt(dim) * noise).astype(np.float32)
    faiss.normalize_L2(queries)
    exact = faiss.IndexFlatIP(dim)
    exact.add(vectors)
    hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 40
    start = time.perf_counter()
    hnsw.add(vectors)
    built = time.perf_counter() - start
    hnsw.hnsw.efSearch = args.ef_search
    print(f"\nsearch over {n:,} synthetic 512-d identities, {args.queries} queries, one at a time")
    print("index     p50 ms   p99 ms  recall@1")
    truth = None
    for label, index in (("exact", exact), ("hnsw", hnsw)):
        times, top = [], []
        for q in queries:
            start = time.perf_counter()
            _, ids = index.search(q[None], 1)
            times.append(time.perf_counter() - start)
            top.append(ids[0, 0])
        top = np.asarray(top)
        truth = top if truth is None else truth
        p50, p99 = np.percentile(times, [50, 99]) * 1000
        print(f"{label:<8} {p50:7.2f} {p99:8.2f} {np.mean(top == truth):9.3f}")
    print(f"(HNSW M=32 efConstruction=40 built in {built:.0f} s, efSearch={args.ef_search})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--arch", default="mobilefacenet")
    parser.add_argument("--identities", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.5, help="query noise norm")
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    if not args.skip_load:
        load_table(args)
    if args.identities:
        search_table(args)


if __name__ == "__main__":
    main()
