"""TensorBoard scalars, or nothing when disabled (so the loop has no branches for it)."""

from __future__ import annotations

from pathlib import Path


class ScalarLogger:
    """Writes ``group/name`` scalars with ``torch.utils.tensorboard`` when given a folder."""

    def __init__(self, log_dir: str | Path | None) -> None:
        self._writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(log_dir))

    def scalars(self, group: str, values: dict[str, float], step: int) -> None:
        if self._writer is None:
            return
        for name, value in values.items():
            self._writer.add_scalar(f"{group}/{name}", value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
