"""``faceforge import`` (weights of other projects -> checkpoint) and ``faceforge models``
(the backbones and the pretrained entries).

No Python is needed to use published weights: ``import`` reads the file safely, unwraps the
usual containers, matches keys by name, then by order and shape, and records the
preprocessing contract; ``--pretrained NAME`` brings architecture, contract and the
published hash from the pretrained registry.
"""

from __future__ import annotations

import argparse

from faceforge.cli.model_commands import add_weights_options, weights_source
from faceforge.cli.outputs import output_file
from faceforge.errors import ConfigError


def _import(args: argparse.Namespace) -> int:
    from faceforge.core.embedder import load_embedder
    from faceforge.core.model_source import import_weights

    source = weights_source(args, args.weights)
    if source.kind not in ("weights", "pretrained"):
        raise ConfigError("import needs --arch ARCH or --pretrained NAME (see faceforge models)")
    model = import_weights(source, args.output)
    embedder = load_embedder(args.output, device="cpu", precision="fp32")
    contract = embedder.preprocess
    size = "x".join(map(str, embedder.input_size))
    print(
        f"wrote {args.output}: {model.arch}, {embedder.embedding_size}-d, {size} "
        f"{contract.color}, mean {_numbers(contract.mean)}, std {_numbers(contract.std)}, "
        f"template {contract.template}"
    )
    return 0


def _numbers(values: tuple[float, ...]) -> str:
    return "/".join(f"{v:.4g}" for v in values)


def _models(args: argparse.Namespace) -> int:
    """Backbone names with their one-line description, then every pretrained entry."""
    from faceforge.core.pretrained import PRETRAINED, pretrained_weights
    from faceforge.models.registry import BACKBONES

    print("backbones (faceforge train model.backbone=NAME, import --arch NAME):")
    for name in BACKBONES.names():
        summary = (BACKBONES.get(name).__doc__ or "").strip().split("\n\n")[0]
        print(f"  {name:24s} {' '.join(summary.split())}")
    print("pretrained weights (faceforge import --pretrained NAME FILE OUT; nothing downloaded):")
    for name in PRETRAINED.names():
        entry = pretrained_weights(name)
        pre = entry.preprocess
        size = "x".join(map(str, pre.input_size))
        figures = ", ".join(f"{k} {v:g}" for k, v in entry.accuracy.items())
        digest = "sha256 checked" if entry.sha256 else "no published sha256"
        print(f"  {name}")
        print(f"      {entry.arch}, {entry.embedding_size}-d, {size} {pre.color}; {figures}")
        print(f"      {entry.file} from {entry.source} ({digest}); licence: {entry.licence}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``import`` and ``models`` to the ``faceforge`` parser."""
    p = subparsers.add_parser(
        "import",
        help="turn weights of another project into a faceforge checkpoint",
        description="Read a weights file safely (a state dict, bare or under state_dict, "
        "net_state_dict, model, ...; module. prefixes removed), match its keys to --arch by "
        "name, then by order and shape, and save it with its preprocessing contract as a "
        "checkpoint every command takes. Examples: faceforge import --arch iresnet50 "
        "backbone.pth r50.pt; faceforge import --pretrained iresnet100.adaface_webface12m "
        "adaface_ir101_webface12m.ckpt adaface.pt",
    )
    p.add_argument("weights", help="the weights file")
    p.add_argument("output", type=output_file(), help="faceforge checkpoint to write")
    add_weights_options(p)
    p.set_defaults(func=_import)

    p = subparsers.add_parser(
        "models",
        help="list the backbones and the pretrained weights faceforge knows",
        description="Every backbone architecture, and every pretrained entry with its "
        "architecture, input contract, published accuracy, licence and where to get it.",
    )
    p.set_defaults(func=_models)
