"""Freed memory kept for the next batch: fewer page faults, the user's own tunables respected."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest

from faceforge import allocator
from faceforge.allocator import TUNABLES, retain_freed_memory

glibc_only = pytest.mark.skipif(not allocator._is_glibc(), reason="needs glibc's malloc")

#: a few layers of a face network on a batch of 16 112x112 faces, as the embedder runs them
FORWARDS_SCRIPT = """
import json, os, resource, sys
import torch
from torch import nn
from faceforge.allocator import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else False
net = nn.Sequential(
    nn.Conv2d(3, 64, 3, 2, 1), nn.PReLU(64), nn.Conv2d(64, 128, 1), nn.PReLU(128),
    nn.Conv2d(128, 128, 3, 2, 1, groups=128), nn.Conv2d(128, 64, 1),
).eval()
x = torch.randn(16, 3, 112, 112)
faults = []
with torch.inference_mode():
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        net(x)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults[1:],
                  "tunables": os.environ.get("GLIBC_TUNABLES")}))
"""

#: memory pages of the largest activation (16 x 128 x 56 x 56 float32)
PAGES_PER_ACTIVATION = 16 * 128 * 56 * 56 * 4 // os.sysconf("SC_PAGE_SIZE")


def _forwards(mode: str, tunables: str | None = None) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "GLIBC_TUNABLES"}
    if tunables is not None:
        env["GLIBC_TUNABLES"] = tunables
    done = subprocess.run(
        [sys.executable, "-c", FORWARDS_SCRIPT, mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


@glibc_only
def test_retained_memory_is_not_faulted_in_again_each_forward() -> None:
    default = _forwards("default")
    retained = _forwards("retain")
    assert retained["applied"] is True
    assert retained["tunables"] == TUNABLES  # child processes get the same settings
    # page faults per forward after the first; the median ignores the heap growing once more
    # (the order in which threads free blocks can leave it an activation short at first)
    # with glibc's own thresholds every forward faults its activations back in
    assert statistics.median(default["faults"]) > PAGES_PER_ACTIVATION
    # retained: a forward reuses the memory of the one before
    assert statistics.median(retained["faults"]) < PAGES_PER_ACTIVATION // 10


@glibc_only
def test_other_tunables_are_kept_beside_ours() -> None:
    result = _forwards("retain", tunables="glibc.cpu.x86_rep_movsb_threshold=4096")
    assert result["applied"] is True
    assert result["tunables"] == f"glibc.cpu.x86_rep_movsb_threshold=4096:{TUNABLES}"


def test_a_users_malloc_tunables_win() -> None:
    environ = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert retain_freed_memory(environ) is False
    assert environ == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}


def test_another_c_library_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_name(name: str) -> str:
        raise ValueError(f"unrecognized configuration name {name}")

    monkeypatch.setattr(os, "confstr", no_such_name)
    environ: dict[str, str] = {}
    assert retain_freed_memory(environ) is False
    assert environ == {}


def test_the_command_retains_freed_memory_for_every_verb(monkeypatch: pytest.MonkeyPatch) -> None:
    import faceforge.cli as cli

    calls = []
    monkeypatch.setattr(cli, "retain_freed_memory", lambda: calls.append(True))
    monkeypatch.setattr(cli, "_run", lambda args: 0)
    assert cli.main(["models"]) == 0
    assert calls == [True]
