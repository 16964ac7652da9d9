"""1:N identification against brute-force numpy computations."""

from __future__ import annotations

import numpy as np
import pytest

from faceforge.errors import DataError
from faceforge.evaluation.identification import NpyFolder, identify, megaface


def _unit64(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _people(num_ids, per_id, dim, noise, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_ids, dim))
    ids = np.repeat(np.arange(num_ids), per_id)
    return centers[ids] + noise * rng.normal(size=(len(ids), dim)), ids


def _brute_identify(gallery, gallery_ids, probes, probe_ids, ranks, fpir):
    g, p = _unit64(gallery), _unit64(probes)
    identities = sorted(set(gallery_ids.tolist()))
    ranks_found, mated_top, nonmated_top = [], [], []
    for i in range(len(p)):
        per_id = {
            k: max(p[i] @ g[j] for j in range(len(g)) if gallery_ids[j] == k) for k in identities
        }
        best = max(per_id, key=per_id.get)
        if probe_ids[i] in per_id:
            own = per_id[probe_ids[i]]
            ranks_found.append(1 + sum(v > own for v in per_id.values()))
            mated_top.append((best == probe_ids[i], per_id[best]))
        else:
            nonmated_top.append(per_id[best])
    cmc = {r: np.mean([k <= r for k in ranks_found]) for r in ranks}
    ordered = sorted(nonmated_top, reverse=True)
    tpir = {}
    for target in fpir:
        allowed = int(np.floor(target * len(ordered) + 1e-9))
        t = ordered[allowed] if allowed < len(ordered) else -np.inf
        tpir[target] = np.mean([ok and s > t for ok, s in mated_top])
    return cmc, tpir


def test_identify_matches_brute_force():
    gallery, gallery_ids = _people(30, 2, 16, 1.0, seed=0)
    probes, probe_ids = _people(40, 3, 16, 1.0, seed=0)  # ids 30..39 are not enrolled
    probes = probes + 0.3 * np.random.default_rng(1).normal(size=probes.shape)
    ranks, fpir = (1, 2, 5), (0.1, 0.3)
    result = identify(
        gallery, gallery_ids, probes, probe_ids, ranks=ranks, fpir_targets=fpir, chunk=17
    )
    cmc, tpir = _brute_identify(gallery, gallery_ids, probes, probe_ids, ranks, fpir)
    assert result.num_mated == 90 and result.num_non_mated == 30
    assert 0.3 < result.cmc[1] < 1.0
    for r in ranks:
        assert result.cmc[r] == pytest.approx(cmc[r], abs=1e-12)
    for f in fpir:
        assert result.tpir_at_fpir[f] == pytest.approx(tpir[f], abs=1e-12)


def test_identify_hand_case():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])
    probes = np.array([[1.0, 0.1], [0.2, 1.0], [1.0, 1.2]])  # third: id 1 closest, labelled 0
    result = identify(gallery, np.array([0, 1]), probes, np.array([0, 1, 0]), ranks=(1, 2))
    assert result.cmc == {1: pytest.approx(2 / 3), 2: 1.0}
    assert result.tpir_at_fpir == {}


def _brute_megaface(probes, probe_ids, distractors, ranks, fars):
    p, d = _unit64(probes), _unit64(distractors)
    impostor = p @ d.T
    rank_hits = {r: [] for r in ranks}
    genuine_unordered = []
    for i in range(len(p)):
        for j in range(len(p)):
            if i == j or probe_ids[i] != probe_ids[j]:
                continue
            score = p[i] @ p[j]
            beaten_by = int((impostor[i] > score).sum())
            for r in ranks:
                rank_hits[r].append(beaten_by < r)
            if i < j:
                genuine_unordered.append(score)
    ordered = np.sort(impostor.ravel())[::-1]
    tar = {}
    for far in fars:
        allowed = int(np.floor(far * ordered.size + 1e-9))
        tar[far] = np.mean(np.array(genuine_unordered) > ordered[allowed])
    return {r: np.mean(v) for r, v in rank_hits.items()}, tar


def test_megaface_20k_distractors_matches_brute_force():
    probes, probe_ids = _people(15, 4, 32, 0.8, seed=3)
    distractors = np.random.default_rng(4).normal(size=(20_000, 32)).astype(np.float32)
    ranks, fars = (1, 10), (1e-3, 1e-4)
    result = megaface(
        probes, probe_ids, distractors, ranks=ranks, far_targets=fars, chunk_size=3000
    )
    rank_ref, tar_ref = _brute_megaface(probes, probe_ids, distractors, ranks, fars)
    assert result.num_searches == 15 * 4 * 3 and result.num_distractors == 20_000
    assert 0.1 < result.rank_accuracy[1] < 0.95  # distractors do compete
    for r in ranks:
        assert result.rank_accuracy[r] == pytest.approx(rank_ref[r], abs=1e-12)
    for f in fars:
        assert result.tar_at_far[f] == pytest.approx(tar_ref[f], abs=1e-12)


def test_megaface_from_npy_folder_and_stream(tmp_path):
    probes, probe_ids = _people(5, 3, 8, 0.8, seed=5)
    distractors = np.random.default_rng(6).normal(size=(1000, 8)).astype(np.float32)
    np.save(tmp_path / "a.npy", distractors[:600])
    np.save(tmp_path / "b.npy", distractors[600:])
    expected = megaface(probes, probe_ids, distractors, far_targets=(1e-2,))
    folder = megaface(probes, probe_ids, NpyFolder(tmp_path), far_targets=(1e-2,), chunk_size=256)
    assert folder.rank_accuracy == expected.rank_accuracy
    assert folder.tar_at_far == expected.tar_at_far
    stream = (distractors[i : i + 100] for i in range(0, 1000, 100))
    streamed = megaface(probes, probe_ids, stream, num_distractors=1000, far_targets=(1e-2,))
    assert streamed.rank_accuracy == expected.rank_accuracy
    with pytest.raises(DataError, match="num_distractors"):
        megaface(probes, probe_ids, iter([distractors]))
    with pytest.raises(DataError, match="expected 2000"):
        megaface(probes, probe_ids, iter([distractors]), num_distractors=2000)


def test_npy_folder_errors(tmp_path):
    with pytest.raises(DataError, match=r"no \.npy"):
        NpyFolder(tmp_path)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match=r"not a readable \.npy"):
        NpyFolder(tmp_path)


def test_megaface_refuses_impossible_far_budget():
    probes, probe_ids = _people(100, 10, 4, 0.5, seed=0)
    with pytest.raises(DataError, match="smaller FAR target"):
        megaface(probes, probe_ids, iter([]), num_distractors=10**9, far_targets=(1e-3,))


def test_a_tie_with_the_mate_counts_against_it():
    """An all-zero probe scores 0 against everyone: it finds no one (as in megaface),
    instead of passing as a rank-1 hit."""
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    probes = np.array([[0.0, 0.0], [1.0, 0.2]])
    result = identify(gallery, np.array([0, 1, 2]), probes, np.array([0, 0]), ranks=(1, 2, 3))
    assert result.cmc == {1: 0.5, 2: 0.5, 3: 1.0}


def test_a_tie_with_the_mate_is_not_a_true_positive_identification_either():
    """One photo enrolled as two people: a probe of the first ties with the second. The CMC
    counts that against it; TPIR, taking the first identity in name order, counted it found,
    and so exceeded the rank-1 rate."""
    gallery = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])  # "bob" enrolled alice's photo
    probes = np.array([[0.1, 1.0], [1.0, 0.0], [0.6, -0.8]])  # alice, carol, a stranger
    result = identify(
        gallery, np.array([0, 1, 2]), probes, np.array([0, 2, 9]), ranks=(1,), fpir_targets=(0.5,)
    )
    assert result.cmc == {1: 0.5}
    assert result.tpir_at_fpir == {0.5: 0.5}  # carol found; alice's tie is not


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_embeddings_are_refused_by_every_search(bad: float):
    rng = np.random.default_rng(0)
    gallery, probes = rng.normal(size=(6, 8)), rng.normal(size=(4, 8))
    broken = probes.copy()
    broken[1, 3] = bad
    with pytest.raises(DataError, match=r"probes: 1 of 4 embeddings contain NaN or infinite"):
        identify(gallery, np.arange(6), broken, np.arange(4))
    with pytest.raises(DataError, match=r"gallery: 1 of 4 embeddings"):
        identify(broken, np.arange(4), probes, np.arange(4))
    with pytest.raises(DataError, match=r"probes: 1 of 4 embeddings"):
        megaface(broken, np.array([0, 0, 1, 1]), gallery)
    with pytest.raises(DataError, match=r"distractors: 1 of 4 embeddings"):
        megaface(probes, np.array([0, 0, 1, 1]), broken)


def test_megaface_with_ranks_only():
    rng = np.random.default_rng(1)
    probes, distractors = rng.normal(size=(4, 8)), rng.normal(size=(50, 8))
    result = megaface(probes, np.array([0, 0, 1, 1]), distractors, far_targets=())
    assert result.tar_at_far == {} and set(result.rank_accuracy) == {1, 5, 10}
