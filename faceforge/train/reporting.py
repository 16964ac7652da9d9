"""Every side effect of a training run (console, progress bar, TensorBoard, files) behind one
rank-0 guard, so the engine never asks "am I rank 0?" itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from faceforge.config import Config, save_config
from faceforge.core.checkpoint import Checkpoint


class Reporter:
    """Logs, shows progress, writes scalars and files; does nothing unless ``enabled``
    (the main process of a distributed run, or the only process)."""

    def __init__(
        self, cfg: Config, enabled: bool = True, log: Callable[[str], None] = print
    ) -> None:
        self.enabled = enabled
        self.output_dir = Path(cfg.train.output_dir)
        self._cfg = cfg
        self._log = log
        self._tensorboard = cfg.train.tensorboard
        self._writer = None
        self._bar: tqdm | None = None
        self._step = 0

    def log(self, message: str, any_rank: bool = False) -> None:
        """Say ``message`` (on the main process only, unless ``any_rank``)."""
        if self.enabled or any_rank:
            self._log(message)

    def start(self, step: int, total_steps: int) -> None:
        """Open the output folder: the resolved config, TensorBoard and the progress bar."""
        if not self.enabled:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        save_config(self._cfg, self.output_dir / "config.yaml")
        if self._tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.output_dir / "tensorboard"))
        self._step = step
        self._bar = tqdm(
            total=total_steps,
            initial=step,
            unit="step",
            disable=not self._cfg.train.progress,
            dynamic_ncols=True,
        )

    def advance(self, **postfix: str) -> None:
        """One step done; ``postfix`` (e.g. loss, images/s, given at logging steps) is shown
        beside the bar, or logged as a line when the bar is off (``train.progress=false``)."""
        if self._bar is None:
            return
        self._bar.update(1)
        self._step += 1
        if not postfix:
            return
        if self._cfg.train.progress:
            self._bar.set_postfix(postfix)
        else:
            values = ", ".join(f"{name} {value}" for name, value in postfix.items())
            self.log(f"step {self._step}/{self._bar.total}: {values}")

    def scalars(self, group: str, values: dict[str, float], step: int) -> None:
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(f"{group}/{name}", value, step)

    def save(self, checkpoint: Checkpoint, name: str, any_rank: bool = False) -> Path:
        """Write ``output_dir/name`` atomically (on the main process only, unless
        ``any_rank``: every process holds the same replicated state)."""
        path = self.output_dir / name
        if self.enabled or any_rank:
            checkpoint.save(path)
        return path

    def end_progress(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self.end_progress()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
