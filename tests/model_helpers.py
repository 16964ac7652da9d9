"""Helpers shared by the deploy tests: tiny models with realistic outputs, checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

#: a tiny, quiet training run: add the data (or the synthetic identity count) and the steps
TINY_CLI = [
    "data.synthetic.images_per_identity=4",
    "model.embedding_size=16",
    "head.scale=16",
    "train.batch_size=4",
    "train.log_every=1",
    "train.progress=false",
    "train.tensorboard=false",
    "eval.synthetic_pairs=false",
]


def primed_model(name: str = "mobilefacenet", embedding_size: int = 32, seed: int = 0):
    """A randomly initialised backbone whose batch-norm statistics were estimated on synthetic
    faces, so its embeddings have a trained model's scale (a fresh MobileFaceNet in eval mode
    outputs values near 1e-5, which would make absolute tolerances meaningless)."""
    from faceforge.models import build_backbone

    torch.manual_seed(seed)
    return prime_batch_norms(build_backbone(name, embedding_size=embedding_size), seed)


def prime_batch_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Set every batch norm's statistics to those of 16 synthetic faces; eval mode."""
    from faceforge.core.preprocess import Preprocess
    from faceforge.inference.export import synthetic_faces

    batch = torch.from_numpy(Preprocess().normalize(synthetic_faces(16, seed=seed)))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: one pass gives the batch statistics
    with torch.no_grad():
        model.train()(batch)
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


def write_checkpoint(path: Path, model, preprocess=None, metrics=None) -> Path:
    """A faceforge checkpoint of ``model`` (a MobileFaceNet of embedding size 32)."""
    from faceforge.config import Config, ModelConfig
    from faceforge.core.checkpoint import Checkpoint
    from faceforge.core.preprocess import Preprocess

    Checkpoint(
        config=Config(model=ModelConfig(backbone="mobilefacenet", embedding_size=32)),
        backbone=model.state_dict(),
        preprocess=preprocess or Preprocess(),
        metrics=metrics if metrics is not None else {"synthetic": {"best_threshold": 1.0}},
    ).save(path)
    return path


def write_lfw_folder(root: Path, seed: int = 3, width: int = 112) -> tuple[Path, Path]:
    """An LFW-style ``<name>/<name>_NNNN.jpg`` folder of synthetic faces (112 x ``width``:
    the centre columns, as SphereFace-style 112x96 crops) and its pairs.txt (one same and one
    different pair per identity, 10 identities)."""
    import cv2

    from faceforge.data.synthetic import SyntheticFaces

    identities, faces = 10, SyntheticFaces(seed)
    images = root / "aligned"
    left = (112 - width) // 2
    for identity in range(identities):
        name = f"Person_{identity}"
        (images / name).mkdir(parents=True)
        for number in (1, 2):
            photo = faces.render(identity, number)[:, left : left + width]
            cv2.imwrite(str(images / name / f"{name}_{number:04d}.jpg"), photo[:, :, ::-1])
    lines = [f"Person_{i}\t1\t2" for i in range(identities)]
    lines += [f"Person_{i}\t1\tPerson_{(i + 1) % identities}\t2" for i in range(identities)]
    pairs = root / "pairs.txt"
    pairs.write_text(f"1\t{identities}\n" + "\n".join(lines) + "\n")
    return pairs, images
