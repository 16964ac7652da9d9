"""Acceptance: a tiny MiniFASNet trained by the recipe on synthetic spoofs of real photos
judges held-out live faces live and their synthetic print / replay versions spoof."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from faceforge.data.spoof import ATTACKS
from faceforge.errors import ConfigError
from faceforge.evaluation.pad import pad_report
from faceforge.inference.detection.base import Detection
from faceforge.inference.liveness import face_cropper, liveness_crop
from faceforge.train.antispoof import (
    SpoofSet,
    evaluate_antispoof,
    load_antispoof_config,
    published_name,
    read_spoof_folder,
    train_antispoof,
)

RECIPE = Path(__file__).resolve().parents[2] / "faceforge" / "configs"
SIZE = 32


def _live_faces(shared_data: Path, count: int) -> np.ndarray:
    """Centre crops of LFW deep-funneled photos (the face fills the middle), one per person."""
    from faceforge.data.image_io import read_image
    from faceforge.train.antispoof import _fit

    people = sorted((shared_data / "lfw-view1" / "images").iterdir())[:count]
    images = [read_image(next(iter(sorted(p.iterdir()))))[60:190, 60:190] for p in people]
    return np.stack([_fit(image, SIZE) for image in images])


def _with_attacks(live: np.ndarray, seed: int) -> SpoofSet:
    rng = np.random.default_rng(seed)
    classes = ["print", "live", "replay"]
    attacked = [ATTACKS.get(name)(image, rng) for name in ("print", "replay") for image in live]
    labels = [1] * len(live) + [0] * len(live) + [2] * len(live)
    return SpoofSet(np.concatenate([live, np.stack(attacked)]), np.asarray(labels), classes)


@pytest.fixture(scope="module")
def trained(shared_data: Path):
    live = _live_faces(shared_data, 160)
    train, held_out = live[:120], live[120:]
    cfg = load_antispoof_config(RECIPE / "antispoof" / "minifasnet_v2.yaml")
    cfg = replace(cfg, input_size=SIZE, steps=150, batch_size=32, lr=3e-3)
    model = train_antispoof(_with_attacks(train, seed=1), cfg)
    return model, _with_attacks(held_out, seed=2)


def test_recipe_separates_live_from_synthetic_attacks(trained) -> None:
    model, held_out = trained
    report = evaluate_antispoof(model, held_out)
    print(f"held-out PAD: {report.as_dict()}")
    assert report.bpcer <= 0.1
    assert report.apcer <= 0.1
    assert set(report.apcer_per_type) == {"print", "replay"}


def test_pad_metrics_by_hand() -> None:
    scores = [0.9, 0.8, 0.3, 0.6, 0.1, 0.7]
    live = [True, True, True, False, False, False]
    types = ["", "", "", "print", "replay", "replay"]
    report = pad_report(scores, live, 0.5, types)
    assert report.bpcer == pytest.approx(1 / 3)
    assert report.apcer_per_type == {"print": 1.0, "replay": 0.5}
    assert report.apcer == 1.0 and report.acer == pytest.approx(2 / 3)


def test_folder_reader_puts_live_at_index_one(tmp_path: Path) -> None:
    from faceforge.data.image_io import encode_image

    rng = np.random.default_rng(0)
    for folder in ("live", "spoof/print", "spoof/replay"):
        (tmp_path / folder).mkdir(parents=True)
        image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        (tmp_path / folder / "a.png").write_bytes(encode_image(image, ".png"))
    data = read_spoof_folder(tmp_path, 16)
    assert data.classes == ["print", "live", "replay"]
    assert sorted(data.labels.tolist()) == [0, 1, 2]


def test_published_name_round_trips() -> None:
    from faceforge.inference.liveness import _PUBLISHED_NAME

    cfg = load_antispoof_config(RECIPE / "antispoof" / "minifasnet_v2.yaml")
    assert published_name(cfg) == "2_7_80x80_MiniFASNetV2.pth"
    assert _PUBLISHED_NAME.match(Path(published_name(replace(cfg, scale=4.0))).stem)


class _OneBox:
    """A detector finding one face at a fixed box in every photo but a blank one."""

    box = (40.0, 50.0, 80.0, 100.0)

    def detect(self, image: np.ndarray) -> list[Detection]:
        return [] if image.std() == 0 else [Detection(self.box, 0.9, np.zeros((5, 2), "f4"))]

    def detect_batch(self, images):
        return [self.detect(image) for image in images]


def test_photos_are_cropped_at_the_recipes_scale_as_the_checker_crops_them(tmp_path: Path):
    """The recipe's scale only named the weights file: a model trained on tight crops was
    then judged by the checker on crops 2.7 times the face box."""
    from faceforge.data.image_io import encode_image, read_image

    rng = np.random.default_rng(0)
    for folder, name in [("live", "a.png"), ("live", "blank.png"), ("spoof", "b.png")]:
        (tmp_path / folder).mkdir(exist_ok=True)
        image = rng.integers(0, 256, (160, 200, 3), dtype=np.uint8)
        image = image * 0 if name == "blank.png" else image
        (tmp_path / folder / name).write_bytes(encode_image(image, ".png"))
    wide = read_spoof_folder(tmp_path, 16, face_cropper(_OneBox(), 2.7, (16, 16)))
    photos = [tmp_path / "live" / "a.png", tmp_path / "spoof" / "b.png"]
    expected = [liveness_crop(read_image(p), _OneBox.box, 2.7, (16, 16)) for p in photos]
    np.testing.assert_array_equal(wide.images, np.stack(expected))
    assert wide.labels.tolist() == [1, 0] and wide.left_out == [tmp_path / "live" / "blank.png"]
    tight = read_spoof_folder(tmp_path, 16, face_cropper(_OneBox(), 1.0, (16, 16)))
    assert not np.array_equal(tight.images, wide.images)


def test_training_without_both_live_and_spoof_images_is_one_line() -> None:
    """One image left after detection crashed in BatchNorm with a PyTorch traceback."""
    from faceforge.errors import DataError

    one = SpoofSet(np.zeros((1, SIZE, SIZE, 3), np.uint8), np.array([1]), ["spoof", "live"])
    cfg = replace(load_antispoof_config("minifasnet_v2"), input_size=SIZE, steps=1)
    with pytest.raises(DataError, match="training needs live and spoof images: found 1 live and 0"):
        train_antispoof(one, cfg)


def test_recipe_overrides_follow_the_config_rules() -> None:
    """The recipe reads overrides as the training config does: numbers where numbers go,
    text as written where text goes, unknown keys refused."""
    cfg = load_antispoof_config("minifasnet_v2", ["lr=0.01", "arch=2024"])
    assert (cfg.lr, cfg.arch) == (0.01, "2024")
    with pytest.raises(ConfigError, match="unknown config key 'lrr'"):
        load_antispoof_config("minifasnet_v2", ["lrr=0.01"])
