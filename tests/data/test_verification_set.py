"""VerificationSet validates its arrays on construction."""

from __future__ import annotations

import numpy as np
import pytest

from faceforge.data.verification_set import VerificationSet
from faceforge.errors import DataError


def test_valid_set_and_int_labels():
    vset = VerificationSet("ok", np.zeros((4, 8, 8, 3), np.uint8), np.array([1, 0]))
    assert vset.issame.dtype == np.bool_ and vset.num_pairs == 2 and len(vset) == 2


@pytest.mark.parametrize(
    ("images", "issame", "message"),
    [
        (np.zeros((4, 8, 8, 3), np.float32), [True, False], "uint8"),
        (np.zeros((4, 8, 8), np.uint8), [True, False], "shape"),
        (np.zeros((3, 8, 8, 3), np.uint8), [True], "even"),
        (np.zeros((0, 8, 8, 3), np.uint8), [], "even"),
        (np.zeros((4, 8, 8, 3), np.uint8), [True], "2 pairs"),
        (np.zeros((4, 8, 8, 3), np.uint8), [0.5, 1.0], "booleans"),
    ],
)
def test_invalid_sets_raise(images, issame, message):
    with pytest.raises(DataError, match=message):
        VerificationSet("bad", images, np.asarray(issame))
