"""``faceforge train`` and ``faceforge demo``."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from faceforge.cli.arguments import add_progress_option, ranged
from faceforge.errors import ConfigError

if TYPE_CHECKING:
    from faceforge.config import Config

OVERRIDE_HELP = "dotted config overrides, e.g. optim.lr=0.05 train.max_steps=100"


def recipe_overrides(args: argparse.Namespace) -> list[str]:
    """The command's dotted overrides, with ``train.progress=false`` for ``--no-progress``."""
    return [*args.overrides, *(["train.progress=false"] if args.no_progress else [])]


def _train(args: argparse.Namespace) -> int:
    from faceforge.train.distributed import Distributed
    from faceforge.train.main import train
    from faceforge.train.recipe import load_recipe, resumed_recipe

    if args.config is None and args.resume not in (None, "auto"):
        cfg = resumed_recipe(args.resume, recipe_overrides(args))
    else:
        cfg = load_recipe(args.config, recipe_overrides(args))
    summary = train(cfg, resume=args.resume, overwrite=args.overwrite)
    if not Distributed.from_env().is_main:
        return 0
    print(
        f"done: {summary.steps} steps, {summary.images_per_second:.1f} images/s, "
        f"final loss {summary.final_loss:.4f}; checkpoints in {summary.output_dir}"
    )
    for name, result in summary.results.items():
        print(f"{name}: accuracy {100 * result.accuracy:.2f} +- {100 * result.accuracy_std:.2f}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from faceforge.train.demo import print_report, run_demo
    from faceforge.train.recipe import load_recipe

    cfg = load_recipe(args.config, recipe_overrides(args))
    report = run_demo(cfg, args.minutes)
    print_report(report, cfg)
    return 0


def _dataset_classes(cfg: Config) -> int:
    """The identities of the recipe's training data, read from ``data.path`` (a RecordIO
    ``property`` file, LMDB metadata, a folder's identity folders), for ``plan``."""
    from faceforge.data.sources import build_reader

    if cfg.data.source == "synthetic":
        return cfg.data.synthetic.num_identities
    if not cfg.data.path or not Path(cfg.data.path).exists():
        raise ConfigError(
            f"give --classes, or data.path=DATASET to count them (data.path "
            f"{cfg.data.path!r} does not exist): the identities of the training set (93431 "
            "for MS1MV3, 360232 for Glint360K, 10572 for CASIA-WebFace)"
        )
    return build_reader(cfg.data).num_classes


def _plan(args: argparse.Namespace) -> int:
    import warnings

    from faceforge.train.plan import plan_memory
    from faceforge.train.recipe import load_recipe

    cfg = load_recipe(args.config, args.overrides)
    classes = args.classes or _dataset_classes(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16 is measured as bf16 on this CPU: same size
        plan = plan_memory(cfg, args.gpus, classes)
    print(
        f"{cfg.model.backbone}, {classes:,} classes, {args.gpus} GPU(s) x {plan.batch_per_gpu} "
        f"images, {cfg.train.amp}, partial_fc={cfg.head.partial_fc} "
        f"(sample rate {cfg.head.sample_rate:g})"
    )
    for name, size in plan.rows():
        print(f"  {name:<58} {size / 2**30:8.2f} GiB")
    return 0


def config_keys_help() -> str:
    """Every config key with its type, default and documentation (the sections' field docs)."""
    from faceforge.config import config_keys

    lines = ["config keys (YAML sections, or dotted overrides such as optim.lr=0.05):"]
    for key in config_keys():
        lines.append(f"  {key.key} ({key.type}, default {key.default!r})")
        lines += textwrap.wrap(key.doc, 94, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a face recognition model from a YAML recipe",
        description="Train a backbone + margin head. Example: "
        "faceforge train --config configs/casia_mobilefacenet_arcface.yaml optim.lr=0.05",
        epilog=config_keys_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--config", help="YAML file or shipped recipe name (e.g. quickstart)")
    train.add_argument(
        "--resume",
        help="checkpoint (last.pt) to continue exactly from, in its folder with the recipe it "
        "was trained with unless --config is given; or 'auto': train.output_dir's last.pt if "
        "it exists (for torchrun --max-restarts); overrides given with it (lr, steps, "
        "evaluation, output) apply, architecture changes are refused",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="write into train.output_dir even if it holds a run (default: a new numbered "
        "folder, e.g. runs/quickstart-2)",
    )
    add_progress_option(train)
    train.add_argument("overrides", nargs="*", help=OVERRIDE_HELP)
    train.set_defaults(func=_train)

    demo = subparsers.add_parser(
        "demo",
        help="train the quickstart model on synthetic faces and print a report (no downloads)",
    )
    demo.add_argument("--config", default="quickstart", help="recipe (default: quickstart)")
    demo.add_argument(
        "--minutes",
        type=ranged(float, 0),
        default=10.0,
        help="time budget: the demo measures this machine and trains as many of the recipe's "
        "steps as fit (default 10; 0 runs the recipe's steps whatever they take)",
    )
    add_progress_option(demo)
    demo.add_argument("overrides", nargs="*", help=OVERRIDE_HELP)
    demo.set_defaults(func=_demo)

    plan = subparsers.add_parser(
        "plan",
        help="estimate the memory each GPU needs for a recipe",
        description="Per-GPU memory of backbone (weights, gradients, momentum), activations "
        "(measured on this CPU at the recipe's precision), classifier shard and logits. "
        "Example: faceforge plan --config ms1mv3_iresnet50_arcface_pfc --gpus 8 --classes 93431",
    )
    plan.add_argument("--config", required=True, help="YAML file or shipped recipe name")
    plan.add_argument(
        "--gpus", type=ranged(int, 1), default=1, help="processes of the torchrun job"
    )
    plan.add_argument(
        "--classes", type=ranged(int, 1), help="identities (default: the synthetic count)"
    )
    plan.add_argument("overrides", nargs="*", help=OVERRIDE_HELP)
    plan.set_defaults(func=_plan)
