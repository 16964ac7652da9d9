"""Command-line values: every numeric option has a range, checked while parsing, and every
parse error is one line with status 2."""

from __future__ import annotations

import argparse
import importlib
import itertools
from pathlib import Path

import pytest

from faceforge.cli import build_parser, main, parse_args
from faceforge.cli.arguments import ranged


def _commands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> dict[str, argparse.ArgumentParser]:
    """Every (sub-)command's parser by its words, ``eval ijb`` included."""
    found = {prefix.strip(): parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found |= _commands(child, f"{prefix} {name}")
    return found


def _numeric_options_without_range() -> list[str]:
    return [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, command in _commands(build_parser()).items()
        for action in command._actions
        if action.type in (int, float)
    ]


def test_the_walk_reaches_nested_tasks() -> None:
    assert {"eval", "eval ijb", "eval megaface", "liveness train"} <= set(_commands(build_parser()))


def test_every_numeric_option_has_a_range() -> None:
    assert _numeric_options_without_range() == []


def test_every_device_option_means_the_same() -> None:
    """One vocabulary: ``--device`` picks CUDA when there is one, in every command."""
    devices = {
        name: (action.default, action.help)
        for name, command in _commands(build_parser()).items()
        for action in command._actions
        if "--device" in action.option_strings
    }
    assert {"align", "verify", "eval verification", "serve"} <= set(devices)
    assert set(devices.values()) == {("auto", "auto | cpu | cuda[:i]")}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("align SRC DST --workers -2", "argument --workers: must be an integer >= 1, got '-2'"),
        (
            "import --arch iresnet50 W O --mean 0.5 nan 0.5",
            "argument --mean: must be a finite number, got 'nan'",
        ),
        ("import --arch iresnet50 W O --std 0.5 0 0.5", "argument --std: must be a finite "),
        ("import --arch iresnet50 W O --input-size 112x-8", "argument --input-size: must be an "),
        ("verify A B --checkpoint M --threshold 1.5", "argument --threshold: must be a finite "),
        ("search A --gallery G --checkpoint M --top-k 0", "argument --top-k: must be an integer"),
        ("eval --checkpoint M --folds 1", "argument --folds: must be an integer >= 2, got '1'"),
        ("eval ijb --checkpoint M --root R --batch-size 0", "argument --batch-size: must be "),
        ("eval megaface --images-per-identity 1", "argument --images-per-identity: must be "),
        ("convert A B --quality 101", "argument --quality: must be an integer in 1..100, got"),
        ("plan --config quickstart --gpus 0", "argument --gpus: must be an integer >= 1, got '0'"),
    ],
)
def test_an_out_of_range_value_is_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture, argv: str, message: str
) -> None:
    args = [str(tmp_path / word) if word.isupper() else word for word in argv.split()]
    command = " ".join(itertools.takewhile(lambda word: word.isalpha() and word.islower(), args))
    assert main(args) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"faceforge {command}: error: {message}")
    assert list(tmp_path.iterdir()) == []


def test_other_parse_errors_are_one_line_too(capsys: pytest.CaptureFixture) -> None:
    assert main(["align"]) == 2
    err = capsys.readouterr().err
    assert err == "faceforge align: error: the following arguments are required: src, dst\n"
    assert main(["nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("faceforge: error: argument command: invalid choice: 'nosuch'")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "line, overrides",
    [
        ("train --config q a.b=1 --no-progress c=2 d.e=x=y", ["a.b=1", "c=2", "d.e=x=y"]),
        ("visualize training -o m.gif h.t=softmax --every 10 x.y=3", ["h.t=softmax", "x.y=3"]),
        ("demo --minutes 1 train.max_steps=2", ["train.max_steps=2"]),
    ],
)
def test_overrides_may_follow_options(line: str, overrides: list[str]) -> None:
    assert parse_args(line.split()).overrides == overrides


def test_words_that_are_not_overrides_are_still_refused(capsys: pytest.CaptureFixture) -> None:
    for line, rest in [
        ("train --config q a=1 --no-progress oops", "oops"),
        ("verify a.jpg b.jpg --checkpoint m.pt x=1", "x=1"),  # verify takes no overrides
    ]:
        assert main(line.split()) == 2
        assert capsys.readouterr().err == f"faceforge: error: unrecognized arguments: {rest}\n"


def test_ranged_parses_and_names_its_range() -> None:
    assert ranged(int, 1, 100)("85") == 85 and ranged(float)("-2e-3") == -0.002
    assert ranged(float, above=0)("1e-9") == 1e-9
    for parse, text, wanted in [
        (ranged(int, 1), "1.5", "an integer >= 1"),
        (ranged(float, above=0), "0", "a finite number > 0"),
        (ranged(float, high=1), "inf", "a finite number <= 1"),
        (ranged(float, -1, 1), "x" * 1000, "a finite number in -1..1"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError) as info:
            parse(text)
        assert str(info.value).startswith(f"must be {wanted}, got '") and len(str(info.value)) < 150


@pytest.mark.parametrize(
    "line, target",
    [
        ("eval --checkpoint C --synthetic", "faceforge.core.embedder.load_embedder"),
        ("verify --checkpoint C A.jpg B.jpg", "faceforge.inference.pipeline.load_embedder"),
        ("eval megaface --checkpoint C", "faceforge.core.embedder.load_embedder"),
    ],
)
def test_compile_flag_reaches_the_embedder(monkeypatch, tmp_path, line: str, target: str) -> None:
    monkeypatch.chdir(tmp_path)  # verify checks that its images exist before loading the model
    for name in ("A.jpg", "B.jpg"):
        (tmp_path / name).write_bytes(b"")
    calls = []

    class Stop(Exception):
        pass

    def record(*args, **kwargs):
        calls.append(kwargs)
        raise Stop

    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), name, record)
    with pytest.raises(Stop):
        main([*line.split(), "--compile"])
    assert calls and calls[0]["compile"] is True
