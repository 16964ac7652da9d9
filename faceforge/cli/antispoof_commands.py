"""Train your own anti-spoofing model and measure one: ``faceforge liveness train`` and
``faceforge eval liveness`` (APCER, BPCER, ACER, HTER and APCER at fixed BPCER).

Both read a folder with ``live/`` and ``spoof/`` (or ``spoof/<attack type>/``) sub-folders:
of photos, whose faces ``--detector`` finds and crops as the checker does, or of crops already
cut at the model's face-box scale. Handlers only gather inputs and print: the work is done by
:mod:`faceforge.train.antispoof` and :mod:`faceforge.evaluation.pad`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from faceforge.cli.arguments import ranged
from faceforge.cli.model_commands import DETECTOR_SPECS
from faceforge.cli.outputs import add_json_option, output_folder, write_json

if TYPE_CHECKING:
    from faceforge.evaluation.pad import PadReport

FOLDER_HELP = "folder with live/ and spoof/ (or spoof/<attack type>/) sub-folders"


def _cropper(args: argparse.Namespace, scale: float, size: int):
    """``--detector``'s face cropper at the model's scale and size, or None (crops given)."""
    if args.detector is None:
        return None
    from faceforge.inference.detection.registry import build_detector
    from faceforge.inference.liveness import face_cropper

    return face_cropper(build_detector(args.detector), scale, (size, size))


def _read(args: argparse.Namespace, folder: str, scale: float, size: int):
    from faceforge.train.antispoof import read_spoof_folder

    data = read_spoof_folder(folder, size, _cropper(args, scale, size))
    if data.left_out:
        print(f"{folder}: left out {len(data.left_out)} photos without a detected face")
    return data


def _add_detector_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detector",
        metavar="SPEC",
        help=f"the folders hold photos: find each face with this detector ({DETECTOR_SPECS}) "
        "and crop it at the model's face-box scale, as the checker does at inference "
        "(default: the folders hold crops already cut at that scale)",
    )


def _print_report(name: str, report: PadReport) -> None:
    types = ", ".join(f"{kind} {100 * v:.2f}" for kind, v in report.apcer_per_type.items())
    roc = ", ".join(f"APCER@BPCER={b:g} {100 * a:.2f}" for b, a in report.apcer_at_bpcer.items())
    print(
        f"{name}: APCER {100 * report.apcer:.2f} ({types}), BPCER {100 * report.bpcer:.2f}, "
        f"ACER {100 * report.acer:.2f}, HTER {100 * report.hter:.2f} at threshold "
        f"{report.threshold:g}; {roc}"
    )


def _train(args: argparse.Namespace) -> int:
    from faceforge.train.antispoof import (
        evaluate_antispoof,
        load_antispoof_config,
        save_antispoof,
        train_antispoof,
    )

    cfg = load_antispoof_config(args.config, args.overrides)
    data = _read(args, args.data, cfg.scale, cfg.input_size)
    held_out = _read(args, args.eval_data, cfg.scale, cfg.input_size) if args.eval_data else None
    print(f"training {cfg.arch} on {len(data.labels)} crops ({', '.join(data.classes)})")
    model = train_antispoof(data, cfg)
    print(f"wrote {save_antispoof(model, cfg, args.output)}")
    if held_out is not None:
        _print_report(args.eval_data, evaluate_antispoof(model, held_out))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from faceforge.evaluation.pad import pad_report
    from faceforge.inference.liveness import load_liveness_model
    from faceforge.train.antispoof import live_scores

    model = load_liveness_model(args.liveness_model)
    data = _read(args, args.data, model.scale, model.size[0])
    scores = live_scores(model.network, data.images)
    types = [data.classes[label] for label in data.labels]
    report = pad_report(scores, data.labels == 1, args.liveness_threshold, types)
    _print_report(args.data, report)
    write_json(args.json, report.as_dict())
    return 0


def register_train(tasks: argparse._SubParsersAction) -> None:
    """Add ``train`` to ``faceforge liveness``."""
    p = tasks.add_parser(
        "train",
        help="train a MiniFASNet anti-spoofing model on a live/ + spoof/ folder",
        description="Train the recipe (cross-entropy plus the Fourier-spectrum auxiliary "
        "loss) and write OUTPUT/<scale>_<H>x<W>_MiniFASNet<kind>.pth, the file --liveness-model "
        "takes. Example: faceforge liveness train --data crops/ -o runs/pad steps=500 "
        "synthesize=true",
    )
    p.add_argument("--data", required=True, help=FOLDER_HELP)
    p.add_argument(
        "--config",
        default="minifasnet_v2",
        help="YAML recipe or a name in faceforge/configs/antispoof (default minifasnet_v2)",
    )
    p.add_argument(
        "-o", "--output", type=output_folder, required=True, help="folder to write the model to"
    )
    p.add_argument("--eval-data", metavar="FOLDER", help=f"held-out {FOLDER_HELP}: PAD metrics")
    _add_detector_option(p)
    p.add_argument("overrides", nargs="*", help="recipe overrides, e.g. steps=500 synthesize=true")
    p.set_defaults(func=_train, command="liveness train")


def register_eval(tasks: argparse._SubParsersAction) -> None:
    """Add ``liveness`` to ``faceforge eval``."""
    p = tasks.add_parser(
        "liveness",
        help="presentation attack detection metrics: APCER, BPCER, ACER, HTER",
        description="Score every crop of the folder with one anti-spoofing model and print "
        "APCER (worst attack type), BPCER, ACER, HTER at --liveness-threshold and APCER at fixed "
        "BPCER. Example: faceforge eval liveness --liveness-model runs/pad/"
        "2_7_80x80_MiniFASNetV2.pth --data test_crops/",
    )
    p.add_argument("--liveness-model", required=True, metavar="PTH", help="MiniFASNet file")
    p.add_argument("--data", required=True, help=FOLDER_HELP)
    _add_detector_option(p)
    p.add_argument(
        "--liveness-threshold",
        type=ranged(float, 0, 1),
        default=0.5,
        help="live when the live probability is at least this (default 0.5)",
    )
    add_json_option(p)
    p.set_defaults(func=_eval, command="eval liveness")
