"""``faceforge eval --report DIR``: one self-contained HTML page of verification results.

Every image is inlined as a base64 PNG, so the page can be mailed or archived alone: a
summary table, ROC and DET curves on log axes, and per set the distance histograms of same
and different pairs with the threshold, TAR and threshold at FAR 1e-1 .. 1e-6, the accuracy
of every fold, and the hardest errors as thumbnail pairs (different people the model finds
closest, the same person it finds farthest apart).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.data.image_io import encode_image
from faceforge.data.verification_set import VerificationSet
from faceforge.evaluation.pairs import PairList
from faceforge.evaluation.report_figures import (
    det_figure,
    folds_figure,
    histogram_figure,
    png_bytes,
    roc_figure,
)
from faceforge.evaluation.verification import FAR_TARGETS, VerificationResult
from faceforge.files import atomic_write_bytes

REPORT_FILE = "report.html"
#: a set's images: in memory, or a pair list's files (only the thumbnails are decoded)
PairSource = VerificationSet | PairList
#: hardest false accepts and false rejects shown per set
HARDEST = 8
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th { background: #f3f3f3; } td.name { text-align: left; }
.figures img { max-width: 49%; } .pairs { display: flex; flex-wrap: wrap; gap: 0.8em; }
figure { margin: 0; text-align: center; font-size: 0.85em; }
figure img { display: block; border: 1px solid #ccc; image-rendering: pixelated; }
.meta { color: #666; font-size: 0.9em; }
.wrong { color: #b00; font-weight: bold; } .right { color: #070; }
"""


@dataclass(frozen=True)
class FarRow:
    """The all-pairs operating point at one FAR target."""

    target: float
    tar: float
    #: accept a pair when its squared distance is < this: the JSON's ``far_thresholds``
    #: (NaN where these pairs cannot measure the target)
    threshold: float
    far: float


def far_table(result: VerificationResult) -> list[FarRow]:
    """TAR, threshold and achieved FAR at each of :data:`FAR_TARGETS`, the numbers the JSON
    holds: the ROC point with the highest TAR whose FAR does not exceed the target
    (``result.tar_at_far``) and its strict cut-off (``result.far_thresholds``); NaN where
    the set has one kind of pair only."""
    nan = float("nan")
    rows = []
    for target in FAR_TARGETS:
        eligible = np.flatnonzero(result.fpr <= target)  # none where the rates are NaN
        far = float(result.fpr[eligible[-1]]) if len(eligible) else nan
        threshold = result.far_thresholds.get(target, nan)
        rows.append(FarRow(target, result.tar_at_far.get(target, nan), threshold, far))
    return rows


def hardest_pairs(
    result: VerificationResult, issame: np.ndarray, count: int = HARDEST
) -> tuple[np.ndarray, np.ndarray]:
    """Pair indices of the ``count`` different pairs with the smallest distances (false
    accepts first) and the ``count`` same pairs with the largest (false rejects first)."""
    distances = np.asarray(result.distances)
    different, same = np.flatnonzero(~issame), np.flatnonzero(issame)
    accepts = different[np.argsort(distances[different], kind="stable")[:count]]
    rejects = same[np.argsort(-distances[same], kind="stable")[:count]]
    return accepts, rejects


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _percent(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{100 * value:.2f}"


def _summary(results: Mapping[str, VerificationResult]) -> str:
    head = "<tr><th>set</th><th>pairs</th><th>accuracy %</th><th>threshold</th><th>AUC</th>"
    head += "<th>EER %</th><th>VR@FAR=1e-3 %</th></tr>"
    rows = [
        f'<tr><td class="name">{html.escape(name)}</td><td>{r.num_pairs}</td>'
        f"<td>{_percent(r.accuracy)} &plusmn; {_percent(r.accuracy_std)}</td>"
        f"<td>{r.best_threshold:.2f}</td><td>{r.auc:.4f}</td><td>{_percent(r.eer)}</td>"
        f"<td>{_percent(r.val)}</td></tr>"
        for name, r in results.items()
    ]
    return f"<table>{head}{''.join(rows)}</table>"


def _far_rows(result: VerificationResult, issame: np.ndarray) -> str:
    different = int(np.count_nonzero(~issame))
    rows = []
    for row in far_table(result):
        threshold = "n/a" if not np.isfinite(row.threshold) else f"{row.threshold:.4f}"
        far = "n/a" if not np.isfinite(row.far) else f"{row.far:.2e}"
        note = " (too few different pairs)" if row.target * different < 1 else ""
        rows.append(
            f"<tr><td>{row.target:g}{note}</td><td>{_percent(row.tar)}</td><td>{threshold}</td>"
            f"<td>{far}</td></tr>"
        )
    head = "<tr><th>FAR target</th><th>TAR %</th><th>threshold (distance &lt;)</th>"
    head += "<th>FAR reached</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _fold_rows(result: VerificationResult) -> str:
    cells = "".join(f"<td>{_percent(a)}</td>" for a in result.fold_accuracies)
    numbers = "".join(f"<th>{k + 1}</th>" for k in range(len(result.fold_accuracies)))
    return f"<table><tr><th>fold</th>{numbers}</tr><tr><th>accuracy %</th>{cells}</tr></table>"


def _pair_images(source: PairSource, i: int) -> tuple[np.ndarray, np.ndarray]:
    """The two images of pair ``i``: held in memory, or decoded from a pair list's files."""
    if isinstance(source, VerificationSet):
        return source.images[2 * i], source.images[2 * i + 1]
    return source.image(2 * i), source.image(2 * i + 1)


def _thumbnails(vset: PairSource, result: VerificationResult, pairs: np.ndarray, kind: str) -> str:
    threshold = result.best_threshold
    figures = []
    for i in pairs:
        pair = np.concatenate(_pair_images(vset, i), axis=1)
        distance = float(np.asarray(result.distances)[i])
        accepted = distance < threshold
        wrong = accepted != bool(vset.issame[i])
        verdict = ("wrongly " if wrong else "") + ("accepted" if accepted else "rejected")
        caption = f"pair {i + 1}: distance {distance:.3f}, {verdict}"
        figures.append(
            f"<figure>{_img(encode_image(pair, '.png'), caption)}"
            f'<figcaption class="{"wrong" if wrong else "right"}">{caption}</figcaption></figure>'
        )
    if not figures:
        return f"<p>no {kind} pairs in this set</p>"
    return f'<div class="pairs">{"".join(figures)}</div>'


def _set_section(name: str, result: VerificationResult, vset: PairSource) -> str:
    issame = np.asarray(vset.issame, dtype=bool)
    accepts, rejects = hardest_pairs(result, issame)
    histogram = _img(png_bytes(histogram_figure(name, result, issame)), f"{name} histogram")
    folds = _img(png_bytes(folds_figure(name, result)), f"{name} folds")
    warnings = "".join(f"<p class='meta'>warning: {html.escape(w)}</p>" for w in result.warnings)
    return (
        f"<h2>{html.escape(name)}</h2>{warnings}<div class='figures'>{histogram}{folds}</div>"
        f"<h3>TAR and threshold at each FAR (all pairs)</h3>{_far_rows(result, issame)}"
        f"<h3>accuracy per fold</h3>{_fold_rows(result)}"
        f"<h3>hardest false accepts: different people, smallest distances</h3>"
        f"{_thumbnails(vset, result, accepts, 'different')}"
        f"<h3>hardest false rejects: the same person, largest distances</h3>"
        f"{_thumbnails(vset, result, rejects, 'same')}"
    )


def report_html(
    results: Mapping[str, VerificationResult],
    sets: Mapping[str, PairSource],
    meta: Mapping[str, Any] | None = None,
) -> str:
    """The page (see the module docs); ``sets`` holds the images of every result's set."""
    details = ", ".join(f"{k}: {html.escape(str(v))}" for k, v in (meta or {}).items())
    curves = _img(png_bytes(roc_figure(results)), "ROC") + _img(
        png_bytes(det_figure(results)), "DET"
    )
    sections = "".join(_set_section(name, result, sets[name]) for name, result in results.items())
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>faceforge verification "
        f"report</title><style>{STYLE}</style></head><body><h1>Verification report</h1>"
        f"<p class='meta'>{details}</p>{_summary(results)}"
        f"<h2>ROC and DET</h2><div class='figures'>{curves}</div>{sections}</body></html>\n"
    )


def write_html_report(
    folder: str | Path,
    results: Mapping[str, VerificationResult],
    sets: Mapping[str, PairSource],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``folder/report.html`` (atomically) and return its path."""
    path = Path(folder) / REPORT_FILE
    atomic_write_bytes(path, report_html(results, sets, meta).encode("utf-8"))
    return path
