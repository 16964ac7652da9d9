"""Size and speed of every registered backbone: parameters, GMACs, train and embed images/s.

    python bench/backbones.py                               # every backbone, CPU, short runs
    python bench/backbones.py --backbones mobilefacenet resnet50 --device cuda --batch-size 128

Training rows run faceforge's real training step (ArcFace head, loss, backward, SGD; see
bench/train_speed.py) on synthetic faces; embedding rows run the
:class:`~faceforge.core.embedder.Embedder` (batch-norm folding, channels-last, automatic
precision) on 112x112 synthetic faces. Figures depend on the machine and its load: compare
rows of one run only.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from infer_speed import best_time
from rich.console import Console
from rich.table import Table
from train_speed import time_training

from faceforge.allocator import retain_freed_memory
from faceforge.core.embedder import Embedder
from faceforge.inference.export import synthetic_faces
from faceforge.models import backbone_names, build_backbone, count_macs, count_parameters


def embed_rate(name: str, args: argparse.Namespace) -> float:
    """Images/s of the Embedder on ``args.batch_size`` faces (best of ``args.steps`` runs)."""
    embedder = Embedder.from_backbone(build_backbone(name).eval(), device=args.device)
    faces = synthetic_faces(args.batch_size)
    return args.batch_size / best_time(lambda: embedder.embed(faces), args.steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=backbone_names())
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    retain_freed_memory()  # as the faceforge command does

    table = Table(title=f"backbones on {args.device}, batch {args.batch_size}, 112x112")
    for column in ("backbone", "params (M)", "GMACs", "train img/s", "embed img/s"):
        table.add_column(column, justify="left" if column == "backbone" else "right")
    overrides = [f"train.device={args.device}"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backbones:
            model = build_backbone(name)
            train = time_training(args, overrides, Path(tmp) / name, backbone=name)
            table.add_row(
                name,
                f"{count_parameters(model) / 1e6:.2f}",
                f"{count_macs(model) / 1e9:.3f}",
                f"{train:.1f}",
                f"{embed_rate(name, args):.1f}",
            )
    Console().print(table)


if __name__ == "__main__":
    main()
