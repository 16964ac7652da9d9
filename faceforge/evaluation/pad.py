"""Presentation attack detection metrics (ISO/IEC 30107-3).

Scores are live probabilities (high = bona fide); a presentation is accepted as live when
its score is at least the threshold. APCER: the share of attacks accepted (worst attack type
when types are given, as the standard asks); BPCER: the share of bona fide presentations
rejected; ACER: their mean; HTER: the mean of the two at a threshold fixed beforehand (e.g.
on a development set), as face anti-spoofing papers report it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceforge.errors import DataError

#: BPCER operating points of the APCER-at-fixed-BPCER ROC summary
ROC_BPCERS = (0.01, 0.05, 0.1, 0.2)


@dataclass(frozen=True)
class PadReport:
    """Error rates at one threshold and the APCER at fixed BPCERs."""

    threshold: float
    apcer: float
    bpcer: float
    acer: float
    hter: float
    apcer_per_type: dict[str, float]
    apcer_at_bpcer: dict[float, float]

    def as_dict(self) -> dict[str, object]:
        return {
            "threshold": self.threshold,
            "APCER": self.apcer,
            "BPCER": self.bpcer,
            "ACER": self.acer,
            "HTER": self.hter,
            "APCER per type": self.apcer_per_type,
            "APCER @ BPCER": {f"{b:g}": a for b, a in self.apcer_at_bpcer.items()},
        }


def pad_report(
    scores: Sequence[float], live: Sequence[bool], threshold: float = 0.5,
    attack_types: Sequence[str] | None = None,
) -> PadReport:  # fmt: skip
    """PAD metrics of live-probability ``scores``; ``attack_types`` names each presentation's
    attack (ignored for live ones) so APCER is the worst type's."""
    scores_arr = np.asarray(scores, dtype=np.float64)
    live_arr = np.asarray(live, dtype=bool)
    if not live_arr.any() or live_arr.all():
        raise DataError("PAD metrics need both bona fide and attack presentations")
    types = np.asarray(attack_types if attack_types is not None else ["attack"] * len(live_arr))
    per_type = {
        str(name): float(np.mean(scores_arr[~live_arr & (types == name)] >= threshold))
        for name in sorted(set(types[~live_arr].tolist()))
    }
    apcer = max(per_type.values())
    bpcer = float(np.mean(scores_arr[live_arr] < threshold))
    return PadReport(
        threshold, apcer, bpcer, (apcer + bpcer) / 2, (apcer + bpcer) / 2, per_type,
        {b: apcer_at_bpcer(scores_arr, live_arr, b) for b in ROC_BPCERS},
    )  # fmt: skip


def apcer_at_bpcer(scores: np.ndarray, live: np.ndarray, bpcer: float) -> float:
    """APCER at the highest threshold whose BPCER does not exceed ``bpcer``."""
    bona_fide = np.sort(scores[live])
    rejected = int(np.floor(bpcer * len(bona_fide)))
    threshold = bona_fide[rejected]
    return float(np.mean(scores[~live] >= threshold))
