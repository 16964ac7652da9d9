"""Every output path is checked while the command line is parsed: a path that cannot be
written is one line, and the work (model loading, training, decoding) never starts."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from faceforge.cli import main
from faceforge.cli.outputs import file_problem, folder_problem

# (command line, the work it must not start); FILE is an existing file, DIR an existing
# folder, UNDER a path below the file, OK a writable new path, IN an existing folder,
# VIDEO an existing file.
CASES = [
    ("eval --checkpoint IN --synthetic --json DIR", "faceforge.core.embedder:load_embedder"),
    ("eval --checkpoint IN --synthetic --roc OK.txt", "faceforge.core.embedder:load_embedder"),
    ("eval --checkpoint IN --synthetic --report FILE", "faceforge.core.embedder:load_embedder"),
    ("eval ijb --checkpoint IN --root IN --json UNDER", "faceforge.evaluation.ijb_layout:read_ijb"),
    (
        "eval identify --checkpoint IN --gallery IN --probes IN --plot UNDER.png",
        "faceforge.inference.pipeline:FacePipeline.load",
    ),
    ("eval megaface --checkpoint IN --json DIR", "faceforge.core.embedder:load_embedder"),
    (
        "eval megaface --checkpoint IN --probes IN --distractor-images IN --save-embeddings FILE",
        "faceforge.inference.pipeline:FacePipeline.load",
    ),
    (
        "eval --quality --checkpoint IN --pair-list IN --plot DIR",
        "faceforge.inference.pipeline:FacePipeline.load",
    ),
    (
        "eval liveness --liveness-model IN --data IN --json DIR",
        "faceforge.inference.liveness:load_liveness_model",
    ),
    ("liveness train --data IN -o FILE", "faceforge.train.antispoof:train_antispoof"),
    ("liveness IN --save-crops FILE", "faceforge.inference.detection.registry:build_detector"),
    ("pack-bin DIR --pairs IN --images IN", "faceforge.evaluation.pairs:PairList.pack"),
    ("convert --to-bin IN --images IN DIR", "faceforge.evaluation.pairs:PairList.pack"),
    ("pairs IN DIR", "faceforge.prepare.pairs_file:make_pairs"),
    ("pairs IN OK.txt --json UNDER", "faceforge.prepare.pairs_file:make_pairs"),
    ("extract-faces VIDEO FILE", "faceforge.prepare.extract_faces:extract_faces"),
    ("visualize embeddings IN --checkpoint IN -o DIR", "faceforge.core.embedder:load_embedder"),
    ("visualize training -o OK.png", "faceforge.train.feature_movie:record_feature_movie"),
    ("align IN FILE", "faceforge.prepare.align_folder:align_dataset"),
    ("enroll IN --gallery FILE --checkpoint IN", "faceforge.inference.pipeline:FacePipeline.load"),
    ("export --checkpoint IN --onnx DIR", "faceforge.inference.export:export_checkpoint"),
    ("import --arch iresnet18 IN DIR", "faceforge.core.model_source:import_weights"),
]


def _never(monkeypatch: pytest.MonkeyPatch, target: str) -> list[tuple]:
    """Replace ``module:attr[.attr]`` by a recorder; the list fills if it is ever called."""
    module_name, _, dotted = target.partition(":")
    owner = importlib.import_module(module_name)
    *parents, name = dotted.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    calls: list[tuple] = []
    monkeypatch.setattr(owner, name, lambda *a, **k: calls.append((a, k)))
    return calls


@pytest.mark.parametrize(("argv", "work"), CASES, ids=[argv for argv, _ in CASES])
def test_a_bad_output_path_fails_before_the_work(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    argv: str,
    work: str,
) -> None:
    (tmp_path / "FILE").write_text("")
    (tmp_path / "VIDEO").write_text("")
    (tmp_path / "DIR").mkdir()
    (tmp_path / "IN").mkdir()
    calls = _never(monkeypatch, work)
    args = [
        str(tmp_path / word.replace("UNDER", "FILE/under")) if word[:2].isupper() else word
        for word in argv.split()
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "is deprecated" not in line]
    assert len(lines) == 1 and " error: " in lines[0], err
    assert any(f in lines[0] for f in ("is a folder", "is a file", "cannot write", "ending in"))
    assert calls == []


def test_checking_leaves_nothing_behind(tmp_path: Path) -> None:
    assert file_problem(str(tmp_path / "new" / "deeper" / "r.json")) is None
    assert folder_problem(str(tmp_path / "new" / "run")) is None
    assert list(tmp_path.iterdir()) == []


def test_problems_name_the_path_and_the_reason(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert file_problem(str(tmp_path)) == f"{tmp_path}: is a folder; give a file name"
    assert file_problem(str(tmp_path / "r.txt"), (".json",)) == (
        f"{tmp_path / 'r.txt'}: expected a file name ending in .json"
    )
    under = tmp_path / "file" / "r.json"
    assert (
        file_problem(str(under)) == f"{under}: cannot write there ({tmp_path / 'file'} is a file)"
    )
    assert (
        folder_problem(str(tmp_path / "file")) == f"{tmp_path / 'file'}: is a file; give a folder"
    )
