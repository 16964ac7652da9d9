"""Building the command line imports no torch, NumPy or OpenCV, so ``faceforge --help``
answers at once (its time is in bench/cli_help.py); handlers import what they use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "numpy", "cv2", "matplotlib", "faiss", "onnxruntime")


def _heavy_modules_after(code: str) -> list[str]:
    probe = (
        f"import json, sys\n{code}\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])  # after any help text


def test_building_the_parser_imports_nothing_heavy() -> None:
    assert _heavy_modules_after("import faceforge.cli; faceforge.cli.build_parser()") == []


def test_top_level_and_train_help_import_nothing_heavy() -> None:
    for argv in (["--help"], ["train", "--help"]):
        code = (
            "from faceforge.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass"
        )
        assert _heavy_modules_after(code) == [], argv


def test_parsing_a_command_imports_nothing_heavy_until_a_choice_is_checked() -> None:
    argv = ["verify", "a.jpg", "b.jpg", "--checkpoint", "m.pt", "--no-flip"]
    assert _heavy_modules_after(f"from faceforge.cli import parse_args; parse_args({argv!r})") == []
