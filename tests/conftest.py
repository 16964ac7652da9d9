"""Shared fixtures: the optional real-photo data in ../shared/data, the shipped MTCNN weights,
tiny primed models and their checkpoint / ONNX export."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from model_helpers import primed_model, write_checkpoint

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject.toml): a worker per core this process may use, at most 8 (each
    holds its own PyTorch). Each test file runs in one worker (``--dist loadfile``), so its
    module fixtures are built once."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(cores or 1, 8)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data; tests using it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real face data not available at {SHARED_DATA} (only in the dev workplace)")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """Run the suite's small models on one thread: they gain nothing from more, and on a
    shared 2-core machine OpenMP threads waiting for a busy core make small forward passes
    about 10x slower. No checked number depends on the thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def mtcnn():
    """The pretrained MTCNN with the weights shipped in the package."""
    from faceforge.inference.detection.mtcnn import MTCNN

    return MTCNN.from_weights(device="cpu")


@pytest.fixture(scope="session")
def mtcnn_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of ``pnet.pt``, ``rnet.pt``, ``onet.pt`` in facenet-pytorch's layout (the
    shipped weights, saved as state dicts): what ``mtcnn:DIR`` names."""
    from faceforge.inference.detection.mtcnn import packaged_weights

    folder = tmp_path_factory.mktemp("mtcnn")
    for net, state in packaged_weights().items():
        torch.save(state, folder / f"{net}.pt")
    return folder


@pytest.fixture(scope="session")
def lfw_images(shared_data: Path) -> list[Path]:
    """Four LFW photos (250x250, one person each, roughly centred)."""
    names = ["AJ_Cook", "Aaron_Guiel", "Abdullah_Gul", "Adam_Sandler"]
    paths = [sorted((shared_data / "lfw-view1" / "images" / n).glob("*.jpg"))[0] for n in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"LFW photos missing: {missing}")
    return paths


@pytest.fixture(scope="session")
def chip_images(shared_data: Path) -> list[Path]:
    """Three 150x150 dlib face chips of different people."""
    root = shared_data / "photos" / "dlib_johns"
    paths = [sorted(d.glob("*.jpg"))[0] for d in sorted(root.iterdir())[:3]]
    if len(paths) < 3:
        pytest.skip(f"dlib chips missing in {root}")
    return paths


@pytest.fixture(scope="session")
def group_photo(shared_data: Path) -> Path:
    """A portrait with two more people in the background (660x440)."""
    path = shared_data / "photos" / "deepface_tests" / "id05" / "img62.jpg"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return path


@pytest.fixture(scope="session")
def tiny_model():
    return primed_model()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> Path:
    """MobileFaceNet (32-d) checkpoint whose stored threshold is cosine 0.5."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", tiny_model)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path):
    """``tiny_checkpoint`` exported to ONNX (the :class:`ExportReport`)."""
    from faceforge.inference.export import export_checkpoint

    return export_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "tiny.onnx")
