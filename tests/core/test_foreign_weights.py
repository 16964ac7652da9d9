"""Foreign weight files into faceforge backbones: containers unwrapped, keys matched by name,
by order and shape, by a key map; mismatches and unsafe files refused in one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from foreign_layouts import (
    IRNetwork,
    assert_embeds_like,
    lightning_checkpoint,
    randomised_statistics,
    sphereface_mobilefacenet_keys,
)

from faceforge.cli import main
from faceforge.core.checkpoint import Checkpoint
from faceforge.core.foreign_weights import (
    apply_key_map,
    match_state_dict,
    read_key_map,
    read_state_dict,
)
from faceforge.core.model_source import ModelSource, load_model
from faceforge.errors import CheckpointError
from faceforge.models import build_backbone
from tests.model_helpers import primed_model, write_lfw_folder


def _mobilefacenet(**options) -> torch.nn.Module:
    torch.manual_seed(1)
    return randomised_statistics(build_backbone("mobilefacenet", embedding_size=32, **options))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    assert a.state_dict().keys() == b.state_dict().keys()
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,  # insightface backbone.pth
        lambda s: {f"module.{k}": v for k, v in s.items()},  # saved from DataParallel
        lambda s: {"epoch": 5, "net_state_dict": s},
        lambda s: {"model": {"state_dict": s}, "optimizer": {"lr": 0.1}},
        lambda s: {"state_dict": {f"backbone.{k}": v for k, v in s.items()}},
    ],
    ids=["bare", "module", "net_state_dict", "nested", "prefixed"],
)
def test_usual_containers_load_exactly(tmp_path: Path, wrap) -> None:
    model = _mobilefacenet()
    torch.save(wrap(model.state_dict()), tmp_path / "w.pth")
    loaded = load_model(ModelSource(tmp_path / "w.pth", "mobilefacenet", 32)).backbone
    _same_weights(loaded, model)


def test_foreign_names_in_the_same_order_are_matched_by_shape(tmp_path: Path) -> None:
    """The SphereFace-style 112x96 MobileFaceNet of a CASIA repository: its own key names,
    the same layers in the same order, saved without BatchNorm counters (PyTorch 0.4.0)."""
    model = _mobilefacenet(input_size=(112, 96))
    foreign = sphereface_mobilefacenet_keys(model.state_dict())
    assert "blocks.0.conv.7.running_var" in foreign and "linear7.conv.weight" in foreign
    old = {k: v for k, v in foreign.items() if not k.endswith("num_batches_tracked")}
    torch.save({"epoch": 68, "net_state_dict": old}, tmp_path / "068.ckpt")
    source = ModelSource(tmp_path / "068.ckpt", "mobilefacenet", 32)
    with pytest.raises(CheckpointError, match="no arcface template|do not fit"):
        load_model(source)  # at the default 112x112 the GDC kernel is 7x7, not 7x6
    loaded = load_model(ModelSource(source.path, "mobilefacenet", 32, _crop_112x96())).backbone
    x = torch.randn(2, 3, 112, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert all(
        v.item() == 0 for k, v in loaded.state_dict().items() if k.endswith("num_batches_tracked")
    )


def _crop_112x96():
    from faceforge.core.preprocess import Preprocess

    return Preprocess(input_size=(112, 96))


def test_mismatches_list_the_first_missing_unexpected_and_wrongly_shaped_keys() -> None:
    target = _mobilefacenet().state_dict()
    wide = build_backbone("mobilefacenet", embedding_size=64).state_dict()
    with pytest.raises(CheckpointError, match=r"^m: weights do not fit: 5 wrongly shaped") as e:
        match_state_dict(wide, target, "m")
    message = str(e.value)
    assert "embedding.0.weight (64, 512, 1, 1) for embedding.0.weight (32, 512, 1, 1)" in message
    assert "--key-map FILE" in message and "\n" not in message
    head = {**target, "logits.weight": torch.zeros(10, 32), "logits.bias": torch.zeros(10)}
    with pytest.raises(CheckpointError, match=r"2 unexpected \(logits.weight, logits.bias\)"):
        match_state_dict(head, target, "m")
    assert match_state_dict(head, target, "m", drop=("logits.",)).keys() == target.keys()
    short = {k: v for k, v in target.items() if not k.startswith("embedding.")}
    with pytest.raises(CheckpointError, match=r"5 missing \(embedding.0.weight, embedding.1.w"):
        match_state_dict(short, target, "m")
    renamed = sphereface_mobilefacenet_keys(target)
    renamed["conv1.conv.weight"] = torch.zeros(64, 3, 5, 5)  # no order pairing can fit
    with pytest.raises(CheckpointError, match=r"conv1.conv.weight \(64, 3, 5, 5\) for featur"):
        match_state_dict(renamed, target, "m")


def test_a_name_under_two_prefixes_is_ambiguous_until_a_key_map_says(tmp_path: Path) -> None:
    target = _mobilefacenet().state_dict()
    both = {f"{p}.{k}": v for p in ("model", "ema") for k, v in target.items()}
    with pytest.raises(CheckpointError, match=r"is ambiguous: it matches model\..*, ema\."):
        match_state_dict(both, target, "m")
    (tmp_path / "keys.txt").write_text("# keep the EMA weights\nmodel. -\nema.\n")
    with pytest.raises(CheckpointError, match=r"keys.txt:3: expected 'SOURCE TARGET', got 'ema.'"):
        read_key_map(tmp_path / "keys.txt")
    (tmp_path / "keys.txt").write_text("model. -  # the raw weights\nema. net.\n")
    rules = read_key_map(tmp_path / "keys.txt")
    assert rules == {"model.": "-", "ema.": "net."}
    mapped = apply_key_map(both, rules)
    assert set(mapped) == {f"net.{k}" for k in target}
    matched = match_state_dict(mapped, target, "m")
    assert all(torch.equal(matched[k], target[k]) for k in target)
    assert apply_key_map({"a.b": torch.ones(1)}, {"a.b": "c"}).keys() == {"c"}


def test_a_name_taken_by_an_exact_match_is_no_rival_for_a_renamed_one() -> None:
    """insightface names with only the last BatchNorm renamed (bn2 -> bn_out): bn2.weight
    was called ambiguous between layer1.0.bn2.weight and the other blocks' own bn2."""
    target = randomised_statistics(build_backbone("iresnet18", embedding_size=32)).state_dict()
    renamed = {k.replace("bn2.", "bn_out.", 1) if k.startswith("bn2.") else k: v
               for k, v in target.items()}  # fmt: skip
    matched = match_state_dict(renamed, target, "m")
    assert all(torch.equal(matched[k], target[k]) for k in target)


def test_blocks_sorted_as_text_are_refused_not_loaded_into_each_others_places() -> None:
    """Foreign block names sorted as text list unit10..13 before unit2: paired by order, the
    14 same-shaped blocks of a stage were loaded into each other's places, silently."""
    target = build_backbone("iresnet50", embedding_size=32).state_dict()
    foreign = {re.sub(r"layer(\d)\.(\d+)\.", r"stage\1.unit\2.", k): v for k, v in target.items()}
    assert len(match_state_dict(foreign, target, "m")) == len(target)  # network order: loads

    def unit(key: str) -> str:
        found = re.match(r"stage\d\.unit\d+", key)
        return found.group(0) if found else ""

    text_sorted = {k: v for k, v in foreign.items() if not unit(k)}
    for name in sorted({unit(k) for k in foreign} - {""}):  # unit1, unit10, ..., unit13, unit2
        text_sorted.update({k: v for k, v in foreign.items() if unit(k) == name})
    refused = r"lists stage3\.unit13\.bn3\.weight before stage3\.unit2\.bn1\.weight, not in"
    with pytest.raises(CheckpointError, match=refused):
        match_state_dict(text_sorted, target, "m")


def test_unreadable_and_unsafe_files_are_one_line_errors(tmp_path: Path) -> None:
    torch.save(build_backbone("mobilefacenet", embedding_size=32), tmp_path / "model.pth")
    with pytest.raises(CheckpointError) as e:  # a whole pickled model: its code never runs
        read_state_dict(tmp_path / "model.pth")
    assert str(e.value) == (
        f"{tmp_path / 'model.pth'}: holds no state dict of tensors, only Python objects that "
        "are never imported (faceforge.models.mobilefacenet.MobileFaceNet, "
        "torch.nn.modules.container.Sequential, faceforge.models.mobilefacenet.ConvBN); a whole "
        "pickled model (torch.save(model)) cannot be read safely: save model.state_dict() instead"
    )
    model = build_backbone("mobilefacenet", embedding_size=32)
    torch.save({"epoch": 3, "model": model}, tmp_path / "in_dict.pth")  # "found epoch, model"
    with pytest.raises(CheckpointError, match=r"a whole pickled model \(torch.save\(model\)\)"):
        read_state_dict(tmp_path / "in_dict.pth")
    blocked = {"weight": torch.zeros(1), "run": __import__("os").system}
    torch.save(blocked, tmp_path / "code.pth")  # a blocked module is refused, never stood in for
    with pytest.raises(CheckpointError, match=r"it asks for the Python object 'posix\.system'"):
        read_state_dict(tmp_path / "code.pth")
    torch.save({"epoch": 1, "notes": "no tensors"}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="expected a state dict .* found epoch, notes"):
        read_state_dict(tmp_path / "empty.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="cannot load .* safely"):
        read_state_dict(tmp_path / "garbage.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")


class _HyperParameters(dict):
    """What a Lightning checkpoint keeps its hyper-parameters in (an AttributeDict)."""


def test_python_objects_beside_the_tensors_are_left_out_unimported(tmp_path: Path) -> None:
    """Hyper-parameters as an argparse.Namespace or a dict subclass and numpy metrics are
    read as inert placeholders (nothing imported or run), with one warning naming them."""
    import argparse

    model = _mobilefacenet()
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    saved = {"state_dict": state, "hyper_parameters": _HyperParameters(lr=0.1, net="ir_18")}
    saved |= {"args": argparse.Namespace(lr=0.1), "best_acc": np.float64(0.99)}
    torch.save(saved, tmp_path / "run.ckpt")
    with pytest.warns(UserWarning) as record:
        tensors = read_state_dict(tmp_path / "run.ckpt")
    assert len(record) == 1 and str(record[0].message) == (
        f"{tmp_path / 'run.ckpt'}: read its tensors and left out the Python objects beside "
        "them, never imported: test_foreign_weights._HyperParameters, argparse.Namespace"
    )  # numpy scalars are data: read as such
    assert tensors.keys() == state.keys()
    # "model." wraps every name, so conv1.weight is model.conv1.weight (a suffix of others too)
    loaded = build_backbone("mobilefacenet", embedding_size=32)
    loaded.load_state_dict(match_state_dict(tensors, loaded.state_dict(), "run.ckpt"))
    _same_weights(loaded, model)


def test_a_wrapped_name_two_keys_would_take_is_not_taken_twice() -> None:
    """``a.weight`` found only as ``m.b.a.weight``, which ``b.a.weight`` takes under the
    ``m.`` prefix (it wraps two names): ``a.weight`` is reported missing, not given a copy."""
    source = {"m.b.a.weight": torch.zeros(2), "m.c.weight": torch.ones(2)}
    target = {"a.weight": torch.zeros(2), "b.a.weight": torch.zeros(2), "c.weight": torch.ones(2)}
    with pytest.raises(CheckpointError) as error:
        match_state_dict(source, target, "tiny")
    assert "weights do not fit: 1 missing (a.weight) (check --arch" in str(error.value)
    del target["a.weight"]
    matched = match_state_dict(source, target, "tiny")
    assert matched["b.a.weight"] is source["m.b.a.weight"]


def test_adaface_ir_layout_imports_with_its_bgr_contract(tmp_path: Path, capsys) -> None:
    """An AdaFace IR-18 Lightning checkpoint (different names, a max-pool shortcut, BatchNorms
    without scale and shift) imported by name gives the AdaFace network's own embeddings on
    BGR input; its hash is not published, which import says."""
    torch.manual_seed(2)
    adaface = randomised_statistics(IRNetwork())
    torch.save(lightning_checkpoint(adaface), tmp_path / "adaface_ir18_webface4m.ckpt")
    argv = ["import", "--pretrained", "iresnet18.adaface_webface4m"]
    assert main([*argv, str(tmp_path / "adaface_ir18_webface4m.ckpt"), str(tmp_path / "a.pt")]) == 0
    out, err = capsys.readouterr()
    assert "hash could not be verified" in err and "112x112 BGR" in out
    ckpt = Checkpoint.load(tmp_path / "a.pt")
    assert ckpt.preprocess.color == "BGR" and ckpt.config.model.backbone == "iresnet18"
    assert_embeds_like(adaface, tmp_path / "a.pt")


def test_pretrained_files_are_checked_against_the_published_hash(tmp_path: Path) -> None:
    torch.save(primed_model(embedding_size=128).state_dict(), tmp_path / "068.ckpt")
    with pytest.raises(CheckpointError, match="is not the published mobilefacenet.casia_112x96"):
        load_model(ModelSource(tmp_path / "068.ckpt", pretrained="mobilefacenet.casia_112x96"))


def test_sphereface_mobilefacenet_file_goes_through_import_and_eval(tmp_path: Path) -> None:
    """The acceptance test: a CASIA-style 112x96 MobileFaceNet ``{'epoch', 'net_state_dict'}``
    file with its own key names is imported and evaluated with the CLI alone, and scores
    exactly as the network it was written from."""
    model = randomised_statistics(
        build_backbone("mobilefacenet", embedding_size=128, input_size=(112, 96))
    )
    foreign = sphereface_mobilefacenet_keys(model.state_dict())
    torch.save({"epoch": 5, "net_state_dict": foreign}, tmp_path / "sphereface_mfn.ckpt")
    std = [str(128 / 255)] * 3
    argv = ["import", str(tmp_path / "sphereface_mfn.ckpt"), str(tmp_path / "mfn.pt")]
    contract = ["--arch", "mobilefacenet", "--input-size", "112x96", "--embedding-size", "128"]
    assert main([*argv, *contract, "--std", *std]) == 0
    pairs, images = write_lfw_folder(tmp_path, width=96)
    out = tmp_path / "eval.json"
    common = ["--pairs", str(pairs), "--images", str(images), "--folds", "5", "--no-progress"]
    argv = ["eval", "--checkpoint", str(tmp_path / "mfn.pt"), *common, "--precision", "fp32"]
    assert main([*argv, "--json", str(out)]) == 0
    got = json.loads(out.read_text())["sets"]["pairs"]

    from faceforge.core.embedder import Embedder
    from faceforge.core.preprocess import Preprocess
    from faceforge.evaluation.pairs import read_lfw_pairs
    from faceforge.evaluation.run import evaluate_pair_list

    contract = Preprocess(input_size=(112, 96), std=(128 / 255,) * 3)
    embedder = Embedder.from_backbone(model, contract, precision="fp32")
    expected = evaluate_pair_list(embedder, "pairs", read_lfw_pairs(pairs, images), folds=5)
    assert got["accuracy"] == expected.accuracy and got["num_pairs"] == 20
    assert got["best_threshold"] == pytest.approx(expected.best_threshold)
