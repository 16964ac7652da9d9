"""``faceforge plan``: the per-GPU memory estimate, its arithmetic, and a check against the
memory one training step really takes on this CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from faceforge.cli import main
from faceforge.config import load_config
from faceforge.train.plan import FP32, PARAMETER_COPIES, plan_memory

SMALL = ["model.embedding_size=128", "train.batch_size=32", "train.amp=fp32"]


def test_partial_fc_divides_the_classifier_by_the_gpus() -> None:
    full = plan_memory(load_config(None, SMALL), gpus=8, classes=100_000)
    pfc = plan_memory(load_config(None, [*SMALL, "head.partial_fc=true"]), gpus=8, classes=100_000)
    sampled = load_config(None, [*SMALL, "head.partial_fc=true", "head.sample_rate=0.1"])
    assert full.classifier == 100_000 * 128 * FP32 * PARAMETER_COPIES
    assert pfc.classes_per_gpu == 12_500 and pfc.classifier == full.classifier // 8
    assert pfc.logits == 32 * 8 * 12_500 * FP32 * 3  # the global batch against one shard
    assert plan_memory(sampled, gpus=8, classes=100_000).logits == 32 * 8 * 1_250 * FP32 * 3
    assert pfc.activations == full.activations and pfc.backbone == full.backbone


def test_half_precision_and_checkpointing_shrink_the_activations() -> None:
    fp32 = plan_memory(load_config(None, [*SMALL, "model.backbone=iresnet18"]), 1, 1000)
    bf16 = plan_memory(
        load_config(None, [*SMALL, "model.backbone=iresnet18", "train.amp=bf16"]), 1, 1000
    )
    checkpointed = plan_memory(
        load_config(None, [*SMALL, "model.backbone=iresnet18", "model.grad_checkpointing=true"]),
        1,
        1000,
    )
    assert bf16.activations < 0.75 * fp32.activations
    assert checkpointed.activations < 0.6 * fp32.activations  # the 112x112 stem stays


def test_a_cpu_without_native_bf16_plans_a_gpu_runs_half_precision(monkeypatch) -> None:
    """auto resolved on such a CPU is fp32: the plan doubled the activations of a GPU run,
    which takes fp16 there."""
    auto = load_config(None, ["model.embedding_size=128", "train.batch_size=32"])
    native = plan_memory(auto, 1, 1000).activations
    monkeypatch.setattr("faceforge.core.precision.native_bf16", lambda device: False)
    assert plan_memory(auto, 1, 1000).activations == native
    fp32 = plan_memory(load_config(None, SMALL), 1, 1000).activations
    assert native < 0.75 * fp32


MEASURE = """
import json, sys
from pathlib import Path
import torch
from faceforge.config import load_config
from faceforge.train.engine import train_step
from faceforge.train.main import setup
torch.set_num_threads(1)
cfg = load_config(None, sys.argv[2:])
run, state = setup(cfg, log=lambda _: None)
batch = next(iter(run.loader(epoch=0)))
def kib(field):  # VmHWM is the peak that clear_refs resets (ru_maxrss keeps old peaks)
    text = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith(field)))
Path("/proc/self/clear_refs").write_text("5")
before = kib("VmRSS:")
train_step(run, state, batch)
grown = (kib("VmHWM:") - before) * 1024
Path(sys.argv[1]).write_text(json.dumps(grown))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_the_estimate_matches_the_memory_a_step_takes(tmp_path: Path) -> None:
    """What the first step adds (activations, gradients, momentum, logits) against the plan
    minus the weights, which exist before the step."""
    overrides = [
        *SMALL,
        "data.synthetic.num_identities=2000",
        "data.synthetic.images_per_identity=1",
        "data.synthetic.cache=false",
        "train.progress=false",
        "train.tensorboard=false",
        f"train.output_dir={tmp_path / 'run'}",
    ]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024), "OMP_NUM_THREADS": "1"}
    result = tmp_path / "grown.json"
    command = [sys.executable, "-c", MEASURE, str(result), *overrides]
    subprocess.run(command, env=env, check=True, timeout=120)
    measured = json.loads(result.read_text())
    plan = plan_memory(load_config(None, overrides), gpus=1, classes=2000)
    weights = (plan.backbone + plan.classifier) // PARAMETER_COPIES
    expected = plan.total - weights
    assert 0.5 < measured / expected < 2.0, (measured, expected)


def test_plan_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--config", "quickstart", "--gpus", "2", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "200 classes, 2 GPU(s) x 32 images" in out and "total per GPU" in out
    assert main(["plan", "--config", "casia_mobilefacenet_arcface"]) == 2
    assert "give --classes, or data.path=DATASET to count them (data.path " in (
        capsys.readouterr().err
    )


def test_plan_counts_the_identities_of_an_existing_dataset(tmp_path: Path, capsys) -> None:
    """A recipe pointed at its data needs no --classes: the dataset says how many."""
    for person in range(3):
        (tmp_path / f"id{person}").mkdir()
        (tmp_path / f"id{person}" / "0.jpg").write_bytes(b"")  # listed, never decoded
    argv = ["plan", "--config", "casia_mobilefacenet_arcface", f"data.path={tmp_path}", *SMALL]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("mobilefacenet, 3 classes, 1 GPU(s) x 32 images")
    counted = plan_memory(load_config(None, ["model.backbone=mobilefacenet", *SMALL]), 1, 3)
    assert f"{counted.total / 2**30:8.2f} GiB" in out
    assert main([*argv, "--classes", "10572"]) == 0  # --classes wins
    assert "10,572 classes" in capsys.readouterr().out
