"""Checkpoints: typed round trip, atomic writes, safe loading, format version, content hash."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest
import torch

from faceforge import __version__
from faceforge.config import Config, config_to_dict, load_config
from faceforge.core.checkpoint import (
    DEPLOY_PARTS,
    SEAL_KEYS,
    VERSION,
    Checkpoint,
    content_hash,
)
from faceforge.core.model_source import load_model
from faceforge.core.preprocess import Preprocess
from faceforge.errors import CheckpointError
from faceforge.models import build_backbone


def _model(embedding_size: int = 128) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone("mobilefacenet", embedding_size=embedding_size).eval()


def _checkpoint(step: int = 0, **fields) -> Checkpoint:
    cfg = load_config(None, ["model.embedding_size=128"])
    return Checkpoint(config=cfg, backbone=_model().state_dict(), step=step, **fields)


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    optimizer = {"state": {0: {"momentum_buffer": torch.ones(3)}}, "param_groups": [{"lr": 0.1}]}
    saved = _checkpoint(
        step=7,
        preprocess=Preprocess(mean=(0.4, 0.5, 0.6)),
        metrics={"lfw": {"accuracy": 0.99, "best_threshold": 1.2}},
        head={"weight": torch.randn(4, 128)},
        optimizer=optimizer,
        best_accuracy=0.99,
        history=[{"step": 1.0, "loss": 3.5}],
    )
    saved.save(tmp_path / "a.pt")
    loaded = Checkpoint.load(tmp_path / "a.pt")
    assert loaded.config == saved.config and loaded.preprocess == saved.preprocess
    assert (loaded.step, loaded.best_accuracy, loaded.history) == (7, 0.99, saved.history)
    assert loaded.metrics == saved.metrics
    assert torch.equal(loaded.head["weight"], saved.head["weight"])
    assert torch.equal(loaded.optimizer["state"][0]["momentum_buffer"], torch.ones(3))
    raw = torch.load(tmp_path / "a.pt", weights_only=True)
    assert (raw["version"], raw["faceforge_version"]) == (VERSION, __version__)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "ck" / "a.pt"
    _checkpoint(step=1).save(path)
    _checkpoint(step=2).save(path)
    assert Checkpoint.load(path).step == 2
    assert os.listdir(path.parent) == ["a.pt"]


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "a.pt"
    _checkpoint(step=1).save(path)
    before = path.read_bytes()

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _checkpoint(step=2, history=[{"bad": Unsaveable()}]).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.pt"]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_refuses_code_and_foreign_files(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"kind": "faceforge-checkpoint", "x": _Exploit()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="cannot load"):
        Checkpoint.load(evil)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    foreign = tmp_path / "backbone.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="not a faceforge checkpoint"):
        Checkpoint.load(foreign)
    truncated = tmp_path / "t.pt"
    _checkpoint().save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot load"):
        Checkpoint.load(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        Checkpoint.load(tmp_path / "nope.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="cannot load .* EOFError"):
        Checkpoint.load(empty)


def _rewrite(path: Path, **changes) -> None:
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


def test_a_newer_format_version_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "new.pt"
    _checkpoint().save(path)
    _rewrite(path, version=VERSION + 1)
    with pytest.raises(CheckpointError, match=f"format version {VERSION + 1}.*upgrade faceforge"):
        Checkpoint.load(path)


def test_a_flipped_weight_bit_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "a.pt"
    _checkpoint().save(path)
    payload = torch.load(path, weights_only=True)
    weight = next(v for v in payload["backbone"].values() if v.dtype == torch.float32)
    weight.view(torch.int32).view(-1)[0] ^= 1 << 3  # one bit of one float
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="corrupt"):
        Checkpoint.load(path)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(path)


def test_parts_are_read_and_checked_alone(tmp_path: Path) -> None:
    """``parts`` maps the file and reads and checks only the fields named (with the config
    and preprocessing): the backbone of a file whose head is damaged loads, and the head is
    not read at all; the whole file, or the damaged part, is refused."""
    path = tmp_path / "a.pt"
    saved = _checkpoint(step=3, head={"weight": torch.ones(5, 128)}, metrics={"lfw": {"a": 1}})
    saved.save(path)
    payload = torch.load(path, weights_only=True)
    payload["head"]["weight"][0, 0] = 2.0  # damage where embedding never looks
    torch.save(payload, path)
    deployed = Checkpoint.load(path, parts=DEPLOY_PARTS)
    assert deployed.config == saved.config and deployed.metrics == saved.metrics
    assert deployed.backbone.keys() == saved.backbone.keys()
    assert (deployed.head, deployed.step, deployed.optimizer) == ({}, 0, {})
    assert Checkpoint.load(path, parts=()).backbone == {}
    for parts in (None, ["head"]):
        with pytest.raises(CheckpointError, match="corrupt"):
            Checkpoint.load(path, parts=parts)
    assert load_model(path).config == saved.config  # the CLI and the embedder read it so


def test_parts_are_read_where_files_cannot_be_mapped(tmp_path: Path, monkeypatch) -> None:
    """A file system that cannot map files (some FUSE mounts) reads them instead."""
    path = tmp_path / "a.pt"
    _checkpoint(step=3).save(path)
    load = torch.load

    def unmappable(*args, **kwargs):
        if kwargs.get("mmap"):
            raise RuntimeError("unable to mmap 1024 bytes from file: No such device (19)")
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", unmappable)
    assert Checkpoint.load(path, parts=DEPLOY_PARTS).config == _checkpoint().config


def test_version_1_files_load_and_are_checked_whole(tmp_path: Path) -> None:
    """faceforge 0.2 sealed all fields with one hash: such a file loads, and damage anywhere
    in it is found even when only the backbone is wanted."""
    path = tmp_path / "v1.pt"
    _checkpoint(step=3, head={"weight": torch.ones(5, 128)}).save(path)
    payload = torch.load(path, weights_only=True)
    fields = {key: payload[key] for key in payload if key not in SEAL_KEYS}
    del payload["field_hashes"]
    payload |= {"version": 1, "content_hash": content_hash(fields)}
    torch.save(payload, path)
    assert Checkpoint.load(path).step == 3
    assert Checkpoint.load(path, parts=DEPLOY_PARTS).step == 0
    _rewrite(path, head={"weight": torch.zeros(5, 128)})
    with pytest.raises(CheckpointError, match="corrupt"):
        Checkpoint.load(path, parts=DEPLOY_PARTS)
    with pytest.raises(CheckpointError, match="not a faceforge checkpoint"):
        torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "backbone.pth")
        Checkpoint.load(tmp_path / "backbone.pth", parts=())


def test_a_bit_flipped_on_disk_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.pt"
    _checkpoint().save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1 << 4  # the middle of the file: tensor bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        Checkpoint.load(path)


def test_a_changed_plain_value_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "a.pt"
    _checkpoint(step=3).save(path)
    _rewrite(path, step=4)
    with pytest.raises(CheckpointError, match="corrupt"):
        Checkpoint.load(path)


def test_faceforge_0_1_checkpoints_still_load(tmp_path: Path) -> None:
    """Version 0 files (no version, no hash) as faceforge 0.1 wrote them."""
    cfg = load_config(None, ["model.embedding_size=128"])
    model = _model()
    legacy = {
        "kind": "faceforge-checkpoint",
        "faceforge_version": "0.1.0",
        "backbone": model.state_dict(),
        "config": config_to_dict(cfg),
        "preprocess": Preprocess().to_dict(),
        "metrics": {"synthetic": {"accuracy": 0.9}},
        "step": 5,
    }
    torch.save(legacy, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="faceforge 0.1.0 without a content hash.*unverified"):
        loaded = load_model(tmp_path / "old.pt")
    assert loaded.config == cfg and loaded.metrics["synthetic"]["accuracy"] == 0.9
    with pytest.warns(UserWarning, match="unverified"):
        assert Checkpoint.load(tmp_path / "old.pt").step == 5


def _flip_version_to_zero_and_a_weight_bit(path: Path) -> None:
    """Two bit flips in the file's bytes: ``version`` 2 -> 0 in the pickle (``K\\x02``, a
    one-byte int) and the lowest bit of the first weight."""
    data = bytearray(path.read_bytes())
    version = re.search(rb"X\x07\x00\x00\x00version(?:q.|r....)?K\x02", data, re.DOTALL)
    assert version is not None and VERSION == 2
    data[version.end() - 1] ^= 2
    weight = torch.load(path, weights_only=True)["backbone"]["features.0.0.weight"]
    data[data.index(weight.numpy().tobytes())] ^= 1
    path.write_bytes(bytes(data))


def test_a_version_flipped_to_zero_does_not_switch_the_hash_off(tmp_path: Path) -> None:
    path = tmp_path / "a.pt"
    _checkpoint().save(path)
    _flip_version_to_zero_and_a_weight_bit(path)
    assert torch.load(path, weights_only=True)["version"] == 0  # torch itself notices nothing
    with pytest.raises(CheckpointError, match="damaged: it claims format version 0"):
        Checkpoint.load(path)


@pytest.mark.parametrize("version", [0, -1, True, "1", 1.0])
def test_a_version_faceforge_never_wrote_is_damage(tmp_path: Path, version: object) -> None:
    path = tmp_path / "a.pt"
    _checkpoint().save(path)
    _rewrite(path, version=version)
    with pytest.raises(CheckpointError, match="is damaged: it claims format version"):
        Checkpoint.load(path)


@pytest.mark.parametrize("renamed", [("version",), ("field_hashes",), ("version", "field_hashes")])
def test_a_renamed_seal_entry_is_damage(tmp_path: Path, renamed: tuple[str, ...]) -> None:
    """A bit flip inside an entry's name renames it: the seal cannot disappear unnoticed."""
    path = tmp_path / "a.pt"
    _checkpoint().save(path)
    payload = torch.load(path, weights_only=True)
    for key in renamed:
        payload[key[:-1] + chr(ord(key[-1]) ^ 1)] = payload.pop(key)
    payload["backbone"]["features.0.0.weight"].view(-1)[0] += 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="damaged or not written by faceforge: unexpected"):
        Checkpoint.load(path)


@pytest.mark.parametrize("written_by", ["0.2.0", None, 1])
def test_only_a_faceforge_0_1_file_may_lack_the_hash(tmp_path: Path, written_by: object) -> None:
    path = tmp_path / "a.pt"
    _checkpoint().save(path)
    payload = torch.load(path, weights_only=True)
    del payload["version"], payload["field_hashes"]
    payload["faceforge_version"] = written_by
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="no content hash, which only faceforge 0.1"):
        Checkpoint.load(path)


def test_a_self_containing_history_is_refused_before_hashing(tmp_path: Path) -> None:
    """Pickle can make a list contain itself; hashing it would recurse forever."""
    path = tmp_path / "a.pt"
    _checkpoint().save(path)
    loop: list = []
    loop.append(loop)
    _rewrite(path, history=loop)
    with pytest.raises(CheckpointError, match="not a plain weights file: a container holds"):
        Checkpoint.load(path)


def test_content_hash_is_order_independent_and_sees_every_value() -> None:
    a = {"x": torch.arange(3), "y": [1, 2.5, "s"]}
    b = {"y": [1, 2.5, "s"], "x": torch.arange(3)}
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash({**a, "x": torch.arange(3).float()})
    assert content_hash(a) != content_hash({**a, "y": [1, 2.5]})
    assert content_hash(a) != content_hash({**a, "x": torch.arange(3).reshape(3, 1)})


def test_checkpoint_alone_rebuilds_the_backbone(tmp_path: Path) -> None:
    model = _model()
    pre = Preprocess(mean=(0.4, 0.5, 0.6))
    _checkpoint(preprocess=pre, metrics={"synthetic": {"accuracy": 0.9}}).save(tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(loaded.backbone(x), model(x))
    assert not loaded.backbone.training
    assert loaded.config.model.embedding_size == 128 and loaded.preprocess == pre
    assert loaded.metrics["synthetic"]["accuracy"] == 0.9


def test_a_checkpoint_whose_backbone_keys_differ_names_them(tmp_path: Path) -> None:
    """Say a se_iresnet50 checkpoint from before its squeeze-excitation lost its biases:
    the error names the keys, where PyTorch's first line named none."""
    state = _model().state_dict()
    state["features.0.0.bias"] = torch.zeros(64)
    del state["features.0.1.running_var"]
    cfg = load_config(None, ["model.embedding_size=128"])
    Checkpoint(config=cfg, backbone=state).save(tmp_path / "m.pt")
    with pytest.raises(CheckpointError) as error:
        load_model(tmp_path / "m.pt")
    message = str(error.value)
    where = f"{str(tmp_path / 'm.pt')!r}: mobilefacenet at its declared input size 112x112"
    assert message.startswith(where)
    assert "1 missing (features.0.1.running_var)" in message
    assert "1 unexpected (features.0.0.bias)" in message


def test_wrong_weights_are_reported(tmp_path: Path) -> None:
    cfg = load_config(None, ["model.embedding_size=128"])
    Checkpoint(config=cfg, backbone=_model(512).state_dict()).save(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "m.pt")
    assert isinstance(Checkpoint.load(tmp_path / "m.pt").config, Config)
