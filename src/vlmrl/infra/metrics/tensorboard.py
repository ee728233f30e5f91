"""TensorBoard scalars of every record, at its environment step. Events cannot be edited, so a
resumed run's event file starts with a purge marker at its first step: TensorBoard drops the old
events from there and the curves do not zigzag. A fresh run purges any older events in the folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vlmrl.infra.metrics.records import RESERVED_KEYS
from vlmrl.infra.metrics.samples import as_markdown


class TensorBoardEvents:
    """The TensorBoard sink; torch's SummaryWriter is opened at the first record."""

    def __init__(self, run_dir: Path, resume: bool) -> None:
        self.run_dir, self.resume = run_dir, resume
        self._writer: Any = None

    def write(self, record: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> None:
        self._open(record["env_steps"])
        for key, value in record.items():
            if key not in RESERVED_KEYS and value is not None:
                self._writer.add_scalar(key, value, global_step=record["env_steps"])
        self._writer.flush()

    def add_samples(
        self, env_steps: int, steps: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Sampled steps: each one's image (`samples/image/K`) and its prompt and answer (`samples/text/K`)."""
        self._open(env_steps)
        for k, (step, row) in enumerate(zip(steps, rows, strict=True)):
            self._writer.add_image(f"samples/image/{k}", step["image"], global_step=env_steps, dataformats="HWC")
            self._writer.add_text(f"samples/text/{k}", as_markdown(row), global_step=env_steps)
        self._writer.flush()

    def _open(self, env_steps: int) -> None:
        """torch's SummaryWriter, opened at the first event (a resumed run's purges from that step)."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            old_events = any(self.run_dir.glob("events.out.tfevents.*"))
            purge_step = env_steps if self.resume else (0 if old_events else None)
            self._writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge_step)

    def rewrite(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Nothing to do: the purge marker of the first new event drops what the records lost."""

    def close(self, records: Sequence[Mapping[str, Any]]) -> None:
        if self._writer is not None:
            self._writer.close()
