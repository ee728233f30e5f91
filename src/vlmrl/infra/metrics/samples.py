"""`samples.jsonl` and `samples/`: a few sampled steps of the logged updates, for reading what the agent wrote.

Each line is one step: `{"update", "env_steps", "index", "image", "prompt", "answer", "action",
"reward", "advantage"}`, where `image` is the PNG beside it (`samples/u00005-3.png`: update 5,
buffer index 3) and `action` the action the answer was read as (null: unparseable). A resumed
run drops the lines of updates after its checkpoint, as `metrics.jsonl` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlmrl.infra.files import atomic_write
from vlmrl.infra.metrics.jsonl import JsonlFile, read_metrics

SAMPLES_FILE = "samples.jsonl"
SAMPLES_FOLDER = "samples"


class SamplesFile:
    """Appends sampled steps to `samples.jsonl` (through metrics.jsonl's own `JsonlFile`), their images
    to `samples/`."""

    def __init__(self, run_dir: Path, resume: bool) -> None:
        self.path = run_dir / SAMPLES_FILE
        self.folder = run_dir / SAMPLES_FOLDER
        self._rows = read_metrics(self.path) if resume else []
        self._file = JsonlFile(self.path, self._rows)

    def truncate_after(self, update: int) -> None:
        """Drop the steps of updates after `update` (the checkpoint a resume continues from)."""
        kept = [row for row in self._rows if row["update"] <= update]
        if len(kept) != len(self._rows):
            self._rows = kept
            self._file.rewrite(kept)

    def close(self) -> None:
        self._file.close(self._rows)

    def write(self, update: int, env_steps: int, steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Write `steps` (each with an `image` array); returns the rows as written (`image`: a relative path)."""
        self.folder.mkdir(exist_ok=True)
        rows = []
        for step in steps:
            name = f"{SAMPLES_FOLDER}/u{update:05d}-{step['index']}.png"
            image = Image.fromarray(np.asarray(step["image"], dtype=np.uint8))
            atomic_write(self.path.parent / name, lambda temp, image=image: image.save(temp, format="PNG"))
            row = {"update": update, "env_steps": env_steps, **step, "image": name}
            self._rows.append(row)
            self._file.write(row, self._rows)
            rows.append(row)
        return rows


def as_markdown(row: Mapping[str, Any]) -> str:
    """One sampled step as TensorBoard's text panel shows it."""
    return (
        f"**prompt**\n\n```\n{row['prompt']}\n```\n\n**answer**\n\n```\n{row['answer']}\n```\n\n"
        f"action: `{row['action']}` · reward: {row['reward']:g} · advantage: {row['advantage']:.4g}"
    )
