"""An independent, loop-by-loop IJB protocol for checking :mod:`faceforge.evaluation.ijb`.

Written from the protocol's description only (image weighting -> media mean -> template sum
-> L2 -> inner product; ROC with collinear points dropped; nearest-FAR reading; insightface's
1:N rank-k and TPIR@FPIR), with plain Python lists and floats.
"""

from __future__ import annotations

import math


def pool_templates(features, template_ids, media_ids):
    """{template id: unit-length feature (list of floats)} from weighted image features."""
    media_sums: dict[tuple[int, int], list[float]] = {}
    media_counts: dict[tuple[int, int], int] = {}
    for values, template, media in zip(features, template_ids, media_ids, strict=True):
        key = (int(template), int(media))
        if key not in media_sums:
            media_sums[key] = [0.0] * len(values)
            media_counts[key] = 0
        media_sums[key] = [s + v for s, v in zip(media_sums[key], values, strict=True)]
        media_counts[key] += 1
    templates: dict[int, list[float]] = {}
    for key in sorted(media_sums):
        mean = [s / media_counts[key] for s in media_sums[key]]
        total = templates.setdefault(key[0], [0.0] * len(mean))
        templates[key[0]] = [t + m for t, m in zip(total, mean, strict=True)]
    unit = {}
    for template, values in templates.items():
        norm = math.sqrt(sum(v * v for v in values))
        unit[template] = [v / norm for v in values] if norm > 0 else values
    return unit


def weighted(features, faceness, normalise=False):
    """Each image's features, made unit-length with ``normalise``, times its faceness score
    (unchanged without scores)."""
    out = []
    for i, row in enumerate(features):
        values = [float(v) for v in row]
        if normalise:
            norm = math.sqrt(sum(v * v for v in values))
            values = [v / norm for v in values]
        if faceness is not None:
            values = [v * float(faceness[i]) for v in values]
        out.append(values)
    return out


def dot(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def roc_points(labels, scores):
    """[(fpr, tpr)] from (0, 0), one per distinct threshold, collinear middles dropped."""
    thresholds = sorted(set(scores), reverse=True)
    positives = sum(1 for label in labels if label == 1)
    negatives = len(labels) - positives
    counts = []
    for t in thresholds:
        tp = sum(1 for s, label in zip(scores, labels, strict=True) if s >= t and label == 1)
        fp = sum(1 for s, label in zip(scores, labels, strict=True) if s >= t and label != 1)
        counts.append((fp, tp))
    kept = []
    for i, (fp, tp) in enumerate(counts):
        if i in (0, len(counts) - 1):
            kept.append((fp, tp))
            continue
        before, after = counts[i - 1], counts[i + 1]
        if after[0] - 2 * fp + before[0] != 0 or after[1] - 2 * tp + before[1] != 0:
            kept.append((fp, tp))
    return [(0.0, 0.0)] + [(fp / negatives, tp / positives) for fp, tp in kept]


def tar_at_far(labels, scores, fars):
    """({far: TAR at the nearest point, later point on ties}, {far: interpolated TAR})."""
    points = roc_points(labels, scores)
    nearest, interpolated = {}, {}
    for far in fars:
        best = None
        for i, (fpr, _) in enumerate(points):
            if best is None or abs(fpr - far) <= abs(points[best][0] - far):
                best = i
        nearest[far] = points[best][1]
        below = max(i for i, (fpr, _) in enumerate(points) if fpr <= far)
        if below == len(points) - 1:
            interpolated[far] = points[-1][1]
        else:
            (x0, y0), (x1, y1) = points[below], points[below + 1]
            interpolated[far] = y0 + (y1 - y0) / (x1 - x0) * (far - x0)
    return nearest, interpolated


def verify(features, faceness, template_ids, media_ids, pairs, labels, fars):
    """(scores, nearest TARs, interpolated TARs)."""
    pooled = pool_templates(weighted(features, faceness), template_ids, media_ids)
    scores = [dot(pooled[int(a)], pooled[int(b)]) for a, b in pairs]
    nearest, interpolated = tar_at_far([int(x) for x in labels], scores, fars)
    return scores, nearest, interpolated


def identify(features, faceness, template_ids, media_ids, gallery, probes, ranks, fpirs):
    """({rank: accuracy}, {fpir: tpir}) with insightface's 1:N definitions."""
    pooled = pool_templates(weighted(features, faceness), template_ids, media_ids)
    gallery_subject, probe_subject = {}, {}
    for template, subject in zip(*gallery, strict=True):
        gallery_subject.setdefault(int(template), int(subject))
    for template, subject in zip(*probes, strict=True):
        probe_subject.setdefault(int(template), int(subject))
    gallery_list = sorted(gallery_subject)
    mated, non_mated, ranks_of = [], [], []
    for probe in sorted(probe_subject):
        scores = [dot(pooled[probe], pooled[g]) for g in gallery_list]
        mate = [gallery_subject[g] for g in gallery_list].index(probe_subject[probe])
        mated.append(scores[mate])
        non_mated += [s for j, s in enumerate(scores) if j != mate]
        ranks_of.append(1 + sum(1 for s in scores if s > scores[mate]))
    accuracy = {k: sum(1 for r in ranks_of if r <= k) / len(ranks_of) for k in ranks}
    non_mated.sort(reverse=True)
    tpir = {}
    for fpir in fpirs:
        threshold = non_mated[math.ceil(len(mated) * fpir) - 1]
        tpir[fpir] = sum(1 for s in mated if s > threshold) / len(mated)
    return accuracy, tpir
