"""evaluate_model: the batched path gives insightface's numbers on the model's embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceforge.data.verification_set import VerificationSet
from faceforge.evaluation.run import evaluate_model
from faceforge.evaluation.verification import evaluate
from faceforge.models import build_backbone


def _structured_pairs(n_pairs: int) -> VerificationSet:
    """Pairs of smooth random 'faces': same pairs are small perturbations of one image."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (2 * n_pairs, 14, 14, 3)).astype(np.float32)
    base = np.repeat(np.repeat(base, 8, 1), 8, 2)
    issame = np.arange(n_pairs) % 2 == 0
    base[1::2][issame] = base[0::2][issame] + rng.normal(0, 20, base[1::2][issame].shape)
    return VerificationSet("toy", np.clip(base, 0, 255).astype(np.uint8), issame)


def test_matches_plain_forward_and_restores_training_mode():
    torch.manual_seed(0)
    model = build_backbone("mobilefacenet", embedding_size=32).train()
    vset = _structured_pairs(10)
    result = evaluate_model(model, vset, precision="fp32", batch_size=8)
    assert model.training

    model.eval()
    x = torch.from_numpy((vset.images.astype(np.float32) / 255 - 0.5) / 0.5).permute(0, 3, 1, 2)
    with torch.no_grad():
        plain, mirrored = model(x).double().numpy(), model(x.flip(3)).double().numpy()
    summed = plain + mirrored
    expected = evaluate(summed[0::2], summed[1::2], vset.issame)
    assert result.accuracy == expected.accuracy
    assert result.best_threshold == pytest.approx(expected.best_threshold)
    norms = np.r_[np.linalg.norm(plain, axis=1), np.linalg.norm(mirrored, axis=1)]
    assert result.xnorm == pytest.approx(norms.mean(), rel=1e-4)
    assert result.extra["name"] == "toy" and result.extra["flip"] is True

    no_flip = evaluate_model(model, vset, precision="fp32", flip=False, folds=5)
    expected = evaluate(plain[0::2], plain[1::2], vset.issame, folds=5)
    assert no_flip.accuracy == expected.accuracy


def test_pair_lists_decode_and_embed_each_distinct_image_once(tmp_path, monkeypatch):
    """LFW View 2 repeats images across pairs: every distinct file is decoded and embedded
    once, and the scores are those of embedding every pair slot."""
    import faceforge.evaluation.run as run
    from faceforge.core.embedder import Embedder
    from faceforge.evaluation.pairs import read_lfw_pairs
    from faceforge.evaluation.run import evaluate_embedder, evaluate_pair_list
    from tests.model_helpers import primed_model, write_lfw_folder

    pairs = read_lfw_pairs(*write_lfw_folder(tmp_path))
    files, index = pairs.unique()
    assert len(pairs.paths) == 40 and len(files) == 20  # each image is in two pairs
    assert [files[i] for i in index] == pairs.paths
    decoded = []

    def counting(sources, *args, **kwargs):
        decoded.extend(sources)
        return original(sources, *args, **kwargs)

    original = run.load_pair_images
    monkeypatch.setattr(run, "load_pair_images", counting)
    embedder = Embedder.from_backbone(primed_model(), precision="fp32", batch_size=6)
    embedded = []
    views = embedder.views

    def counted_views(faces, flip):
        embedded.append(len(faces))
        return views(faces, flip)

    monkeypatch.setattr(embedder, "views", counted_views)
    streamed = evaluate_pair_list(embedder, "pairs", pairs, folds=5)
    assert sorted(decoded) == sorted(files) and sum(embedded) == len(files)
    assert streamed.extra["flip"] and streamed.extra["name"] == "pairs"

    in_memory = evaluate_embedder(embedder, pairs.load("pairs"), folds=5)
    assert streamed.accuracy == in_memory.accuracy
    assert streamed.xnorm == pytest.approx(in_memory.xnorm, rel=1e-6)


def test_pair_lists_decode_within_the_given_pixel_budget(tmp_path):
    """``max_pixels`` (``--max-pixels``) reaches the decoding of pair-list images: a file
    over the budget is refused by name before it is decoded."""
    from faceforge.core.embedder import Embedder
    from faceforge.errors import DataError
    from faceforge.evaluation.pairs import read_lfw_pairs
    from faceforge.evaluation.run import evaluate_pair_list
    from tests.model_helpers import primed_model, write_lfw_folder

    pairs = read_lfw_pairs(*write_lfw_folder(tmp_path))
    embedder = Embedder.from_backbone(primed_model(), precision="fp32", batch_size=6)
    with pytest.raises(DataError, match="pixels"):
        evaluate_pair_list(embedder, "pairs", pairs, folds=5, max_pixels=100)


def test_ijb_crops_decode_within_the_given_pixel_budget(tmp_path):
    from faceforge.data.image_io import encode_image
    from faceforge.errors import DataError
    from faceforge.evaluation.ijb_features import aligned_crops

    image = np.zeros((120, 100, 3), np.uint8)
    (tmp_path / "a.jpg").write_bytes(encode_image(image, ".jpg"))
    points = np.array([[[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]]])
    crops = aligned_crops(tmp_path, ["a.jpg"], points, (112, 112), "arcface", 120 * 100)
    assert crops.shape == (1, 112, 112, 3)
    with pytest.raises(DataError, match="a.jpg.*120 ?x ?100|a.jpg.*100 ?x ?120"):
        aligned_crops(tmp_path, ["a.jpg"], points, (112, 112), "arcface", 120 * 100 - 1)


def test_decoding_runs_on_more_threads_only_beside_an_accelerator(tiny_checkpoint) -> None:
    """One thread keeps up with a CPU network (more would compete for its cores); a GPU
    embeds faster than one core decodes, so every core decodes."""
    from types import SimpleNamespace

    from faceforge.core.embedder import load_embedder
    from faceforge.data.prefetch import decode_threads
    from faceforge.evaluation.run import decoding_threads

    assert decoding_threads(load_embedder(tiny_checkpoint, device="cpu")) == 1
    on_gpu = SimpleNamespace(backend=SimpleNamespace(accelerated=True))
    assert decoding_threads(on_gpu) == decode_threads()
