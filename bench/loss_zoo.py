"""Every head (and the triplet loss) on the demo's synthetic faces under one budget, as a table:
held-out verification accuracy, TAR at FAR=1e-3 and training images/s.

    python bench/loss_zoo.py                          # the quickstart budget (280 steps)
    python bench/loss_zoo.py --steps 60 --identities 50 --val-pairs 1200

Every row trains the quickstart recipe from the same seed with only ``head.type`` (or the
loss) changed, so rows differ only in the head. Figures depend on the machine: compare rows of
one run only; a small budget ranks heads by how fast they start, not where they end.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from faceforge.data.synthetic import synthetic_verification_set
from faceforge.train.main import fit, setup
from faceforge.train.recipe import load_recipe

ROWS = {
    "arcface": ["head.type=arcface"],
    "cosface": ["head.type=cosface", "head.margin=0.35"],
    "adaface": ["head.type=adaface", "head.margin=0.4"],
    "curricularface": ["head.type=curricularface"],
    "magface": ["head.type=magface"],
    "subcenter_arcface": ["head.type=subcenter_arcface"],
    "elasticface": ["head.type=elasticface"],
    "elasticface+": ["head.type=elasticface", "head.elastic_plus=true"],
    "arcface + triplet": ["loss.triplet_weight=1.0", "data.sampler=pk"],
}


def run_row(args: argparse.Namespace, overrides: list[str], output: Path) -> tuple[float, ...]:
    cfg = load_recipe(
        "quickstart",
        [
            f"train.max_steps={args.steps}",
            f"optim.warmup_steps={min(30, args.steps // 5)}",
            f"data.synthetic.num_identities={args.identities}",
            f"data.synthetic.val_pairs={args.val_pairs}",
            "train.progress=false",
            "train.tensorboard=false",
            f"train.output_dir={output}",
            *overrides,
        ],
    )
    vset = synthetic_verification_set(cfg.data.synthetic)
    run, state = setup(cfg, log=lambda _: None)
    summary = fit(run, state, [vset])
    result = next(iter(summary.results.values()))
    return result.accuracy, result.tar_at_far[1e-3], summary.images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=280, help="training steps per head")
    parser.add_argument("--identities", type=int, default=200, help="training identities")
    parser.add_argument("--val-pairs", type=int, default=6000, help="held-out pairs (x20)")
    parser.add_argument("--only", nargs="*", default=list(ROWS), choices=list(ROWS))
    args = parser.parse_args()
    table = Table(title=f"heads on synthetic faces: {args.steps} steps, {args.identities} ids")
    for column in ("head", "accuracy", "TAR@FAR=1e-3", "images/s"):
        table.add_column(column, justify="left" if column == "head" else "right")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.only:
            accuracy, tar, speed = run_row(args, ROWS[name], Path(folder) / name)
            table.add_row(name, f"{accuracy:.4f}", f"{tar:.4f}", f"{speed:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
