"""Report line, JSON and ROC plot."""

from __future__ import annotations

import json
import re

import numpy as np

from faceforge.evaluation.report import format_result, plot_roc, write_json
from faceforge.evaluation.verification import evaluate


def _result():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 8))
    same = np.arange(400) % 2 == 0
    b = np.where(same[:, None], a + 0.6 * rng.normal(size=a.shape), rng.normal(size=a.shape))
    result = evaluate(a, b, same)
    result.xnorm = 22.14
    return result


def test_line_in_the_seeds_style():
    result = _result()
    line = format_result("LFW", result)
    expected = (
        f"LFW average acc: {100 * result.accuracy:.4f} +- {100 * result.accuracy_std:.2f} "
        f"@ threshold {result.best_threshold:.2f}, XNorm 22.1, VR@FAR=1e-3 "
    )
    assert line.startswith(expected)
    assert re.search(r"AUC 0\.\d{4}, EER 0\.\d{4}$", line)


def test_json_and_roc_png(tmp_path):
    result = _result()
    write_json(tmp_path / "out" / "r.json", {"lfw": result}, {"checkpoint": "x.pt"})
    data = json.loads((tmp_path / "out" / "r.json").read_text())
    assert data["meta"] == {"checkpoint": "x.pt"}
    assert data["sets"]["lfw"]["accuracy"] == result.accuracy
    assert data["sets"]["lfw"]["tar_at_far"]["0.001"] == result.tar_at_far[1e-3]
    plot_roc(tmp_path / "roc.png", {"lfw": result, "again": result})
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
