"""Reading .pt / .pth files nobody vouches for: refusals are one line, and what a file can make
us allocate or walk is bounded by its size."""

from __future__ import annotations

import os
import pickle
import zipfile
from argparse import Namespace
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from faceforge.cli import main
from faceforge.core.safe_load import SPARE_BYTES, load_weights_only
from faceforge.errors import CheckpointError


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _pickle(path: Path, value: object) -> Path:
    with open(path, "wb") as f:
        pickle.dump(value, f, protocol=2)
    return path


@pytest.mark.parametrize(
    ("value", "global_name"),
    [({"conv.weight": _Exploit()}, "'posix.system'"), ({"w": Namespace()}, "'argparse.Namespace'")],
)
def test_a_refused_global_is_one_line_naming_it(
    tmp_path: Path, value: object, global_name: str
) -> None:
    path = _pickle(tmp_path / "backbone.pth", value)
    with pytest.raises(CheckpointError) as info:
        load_weights_only(path)
    message = str(info.value)
    assert message == (
        f"cannot load {str(path)!r} safely: it asks for the Python object {global_name}, "
        "which may run code, so it is never imported (only tensors and plain values are read)"
    )
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_import_of_a_refused_backbone_pth_prints_one_line_without_torch_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """torch's own message is six lines ending in the advice to load with weights_only=False,
    which would run the file's code."""
    path = _pickle(tmp_path / "backbone.pth", {"conv.weight": _Exploit()})
    argv = ["import", "--arch", "mobilefacenet", str(path), str(tmp_path / "out.pt")]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faceforge import: error: cannot load")
    assert "posix.system" in lines[0] and "weights_only" not in lines[0]
    assert not (tmp_path / "out.pt").exists()


def _deflated_copy(source: Path, target: Path) -> Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    return target


def test_a_compressed_entry_is_refused_before_it_inflates(tmp_path: Path) -> None:
    """4 MB of zeros deflate to 4 KB: torch would inflate them (a thousandfold per byte)."""
    torch.save({"w": torch.zeros(1 << 20)}, tmp_path / "plain.pt")
    packed = _deflated_copy(tmp_path / "plain.pt", tmp_path / "packed.pt")
    assert packed.stat().st_size < 10_000
    with pytest.raises(CheckpointError, match="altered after torch.save: its entry .* compressed"):
        load_weights_only(packed)


def test_overlapping_entries_are_refused(tmp_path: Path) -> None:
    """Two central-directory entries over one stored block: read twice, stored once."""
    path = tmp_path / "overlap.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data/0", b"x" * 100_000)
        archive.writestr("archive/data/1", b"")
        first, second = archive.filelist
        second.header_offset, second.CRC = first.header_offset, first.CRC
        second.file_size = second.compress_size = first.file_size
    with pytest.raises(CheckpointError, match="zip entries add up to more than the file's"):
        load_weights_only(path)


def _shared_list(levels: int) -> list:
    """A list of two references to a list of two references ...: 2**levels values."""
    value: list = [0]
    for _ in range(levels):
        value = [value, value]
    return value


def _self_containing() -> list:
    value: list = []
    value.append(value)
    return value


def _nested(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (_shared_list(60), "shared references repeated"),
        (["s" * 100_000] * 1_000, "shared references repeated"),
        ({"w": torch.zeros(1).expand(1 << 40)}, "shared references repeated"),
        (_self_containing(), "a container holds itself"),
        (_nested(100), "nests deeper than 64 levels"),
    ],
    ids=["2**60 values", "a long string 1000 times", "a stride-0 tensor", "a cycle", "100 levels"],
)
def test_a_value_larger_than_its_file_is_refused(
    tmp_path: Path, value: object, problem: str
) -> None:
    """Pickle's memo makes each of these a few kilobytes; walking one (to hash it, say) would
    take exponential time, gigabytes or forever."""
    path = tmp_path / "a.pt"
    torch.save(value, path)
    assert path.stat().st_size < 2 * SPARE_BYTES
    with pytest.raises(CheckpointError, match=f"is not a plain weights file: .*{problem}"):
        load_weights_only(path)


def test_real_weight_files_load(tmp_path: Path) -> None:
    """A state dict with a tied (shared) tensor and a torch.Size, in both torch formats."""
    weight = torch.randn(4, 8)
    state = OrderedDict(embed=weight, head=weight, shape=weight.shape, step=3)
    for zipped in (True, False):
        path = tmp_path / f"zip-{zipped}.pt"
        torch.save(state, path, _use_new_zipfile_serialization=zipped)
        loaded = load_weights_only(path)
        assert torch.equal(loaded["head"], weight) and loaded["shape"] == (4, 8)


def test_other_damage_is_one_line_naming_the_cause(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="safely: damaged zip archive"):
        load_weights_only(tmp_path / "junk.pt")
    (tmp_path / "text.pt").write_bytes(b"hello")
    with pytest.raises(CheckpointError, match=r"safely: .* \(truncated or damaged file"):
        load_weights_only(tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match="MTCNN weights '.*none.pt' does not exist"):
        load_weights_only(tmp_path / "none.pt", what="MTCNN weights")


def test_an_unknown_zip_version_is_a_damaged_archive(tmp_path: Path) -> None:
    """An entry whose 'version needed to extract' is beyond zipfile's makes it raise
    NotImplementedError (found by bench/fuzz.py): one CheckpointError line instead."""
    path = tmp_path / "backbone.pth"
    torch.save({"w": torch.ones(2)}, path)
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")
    data[central + 6 : central + 8] = (128).to_bytes(2, "little")  # version 12.8
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged zip archive .*zip file version 12.8"):
        load_weights_only(path)
