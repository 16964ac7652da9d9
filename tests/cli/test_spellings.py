"""One spelling per meaning: old verbs and options still parse, for one release, to exactly
what their new spelling parses to, after exactly one deprecation line on stderr."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from faceforge.cli import build_parser, main, parse_args
from faceforge.cli.train_commands import recipe_overrides
from faceforge.train.recipe import load_recipe


def _parsed(argv: list[str]) -> dict:
    values = vars(parse_args(argv))
    return {key: value for key, value in values.items() if key != "func"} | {
        "func": values["func"].__qualname__
    }


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("eval-ijb --checkpoint M --root R", "eval ijb --checkpoint M --root R"),
        ("identify --checkpoint M --gallery G --probes P", "eval identify --checkpoint M "
         "--gallery G --probes P"),
        ("identify-bench --checkpoint M", "eval megaface --checkpoint M"),
        ("eval megaface --checkpoint M --quiet", "eval megaface --checkpoint M --no-progress"),
        ("quality-erc --pair-list L --checkpoint M", "eval quality --pair-list L --checkpoint M"),
        ("eval --checkpoint M --bin B --quiet", "eval --checkpoint M --bin B --no-progress"),
        ("pack-bin O.bin --pairs P --images I --quiet", "pack-bin O.bin --pairs P --images I "
         "--no-progress"),
        ("convert S D --quiet", "convert S D --no-progress"),
        ("verify --pairs L --checkpoint M", "verify --pair-list L --checkpoint M"),
        ("align S D --multiple skip", "align S D --selection skip"),
        ("align S D --no-face letterbox", "align S D --fallback letterbox"),
    ],
)  # fmt: skip
def test_an_old_spelling_is_one_line_and_the_same_command(
    tmp_path: Path, capsys: pytest.CaptureFixture, old: str, new: str
) -> None:
    def words(line: str) -> list[str]:
        return [str(tmp_path / w) if w[0].isupper() else w for w in line.split()]

    expected = _parsed(words(new))
    assert capsys.readouterr().err == ""
    assert _parsed(words(old)) == expected
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("faceforge: '") and "' is deprecated, use '" in lines[0]


def test_the_deprecation_line_names_both_spellings(capsys: pytest.CaptureFixture) -> None:
    parse_args(["identify-bench", "--checkpoint", "m.pt"])
    assert (
        capsys.readouterr().err
        == "faceforge: 'identify-bench' is deprecated, use 'eval megaface'\n"
    )
    parse_args(["verify", "a", "b", "--checkpoint", "m.pt", "--pairs", "x.csv"])
    assert capsys.readouterr().err == "faceforge: '--pairs' is deprecated, use '--pair-list'\n"


def test_eval_without_a_task_is_verification(capsys: pytest.CaptureFixture) -> None:
    plain = _parsed(["eval", "--checkpoint", "m.pt", "--bin", "lfw.bin"])
    assert plain == _parsed(["eval", "verification", "--checkpoint", "m.pt", "--bin", "lfw.bin"])
    assert plain["task"] == "verification" and plain["command"] == "eval"
    quality = ["--checkpoint", "m.pt", "--pair-list", "p.csv"]
    assert _parsed(["eval", *quality, "--quality"]) == _parsed(["eval", "quality", *quality])
    assert capsys.readouterr().err == ""


def test_eval_help_lists_the_tasks(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    for task in ("verification", "ijb", "identify", "megaface", "quality", "liveness"):
        assert f"    {task}" in text


def test_old_spellings_are_hidden_from_help(capsys: pytest.CaptureFixture) -> None:
    for argv in (["--help"], ["verify", "--help"], ["align", "--help"], ["convert", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = capsys.readouterr().out
        for old in ("eval-ijb", "identify-bench", "quality-erc", "--quiet", "--multiple",
                    "--no-face", "--pairs ", "--to-bin"):  # fmt: skip
            assert old not in text, (argv, old)


def _commands(parser: argparse.ArgumentParser, words: str = "") -> dict:
    found = {words.strip(): parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found |= _commands(child, f"{words} {name}")
    return found


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


def _parser(command: str) -> argparse.ArgumentParser:
    """The parser of a command line's words, the default task of a family filled in."""
    default = {"eval": "eval verification", "liveness": "liveness check"}
    return _commands(build_parser())[default.get(command, command)]


LONG_WORK = (
    "align", "verify", "enroll", "search", "eval", "pack-bin", "convert", "pairs",
    "extract-faces", "liveness", "eval ijb", "eval identify", "eval megaface", "eval quality",
    "visualize training", "train", "demo",
)  # fmt: skip
MAKES_EMBEDDINGS = (
    "verify", "enroll", "search", "eval", "eval identify", "eval megaface", "eval quality",
    "visualize embeddings",
)  # fmt: skip


@pytest.mark.parametrize("command", LONG_WORK)
def test_every_long_command_has_no_progress(command: str) -> None:
    option = _options(_parser(command))["--no-progress"]
    assert option.default is False and option.nargs == 0


@pytest.mark.parametrize("command", ["train", "demo"])
def test_no_progress_turns_the_training_bar_off(command: str) -> None:
    args = build_parser().parse_args([command, "--config", "quickstart", "optim.lr=0.05"])
    assert load_recipe(args.config, recipe_overrides(args)).train.progress is True
    args = build_parser().parse_args(
        [command, "--config", "quickstart", "--no-progress", "optim.lr=0.05"]
    )
    cfg = load_recipe(args.config, recipe_overrides(args))
    assert cfg.train.progress is False and cfg.optim.lr == 0.05


@pytest.mark.parametrize("command", MAKES_EMBEDDINGS)
def test_flip_is_on_or_off_and_unset_means_the_model_s_setting(command: str) -> None:
    options = _options(_parser(command))
    flip = options["--flip"]
    assert options["--no-flip"] is flip
    assert isinstance(flip, argparse.BooleanOptionalAction) and flip.default is None


def test_resolve_flip_takes_the_model_s_recorded_setting() -> None:
    from types import SimpleNamespace

    from faceforge.core.embedder import resolve_flip

    for recorded in (True, False):
        embedder = SimpleNamespace(config=SimpleNamespace(eval=SimpleNamespace(flip=recorded)))
        assert resolve_flip(embedder, None) is recorded and embedder.flip is recorded
        assert resolve_flip(embedder, not recorded) is (not recorded)


def test_every_json_option_names_the_file_it_writes() -> None:
    """``--json FILE`` means one thing everywhere: the results written to FILE."""
    commands = {words: parser for words, parser in _commands(build_parser()).items() if words}
    with_json = {words: _options(parser).get("--json") for words, parser in commands.items()}
    with_json = {words: option for words, option in with_json.items() if option is not None}
    assert {"eval verification", "verify", "search", "liveness check", "pairs"} <= set(with_json)
    for words, option in with_json.items():
        assert option.metavar == "FILE" and option.nargs in (None, "?"), words
