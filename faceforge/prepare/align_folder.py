"""Align a whole image-folder dataset: detect, pick one face, warp to the template, save.

This is the step that turns CelebA / LFW / CASIA-style photos into 112x112 training and
evaluation data. The folder structure (``<identity>/<image>``) is mirrored into the output.
Images are processed in chunks by worker processes (each with its own detector, one thread
each); already aligned outputs are kept, so an interrupted run resumes where it stopped.

Policies: several faces -> keep the ``best``-scoring, ``largest`` or most ``central`` one, or
``skip`` the image as ambiguous; no face -> ``skip``, or fit the whole image by
``center-crop`` / ``letterbox`` / ``stretch`` (for photos that are already face crops). Every
skipped file and its reason is listed in ``align_report.tsv`` in the output folder.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faceforge.core.images import RESIZE_MODES, fit_image
from faceforge.data.image_io import IMAGE_EXTENSIONS, encode_image, read_image
from faceforge.errors import DataError
from faceforge.inference.alignment import norm_crop, template_points
from faceforge.inference.detection.base import SELECTION_POLICIES, select_face

MULTIPLE_FACE_POLICIES = (*SELECTION_POLICIES, "skip")
NO_FACE_POLICIES = ("skip", *RESIZE_MODES)
REPORT_FILE = "align_report.tsv"
#: output formats written as they are; anything else is saved as PNG
OUTPUT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CHUNK = 16


@dataclass(frozen=True)
class AlignOptions:
    """How each image is aligned (picklable: sent to the worker processes)."""

    size: tuple[int, int] = (112, 112)
    template: str = "arcface"
    multiple: str = "largest"
    no_face: str = "skip"
    min_face_size: float = 20.0
    mtcnn_weights: str | None = None
    device: str | None = "cpu"

    def __post_init__(self) -> None:
        if self.multiple not in MULTIPLE_FACE_POLICIES:
            raise DataError(f"--multiple must be one of {MULTIPLE_FACE_POLICIES}")
        if self.no_face not in NO_FACE_POLICIES:
            raise DataError(f"--no-face must be one of {NO_FACE_POLICIES}")
        try:
            template_points(self.size, self.template)
        except ValueError as exc:
            raise DataError(str(exc)) from None


@dataclass
class AlignReport:
    """Outcome of :func:`align_dataset`."""

    aligned: int = 0
    #: outputs that already existed and were kept
    existing: int = 0
    #: images with several faces where the policy chose one
    chose_among_several: int = 0
    #: images fitted without landmarks by the no-face fallback
    fallback: int = 0
    #: (relative path, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"aligned {self.aligned} images ({self.fallback} by the no-face fallback, "
            f"{self.chose_among_several} with several faces), kept {self.existing} existing, "
            f"skipped {len(self.skipped)}"
        )


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursively), relative to it, sorted."""
    return sorted(
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def output_path(dst: Path, relative: Path) -> Path:
    suffix = relative.suffix.lower()
    return dst / (relative if suffix in OUTPUT_EXTENSIONS else relative.with_suffix(".png"))


class _Worker:
    """Aligns chunks of files; one per process, the detector built once."""

    def __init__(self, src: Path, dst: Path, options: AlignOptions) -> None:
        from faceforge.inference.detection.mtcnn import MTCNN

        self.src, self.dst, self.options = src, dst, options
        self.detector = MTCNN.from_weights(
            options.mtcnn_weights, device=options.device, min_face_size=options.min_face_size
        )

    def run(self, chunk: Sequence[Path]) -> list[tuple[str, str, str]]:
        """``(relative path, outcome, detail)`` per file; outcome is aligned/fallback/
        several/skipped."""
        images, results, kept = [], [], []
        for relative in chunk:
            try:
                images.append(read_image(self.src / relative))
                kept.append(relative)
            except DataError as exc:
                results.append((str(relative), "skipped", str(exc)))
        for relative, image, faces in zip(
            kept, images, self.detector.detect_batch(images), strict=True
        ):
            results.append(self._save(relative, image, faces))
        return results

    def _save(self, relative: Path, image: Any, faces: list) -> tuple[str, str, str]:
        options = self.options
        outcome = "aligned"
        if len(faces) > 1:
            if options.multiple == "skip":
                return str(relative), "skipped", f"{len(faces)} faces found"
            outcome = "several"
        policy = "best" if options.multiple == "skip" else options.multiple
        face = select_face(faces, image.shape, policy)
        if face is not None:
            crop = norm_crop(image, face.landmarks, options.size, options.template)
        elif options.no_face == "skip":
            return str(relative), "skipped", "no face found"
        else:
            crop = fit_image(image, options.size, options.no_face, str(relative))
            outcome = "fallback"
        target = output_path(self.dst, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encode_image(crop, target.suffix.lower()))
        return str(relative), outcome, ""


_WORKER: _Worker | None = None


def _init_worker(src: Path, dst: Path, options: AlignOptions) -> None:
    import torch

    torch.set_num_threads(1)
    global _WORKER
    _WORKER = _Worker(src, dst, options)


def _run_chunk(chunk: Sequence[Path]) -> list[tuple[str, str, str]]:
    assert _WORKER is not None
    return _WORKER.run(chunk)


def _chunks(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def align_dataset(
    src: str | Path,
    dst: str | Path,
    options: AlignOptions | None = None,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> AlignReport:
    """Align every image under ``src`` into ``dst`` (same relative paths); see module docs."""
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    options = options or AlignOptions()
    if not src.is_dir():
        raise DataError(f"{src}: source folder does not exist")
    if src.resolve() == dst.resolve():
        raise DataError("the output folder must differ from the source folder")
    files = list_images(src)
    if not files:
        raise DataError(f"{src}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    report = AlignReport()
    todo = []
    for relative in files:
        if not overwrite and output_path(dst, relative).exists():
            report.existing += 1
        else:
            todo.append(relative)
    dst.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), unit="img", disable=not progress, desc="aligning")
    chunks = list(_chunks(todo, CHUNK))
    if workers <= 1:
        worker = _Worker(src, dst, options)
        outcomes: Iterator[list[tuple[str, str, str]]] = map(worker.run, chunks)
        _collect(outcomes, report, bar)
    else:
        context = multiprocessing.get_context("spawn")  # forking a process using torch can hang
        with context.Pool(workers, _init_worker, (src, dst, options)) as pool:
            _collect(pool.imap_unordered(_run_chunk, chunks), report, bar)
    bar.close()
    report.skipped.sort()
    lines = ["path\treason"] + [f"{path}\t{reason}" for path, reason in report.skipped]
    (dst / REPORT_FILE).write_text("\n".join(lines) + "\n")
    return report


def _collect(outcomes: Iterator[list[tuple[str, str, str]]], report: AlignReport, bar: Any) -> None:
    for results in outcomes:
        for path, outcome, detail in results:
            if outcome == "skipped":
                report.skipped.append((path, detail))
            else:
                report.aligned += 1
                report.fallback += outcome == "fallback"
                report.chose_among_several += outcome == "several"
        bar.update(len(results))
