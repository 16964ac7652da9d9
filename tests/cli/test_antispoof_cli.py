"""``faceforge liveness train`` then ``faceforge eval liveness`` on a tiny synthetic folder of
live faces and their print / screen-replay versions (two training steps)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faceforge.cli import main
from faceforge.data.image_io import encode_image, read_image
from faceforge.data.spoof import ATTACKS
from faceforge.data.synthetic.faces import SyntheticFaces
from faceforge.evaluation.pad import pad_report
from faceforge.inference.liveness import face_cropper, load_liveness_model
from faceforge.train.antispoof import live_scores, read_spoof_folder


@pytest.fixture(scope="module")
def spoof_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """live/ with 4 synthetic faces, spoof/print and spoof/replay with their attacks."""
    root = tmp_path_factory.mktemp("pad")
    faces, rng = SyntheticFaces(3), np.random.default_rng(0)
    for i in range(4):
        face = faces.render(i, 0)
        images = {"live": face} | {f"spoof/{k}": ATTACKS.get(k)(face, rng) for k in ATTACKS.names()}
        for folder, image in images.items():
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / f"{i}.png").write_bytes(encode_image(image, ".png"))
    return root


def test_train_writes_the_published_name_and_eval_reports_pad_metrics(
    spoof_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    recipe = ["input_size=32", "steps=2", "batch_size=4"]
    run = tmp_path / "run"
    argv = ["liveness", "train", "--data", str(spoof_folder), "-o", str(run), *recipe]
    assert main([*argv, "--eval-data", str(spoof_folder)]) == 0
    out = capsys.readouterr().out
    model_path = tmp_path / "run" / "2_7_32x32_MiniFASNetV2.pth"
    assert f"wrote {model_path}" in out and "APCER" in out and "HTER" in out

    report_path = tmp_path / "pad.json"
    argv = ["eval", "liveness", "--liveness-model", str(model_path), "--data", str(spoof_folder)]
    assert main([*argv, "--liveness-threshold", "0.4", "--json", str(report_path)]) == 0
    assert "APCER" in capsys.readouterr().out
    model = load_liveness_model(model_path)
    data = read_spoof_folder(spoof_folder, 32)
    types = [data.classes[label] for label in data.labels]
    expected = pad_report(live_scores(model.network, data.images), data.labels == 1, 0.4, types)
    assert json.loads(report_path.read_text()) == json.loads(json.dumps(expected.as_dict()))
    assert set(expected.apcer_per_type) == set(ATTACKS.names())


def test_photos_are_cut_at_the_models_scale_with_a_detector(
    lfw_images: list[Path], tmp_path: Path, mtcnn, capsys: pytest.CaptureFixture
) -> None:
    """Real photos (MTCNN finds their faces) and their synthetic attacks, and a blank one."""
    photos, rng = tmp_path / "photos", np.random.default_rng(0)
    for i, path in enumerate(lfw_images):
        photo = read_image(path)
        images = {"live": photo} | {
            f"spoof/{k}": ATTACKS.get(k)(photo, rng) for k in ATTACKS.names()
        }
        for folder, image in images.items():
            (photos / folder).mkdir(parents=True, exist_ok=True)
            (photos / folder / f"{i}.png").write_bytes(encode_image(image, ".png"))
    (photos / "live" / "blank.png").write_bytes(encode_image(np.zeros((90, 90, 3), "u1"), ".png"))
    run, recipe = tmp_path / "run", ["input_size=32", "steps=2", "batch_size=4", "scale=1.5"]
    argv = ["liveness", "train", "--data", str(photos), "--detector", "mtcnn", "-o", str(run)]
    assert main([*argv, *recipe]) == 0
    out = capsys.readouterr().out
    assert f"{photos}: left out 1 photos without a detected face" in out, out
    model_path = run / "1_5_32x32_MiniFASNetV2.pth"
    report_path = tmp_path / "pad.json"
    argv = ["eval", "liveness", "--liveness-model", str(model_path), "--data", str(photos)]
    assert main([*argv, "--detector", "mtcnn", "--json", str(report_path)]) == 0
    model = load_liveness_model(model_path)
    data = read_spoof_folder(photos, 32, face_cropper(mtcnn, 1.5, (32, 32)))
    types = [data.classes[label] for label in data.labels]
    expected = pad_report(live_scores(model.network, data.images), data.labels == 1, 0.5, types)
    assert json.loads(report_path.read_text()) == json.loads(json.dumps(expected.as_dict()))


def test_an_unknown_recipe_key_is_one_line(spoof_folder: Path, tmp_path: Path, capsys) -> None:
    argv = ["liveness", "train", "--data", str(spoof_folder), "-o", str(tmp_path), "stepz=2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("faceforge liveness train: error: ") and err.count("\n") == 1
    assert "stepz" in err
    assert list(tmp_path.iterdir()) == []


def test_a_recipe_is_found_by_name_or_path(tmp_path: Path) -> None:
    from faceforge.train.antispoof import load_antispoof_config

    by_name = load_antispoof_config("minifasnet_v2", ["steps=3"])
    path = Path(__file__).parents[2] / "faceforge/configs/antispoof/minifasnet_v2.yaml"
    assert by_name.steps == 3 and load_antispoof_config(path).steps == 2000
