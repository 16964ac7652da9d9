"""The deploy pipeline in one object: detect, align, embed, verify (1:1) and search (1:N).

>>> pipeline = FacePipeline.load("checkpoint.pt")  # doctest: +SKIP
>>> result = pipeline.verify("a.jpg", "b.jpg")  # doctest: +SKIP
>>> result.similarity, result.same, result.threshold.cosine  # doctest: +SKIP
(0.71, True, 0.29)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.core.embedder import Embedder, load_embedder, resolve_flip
from faceforge.core.model_source import ModelSource
from faceforge.data.alignment import norm_crop
from faceforge.data.image_io import MAX_PHOTO_PIXELS, read_image
from faceforge.data.images import RESIZE_MODES, fit_image
from faceforge.data.prefetch import ahead
from faceforge.errors import ConfigError, DataError
from faceforge.inference.answers import UNKNOWN, Enrollment, Identification, Verification
from faceforge.inference.detection.base import SELECTION_POLICIES, Detection, Detector, select_face
from faceforge.inference.detection.registry import build_detector
from faceforge.inference.face_checks import FaceChecks, FaceReport, NoFace, Unjudged
from faceforge.inference.liveness import LivenessChecker
from faceforge.inference.matching.gallery import Gallery
from faceforge.inference.matching.threshold import Threshold, resolve_threshold

ImageLike = str | Path | np.ndarray
#: a decoded image and its name for messages
Decoded = tuple[np.ndarray, str]
#: an image's selected face (aligned crop, report, image name), or why it is unusable
Selected = tuple[np.ndarray, FaceReport | None, str] | DataError
#: called with the number of images just finished
Progress = Callable[[int], None]

#: images decoded and detected together; the next chunk is decoded meanwhile, so two chunks
#: of photos are held at most (bounds memory for long lists of large photos)
CHUNK = 16


def _raise_first(errors: Sequence[str | None]) -> None:
    """Raise the first error of a batch (callers that do not report errors per image)."""
    failure = next((error for error in errors if error), None)
    if failure is not None:
        raise DataError(failure)


def _as_image(image: ImageLike, index: int, max_pixels: int) -> tuple[np.ndarray, str]:
    """An HxWx3 uint8 RGB array (from a file of at most ``max_pixels``, or an RGB / RGBA /
    grayscale array) and a name for messages (the path, or ``image <i>``)."""
    if isinstance(image, (str, Path)):
        return read_image(image, max_pixels), str(image)
    name = f"image {index}"
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = np.ascontiguousarray(array[:, :, :3])  # RGBA: drop alpha
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise DataError(f"{name}: expected uint8 (H, W, 3) RGB, got {array.dtype} {array.shape}")
    return array, name


class FacePipeline:
    """Detect, align and embed faces with one model; verify pairs and search galleries.

    ``detector=None`` treats inputs as pre-cropped faces: they are fitted to the model input
    by ``fallback`` (a :data:`~faceforge.data.images.RESIZE_MODES` name; ``None`` requires the
    exact input size). With a detector, ``selection`` (a :data:`SELECTION_POLICIES` name)
    picks one face per image and ``fallback`` handles images where no face is found (``None``
    raises a DataError naming the image). Image files declaring more than ``max_pixels``
    are refused before decoding. With ``liveness`` every detected face is judged first and a
    presentation attack is refused (:class:`~faceforge.inference.liveness.SpoofRefused`, a
    DataError giving its liveness score); with ``min_quality`` faces whose
    :func:`~faceforge.data.quality.face_quality` total is lower are refused too (a MagFace
    model's feature norm is part of that quality, see :mod:`.face_checks`). Unknown names
    raise UnknownChoiceError.
    """

    def __init__(
        self,
        embedder: Embedder,
        detector: Detector | None = None,
        *,
        selection: str = "best",
        fallback: str | None = None,
        threshold: float | None = None,
        eval_set: str | None = None,
        max_pixels: int = MAX_PHOTO_PIXELS,
        liveness: LivenessChecker | None = None,
        min_quality: float | None = None,
    ) -> None:
        SELECTION_POLICIES.get(selection, field="selection")
        if fallback is not None:
            RESIZE_MODES.get(fallback, field="fallback")
        self.embedder = embedder
        self.detector = detector
        self.selection = selection
        self.fallback = fallback
        self._threshold = threshold
        self._eval_set = eval_set
        self.max_pixels = max_pixels
        magface = getattr(embedder.config.head, "type", "") == "magface"
        self.checks = FaceChecks(liveness, min_quality, magface)
        if detector is None and self.checks.judged:
            raise ConfigError(
                f"the {self.checks.judged} check judges detected faces: a pipeline without a "
                "face detector (--aligned) cannot apply it"
            )

    @classmethod
    def load(
        cls,
        model: str | Path | ModelSource,
        *,
        detector: str | None = "mtcnn",
        device: str | None = None,
        flip: bool | None = None,
        precision: str = "auto",
        compile: bool = False,
        winograd: bool | None = None,
        **options: Any,
    ) -> FacePipeline:
        """A pipeline for a checkpoint, ONNX file or :class:`ModelSource` (see
        :func:`~faceforge.core.embedder.load_embedder`) with the detector a spec names
        (``mtcnn``, ``mtcnn:DIR``, ``scrfd:PATH.onnx``; see
        :func:`~faceforge.inference.detection.registry.build_detector`), or none (``None``)
        when the inputs are aligned crops; ``options`` go to the constructor.

        >>> FacePipeline.load("best.pt", detector="scrfd:det_10g.onnx")  # doctest: +SKIP
        """
        built = None if detector is None else build_detector(detector, device=device)
        runtime = {"precision": precision, "compile": compile, "winograd": winograd}
        embedder = load_embedder(model, device=device, **runtime)
        resolve_flip(embedder, flip)  # by default as the stored thresholds were calibrated
        return cls(embedder, built, **options)

    @property
    def threshold(self) -> Threshold:
        """The decision threshold: explicit, else the model's stored evaluation threshold."""
        return resolve_threshold(self._threshold, self.embedder.metrics, self._eval_set)

    # ------------------------------------------------------------------ steps
    def assess_faces(self, image: ImageLike) -> list[FaceReport]:
        """Every detected face with its quality (with a MagFace model's feature norm) and,
        with a liveness checker, liveness: the optional per-face fields a server shows."""
        array = _as_image(image, 0, self.max_pixels)[0]
        reports = [self.checks.report(array, face) for face in self.detect(array)]
        if not self.checks.magface or not reports:
            return reports
        norms = self.embedder.embed_with_norms(
            np.stack([self._crop(array, r.detection) for r in reports])
        )[1]
        return [r.with_feature_norm(n) for r, n in zip(reports, norms, strict=True)]

    def checked_face(self, image: ImageLike, name: str) -> tuple[np.ndarray, FaceReport | None]:
        """The aligned crop of one image's selected face and its report, a spoof refused but
        quality not yet (a MagFace norm needs the embedding: see :mod:`.face_checks`); no
        report when no face was found and ``fallback`` fitted the whole image."""
        array = _as_image(image, 0, self.max_pixels)[0]
        return self._select(array, name, self.detector.detect(array) if self.detector else [])

    def detect(self, image: ImageLike) -> list[Detection]:
        """All faces in one image, best first (DataError without a detector)."""
        if self.detector is None:
            raise DataError("this pipeline has no face detector (it expects cropped faces)")
        return self.detector.detect(_as_image(image, 0, self.max_pixels)[0])

    def align(self, image: ImageLike, detection: Detection | None = None) -> np.ndarray:
        """The aligned crop of one face (the selected one unless ``detection`` is given)."""
        if detection is not None:
            return self._crop(_as_image(image, 0, self.max_pixels)[0], detection)
        return self.align_batch([image])[0]

    def align_batch(self, images: Sequence[ImageLike]) -> np.ndarray:
        """Aligned uint8 (N, H, W, 3) crops, one per image; the first failure raises."""
        crops = []
        for result in self._align_all(images):
            if isinstance(result, DataError):
                raise result
            crops.append(result)
        return self._stack(crops)

    def _align_all(self, images: Sequence[ImageLike]) -> list[np.ndarray | DataError]:
        """Crop or error for every image, decoding and detecting ``CHUNK`` images at a time."""
        results: list[np.ndarray | DataError] = []
        for _, selected in self.selected_chunks(images):
            results.extend(self._quality_checked(item) for item in selected)
        return results

    def selected_chunks(self, images: Sequence[ImageLike]) -> Iterator[tuple[int, list[Selected]]]:
        """``(start, selected)`` per ``CHUNK`` images from ``start``: for each, the crop and
        report of :meth:`checked_face` and the image's name, or why it is unusable. A chunk's
        images are detected together while the next chunk is decoded."""
        starts = range(0, len(images), CHUNK)
        jobs = (functools.partial(self._decoded, images[at : at + CHUNK], at) for at in starts)
        for start, decoded in zip(starts, ahead(jobs), strict=True):
            yield start, self._selected(decoded)

    def _decoded(self, images: Sequence[ImageLike], start: int) -> list[Decoded | DataError]:
        decoded: list[Decoded | DataError] = []
        for offset, image in enumerate(images):
            try:
                decoded.append(_as_image(image, start + offset, self.max_pixels))
            except DataError as exc:
                decoded.append(exc)
        return decoded

    def _selected(self, decoded: list[Decoded | DataError]) -> list[Selected]:
        arrays = [item[0] for item in decoded if not isinstance(item, DataError)]
        detections = iter(self.detector.detect_batch(arrays) if self.detector else [])
        results: list[Selected] = []
        for item in decoded:
            if isinstance(item, DataError):
                results.append(item)
                continue
            array, name = item
            try:
                results.append((*self._select(array, name, next(detections, [])), name))
            except DataError as exc:
                results.append(exc)
        return results

    def _quality_checked(self, item: Selected) -> np.ndarray | DataError:
        """The crop, or why it is refused (or unusable): a face below ``min_quality``."""
        if isinstance(item, DataError):
            return item
        crop, report, name = item
        if report is None or self.checks.min_quality is None:
            return crop
        if self.checks.magface:
            report = report.with_feature_norm(self.embedder.embed_with_norms(crop)[1][0])
        try:
            self.checks.refuse_low_quality(report, name)
        except DataError as exc:
            return exc
        return crop

    def _select(
        self, array: np.ndarray, name: str, faces: list[Detection]
    ) -> tuple[np.ndarray, FaceReport | None]:
        face = select_face(faces, array.shape, self.selection)
        if face is not None:
            report = self.checks.report(array, face)
            self.checks.refuse_spoof(report, name)
            return self._crop(array, face), report
        if self.checks.judged:
            raise Unjudged(name, self.checks.judged)
        if self.detector is None or self.fallback is not None:
            return fit_image(array, self.embedder.input_size, self.fallback, name), None
        raise NoFace(name, RESIZE_MODES.names())

    def _crop(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        template = self.embedder.preprocess.template
        return norm_crop(image, detection.landmarks, self.embedder.input_size, template)

    def _stack(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, *self.embedder.input_size, 3), np.uint8)
        return np.stack(crops)

    def embed(self, images: Sequence[ImageLike]) -> np.ndarray:
        """Unit-length (N, D) embeddings of the selected face of each image."""
        return self.embedder.embed(self.align_batch(images))

    def try_embed(
        self, images: Sequence[ImageLike], progress: Progress | None = None
    ) -> tuple[np.ndarray, list[str | None]]:
        """Like :meth:`embed` but never raises for one bad image: rows of failed images are
        NaN and their error message is returned in the second list (``None`` for success).

        Images are embedded ``CHUNK`` at a time; ``progress`` is called with the number of
        images each chunk finished (to drive a progress bar).
        """
        out = np.full((len(images), self.embedder.embedding_size), np.nan, np.float32)
        errors: list[str | None] = []
        for start, selected in self.selected_chunks(images):
            results = [self._quality_checked(item) for item in selected]
            good = [i for i, r in enumerate(results) if not isinstance(r, DataError)]
            if good:
                crops = self._stack([results[i] for i in good])
                out[[start + i for i in good]] = self.embedder.embed(crops)
            errors.extend(str(r) if isinstance(r, DataError) else None for r in results)
            if progress is not None:
                progress(len(results))
        return out, errors

    # --------------------------------------------------------------- decisions
    def verify(self, image_a: ImageLike, image_b: ImageLike) -> Verification:
        """Are these two photos the same person?"""
        return self.verify_pairs([(image_a, image_b)])[0]

    def verify_pairs(
        self,
        pairs: Sequence[tuple[ImageLike, ImageLike]],
        *,
        report_errors: bool = False,
        progress: Progress | None = None,
    ) -> list[Verification]:
        """Decisions for many pairs; each distinct image path is embedded once.

        An image that cannot be used raises, unless ``report_errors``: then the pairs it is in
        come back with its message in :attr:`Verification.error` and the others are decided.
        ``progress`` is called with the number of distinct images done.
        """
        threshold = self.threshold
        flat = [image for pair in pairs for image in pair]
        keys = [str(x) if isinstance(x, (str, Path)) else f"#{i}" for i, x in enumerate(flat)]
        first: dict[str, ImageLike] = {}
        for key, image in zip(keys, flat, strict=True):
            first.setdefault(key, image)
        unique = list(first.values())
        embeddings, errors = self.try_embed(unique, progress)
        if not report_errors:
            _raise_first(errors)
        row = {key: i for i, key in enumerate(first)}
        results = []
        for a, b in zip(keys[0::2], keys[1::2], strict=True):
            error = errors[row[a]] or errors[row[b]]
            similarity = float(embeddings[row[a]] @ embeddings[row[b]])
            same = error is None and threshold.accepts(similarity)
            results.append(Verification(similarity, same, threshold, error))
        return results

    def enroll(self, gallery: Gallery, name: str, images: Sequence[ImageLike]) -> None:
        """Add ``name`` with these photos to ``gallery`` (checked against this model)."""
        gallery.check_model(self.embedder.fingerprint, self.embedder.embedding_size)
        gallery.add(name, self.embed(images))

    def enroll_people(
        self,
        gallery: Gallery,
        people: Iterable[tuple[str, Sequence[ImageLike]]],
        progress: Progress | None = None,
    ) -> Enrollment:
        """Add each ``(name, photos)`` to ``gallery``, skipping photos that cannot be used and
        people left without any (one bad photo does not stop a bulk enrollment); ``progress``
        is called as in :meth:`try_embed`."""
        gallery.check_model(self.embedder.fingerprint, self.embedder.embedding_size)
        report = Enrollment()
        for name, images in people:
            embeddings, errors = self.try_embed(images, progress)
            report.skipped.extend(error for error in errors if error)
            good = embeddings[[error is None for error in errors]]
            if len(good) == 0:
                report.left_out.append(name)
                continue
            gallery.add(name, good)
            report.added += len(good)
        return report

    def search(self, image: ImageLike, gallery: Gallery, top_k: int = 5) -> Identification:
        """Who is this? The top ``top_k`` gallery people and the decision."""
        return self.search_images([image], gallery, top_k)[0]

    def search_images(
        self,
        images: Sequence[ImageLike],
        gallery: Gallery,
        top_k: int = 5,
        *,
        report_errors: bool = False,
        progress: Progress | None = None,
    ) -> list[Identification]:
        """:meth:`search` for many photos, embedded together.

        An image that cannot be used raises, unless ``report_errors``: its answer then carries
        the message in :attr:`Identification.error` and the others are searched. ``progress``
        is called as in :meth:`try_embed`.
        """
        gallery.check_model(self.embedder.fingerprint, self.embedder.embedding_size)
        threshold = self.threshold
        embeddings, errors = self.try_embed(images, progress)
        if not report_errors:
            _raise_first(errors)
        results = [Identification(UNKNOWN, [], threshold, error) for error in errors]
        usable = [i for i, error in enumerate(errors) if error is None]
        found = gallery.search(embeddings[usable], top_k) if usable else []
        for i, matches in zip(usable, found, strict=True):
            known = bool(matches) and threshold.accepts(matches[0].score)
            results[i] = Identification(matches[0].name if known else UNKNOWN, matches, threshold)
        return results
