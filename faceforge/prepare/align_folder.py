"""Align a whole image-folder dataset: detect, pick one face, warp to the template, save.

This is the step that turns CelebA / LFW / CASIA-style photos into 112x112 training and
evaluation data. The folder structure (``<identity>/<image>``) is mirrored into the output.
Images are processed in chunks by worker processes (each builds its own detector from the
spec, e.g. ``mtcnn`` or ``scrfd:PATH.onnx``, and runs one thread); already aligned outputs
are kept, so an interrupted run resumes where it stopped, with the same options only (see
:mod:`~faceforge.prepare.align_settings`).

Policies (:data:`MULTIPLE_FACE_POLICIES`, :data:`NO_FACE_POLICIES`): several faces -> keep
the ``best``-scoring, ``largest`` or most ``central`` one, or ``skip`` the image as
ambiguous; no face -> ``skip``, or fit the whole image by ``center-crop`` / ``letterbox`` /
``stretch`` (for photos that are already face crops). Every skipped file and its reason is
listed in ``align_report.tsv`` in the output folder.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.data.alignment import norm_crop, template_points
from faceforge.data.image_io import (
    IMAGE_EXTENSIONS,
    MAX_PHOTO_PIXELS,
    encode_image,
    list_images,
    read_image,
)
from faceforge.data.images import RESIZE_MODES
from faceforge.data.quality import face_quality
from faceforge.errors import ConfigError, DataError
from faceforge.files import atomic_write_bytes
from faceforge.inference.detection.base import SELECTION_POLICIES, Detection
from faceforge.inference.detection.registry import build_detector, parse_detector_spec
from faceforge.prepare.align_settings import check_resumable, record_settings
from faceforge.registry import Registry

SKIP = "skip"


def only_face(faces: Sequence[Detection], image_shape: tuple[int, ...]) -> Detection | None:
    """The face of an image that shows exactly one; ``None`` makes an ambiguous image skipped."""
    return faces[0] if len(faces) == 1 else None


def leave_out(image: np.ndarray, height: int, width: int) -> np.ndarray | None:
    """No crop: an image without a detected face is skipped."""
    return None


#: several faces -> a face selection policy, or ``skip`` the image as ambiguous
MULTIPLE_FACE_POLICIES: Registry[Detection | None] = Registry.of(
    "multiple-face policy",
    {
        **{name: SELECTION_POLICIES.get(name) for name in SELECTION_POLICIES.names()},
        SKIP: only_face,
    },
)
#: no face -> fit the whole image by a resize mode, or ``skip`` it
NO_FACE_POLICIES: Registry[np.ndarray | None] = Registry.of(
    "no-face policy",
    {**{name: RESIZE_MODES.get(name) for name in RESIZE_MODES.names()}, SKIP: leave_out},
)
REPORT_FILE = "align_report.tsv"
#: output formats written as they are; anything else is saved as PNG
OUTPUT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CHUNK = 16
#: faces below this quality total are counted in the summary (see enroll --min-quality)
LOW_QUALITY = 0.4


@dataclass(frozen=True)
class AlignOptions:
    """How each image is aligned (picklable: sent to the worker processes). ``multiple`` and
    ``no_face`` name policies, ``detector`` is a detector spec (see
    :func:`~faceforge.inference.detection.registry.build_detector`); unknown names raise
    UnknownChoiceError. Photos declaring more than ``max_pixels`` are skipped undecoded."""

    size: tuple[int, int] = (112, 112)
    template: str = "arcface"
    multiple: str = "largest"
    no_face: str = SKIP
    min_face_size: float = 20.0
    detector: str = "mtcnn"
    device: str | None = None  # auto: CUDA when available
    max_pixels: int = MAX_PHOTO_PIXELS

    def __post_init__(self) -> None:
        if min(self.size) < 1:
            height, width = self.size
            raise ConfigError(
                f"--size/--width: the aligned face size must be positive, got {height}x{width}"
            )
        MULTIPLE_FACE_POLICIES.get(self.multiple, field="--selection")
        NO_FACE_POLICIES.get(self.no_face, field="--fallback")
        parse_detector_spec(self.detector)
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
    #: quality total (:func:`~faceforge.data.quality.face_quality`) of each face detected in
    #: this run (kept crops have no detection to score)
    qualities: list[float] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"aligned {self.aligned} images ({self.fallback} by the no-face fallback, "
            f"{self.chose_among_several} with several faces), kept {self.existing} existing, "
            f"skipped {len(self.skipped)}"
        )
        if not self.qualities:
            return text
        low = sum(q < LOW_QUALITY for q in self.qualities)
        scope = " (new crops only)" if self.existing else ""
        return (
            f"{text}; face quality{scope} median {float(np.median(self.qualities)):.2f}, "
            f"{low} below {LOW_QUALITY}"
        )


def output_path(dst: Path, relative: Path) -> Path:
    suffix = relative.suffix.lower()
    return dst / (relative if suffix in OUTPUT_EXTENSIONS else relative.with_suffix(".png"))


def _sources(src: Path, dst: Path) -> list[Path]:
    """The images under ``src`` relative to it, without those under ``dst`` when the output
    folder lies inside the source (a second run would align its own crops again)."""
    out = dst.resolve()
    inside = out.is_relative_to(src.resolve())
    return [
        path.relative_to(src)
        for path in list_images(src, recursive=True)
        if not (inside and path.resolve().is_relative_to(out))
    ]


def _one_per_output(files: list[Path], dst: Path, report: AlignReport) -> list[Path]:
    """``files`` with one source per output path: ``a.tif`` and ``a.png`` both crop to
    ``a.png``, so the second is skipped and reported instead of overwriting the first."""
    outputs: dict[Path, Path] = {}
    for relative in files:
        first = outputs.setdefault(output_path(dst, relative), relative)
        if first != relative:
            report.skipped.append((str(relative), f"its crop would replace {first}'s: rename one"))
    return list(outputs.values())


class _Worker:
    """Aligns chunks of files; one per process, the detector built once."""

    def __init__(self, src: Path, dst: Path, options: AlignOptions, threads: int = 0) -> None:
        self.src, self.dst, self.options = src, dst, options
        self.detector = build_detector(
            options.detector,
            device=options.device,
            min_face_size=options.min_face_size,
            threads=threads,
        )

    def run(self, chunk: Sequence[Path]) -> list[tuple[str, str, str]]:
        """``(relative path, outcome, detail)`` per file; outcome is aligned/fallback/
        several/skipped."""
        images, results, kept = [], [], []
        for relative in chunk:
            try:
                images.append(read_image(self.src / relative, self.options.max_pixels))
                kept.append(relative)
            except DataError as exc:
                results.append(self._skipped(relative, str(exc)))
        for relative, image, faces in zip(
            kept, images, self.detector.detect_batch(images), strict=True
        ):
            results.append(self._save(relative, image, faces))
        return results

    def _save(
        self, relative: Path, image: np.ndarray, faces: list[Detection]
    ) -> tuple[str, str, str]:
        options = self.options
        face = MULTIPLE_FACE_POLICIES.get(options.multiple)(faces, image.shape)
        if face is not None:
            crop = norm_crop(image, face.landmarks, options.size, options.template)
            outcome = "several" if len(faces) > 1 else "aligned"
            detail = f"{face_quality(image, face.box, face.landmarks).total:.4f}"
        elif faces:
            return self._skipped(relative, f"{len(faces)} faces found")
        else:
            crop = NO_FACE_POLICIES.get(options.no_face)(image, *options.size)
            if crop is None:
                return self._skipped(relative, "no face found")
            outcome, detail = "fallback", ""
        target = output_path(self.dst, relative)
        # whole or not at all: a resumed run keeps every crop it finds
        atomic_write_bytes(target, encode_image(crop, target.suffix.lower()))
        return str(relative), outcome, detail

    def _skipped(self, relative: Path, reason: str) -> tuple[str, str, str]:
        """A skipped image's outcome; the crop an earlier run made of it (``--overwrite``
        with other options) is deleted, so the folder holds only what the report says."""
        output_path(self.dst, relative).unlink(missing_ok=True)
        return str(relative), "skipped", reason


_WORKER: _Worker | Exception | None = None


def _init_worker(src: Path, dst: Path, options: AlignOptions) -> None:
    import torch

    torch.set_num_threads(1)
    global _WORKER
    try:
        _WORKER = _Worker(src, dst, options, threads=1)
    except Exception as exc:  # a pool whose initializer raises restarts it forever
        _WORKER = exc


def _run_chunk(chunk: Sequence[Path]) -> list[tuple[str, str, str]]:
    if isinstance(_WORKER, Exception):
        raise _WORKER  # the parent sees why the detector could not be built
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
    files = _sources(src, dst)
    if not files:
        raise DataError(f"{src}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    report = AlignReport()
    files = _one_per_output(files, dst, report)
    done = [not overwrite and output_path(dst, r).exists() for r in files]
    todo = [relative for relative, made in zip(files, done, strict=True) if not made]
    kept = [output_path(dst, r) for r, made in zip(files, done, strict=True) if made]
    if not overwrite:
        check_resumable(dst, options, kept)
    report.existing = len(kept)
    _check_output_folder(dst)
    record_settings(dst, options)
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


def _check_output_folder(dst: Path) -> None:
    """Create ``dst`` and make sure files can be written in it, before any work is done."""
    if dst.exists() and not dst.is_dir():
        raise DataError(f"{dst}: the output folder is a file; give a folder")
    try:
        dst.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=dst):
            pass
    except OSError as exc:
        reason = exc.strerror or exc
        raise DataError(f"{dst}: cannot write to the output folder ({reason})") from None


def _collect(outcomes: Iterator[list[tuple[str, str, str]]], report: AlignReport, bar: Any) -> None:
    for results in outcomes:
        for path, outcome, detail in results:
            if outcome == "skipped":
                report.skipped.append((path, detail))
            else:
                report.aligned += 1
                report.fallback += outcome == "fallback"
                report.chose_among_several += outcome == "several"
                if detail:
                    report.qualities.append(float(detail))
        bar.update(len(results))
