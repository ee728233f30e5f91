"""Progress on the terminal: a rich bar with the few numbers worth watching, or, when the stream is
not a terminal (CI logs, a log file), one plain line every few updates."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

from vlmrl.infra.metrics.records import plain_number

CONSOLE_METRICS = (
    ("success", "charts/success_rate"),
    ("eval", "eval/success_rate"),
    ("return", "charts/episodic_return"),
    ("invalid", "charts/invalid_rate"),
    ("kl", "losses/approx_kl"),
    ("clipfrac", "losses/clipfrac"),
    ("SPS", "charts/SPS"),
    ("loss", "sft/loss"),
    ("valid", "sft/valid_rate"),
    ("fields", "sft/field_accuracy"),
    ("read", "sft/read_all_fields"),
)


def format_metrics(values: Mapping[str, Any]) -> str:
    """The few numbers worth watching, as one short line: `success 0.40  return 1.2  kl 0.0031 ...`."""
    parts = []
    for name, key in CONSOLE_METRICS:
        value = plain_number(values.get(key), key)
        if value is None:
            continue
        text = f"{value:.0f}" if key == "charts/SPS" else f"{value:.3g}"
        parts.append(f"{name} {text}")
    return "  ".join(parts)


class ConsoleProgress:
    """Training progress on the terminal: a bar over the total environment steps and a metrics line.

    When `stream` (default stderr) is not a terminal, as in CI logs, there is no bar: one plain
    line is printed every `print_every` updates, and at the last one.
    """

    def __init__(
        self,
        total_env_steps: int,
        description: str = "train",
        stream: TextIO | None = None,
        print_every: int = 10,
        live: bool | None = None,
        unit: str = "env steps",
        updates_done: int = 0,
        steps_done: int = 0,
    ) -> None:
        self.total = total_env_steps
        self.unit = unit
        self.description = description
        self.stream = stream if stream is not None else sys.stderr
        self.print_every = max(1, print_every)
        self.live = self.stream.isatty() if live is None else live
        self.updates = updates_done
        """Updates counted so far, those before a resume included (the line says "update 12", not "update 1")."""
        self.steps_done = steps_done
        self.latest: dict[str, Any] = {}
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ConsoleProgress:
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn(self.description),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[metrics]}"),
                console=Console(file=self.stream),
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.description, total=self.total, completed=min(self.steps_done, self.total), metrics=""
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def update(self, env_steps: int, values: Mapping[str, Any]) -> None:
        """Record one update: `values` join the latest seen (an eval figure stays shown until the next)."""
        self.updates += 1
        self.latest.update(values)
        metrics = format_metrics(self.latest)
        if self._progress is not None:
            self._progress.update(self._task, completed=min(env_steps, self.total), metrics=metrics)
        elif self.updates % self.print_every == 0 or env_steps >= self.total:
            percent = 100 * env_steps / self.total if self.total else 100.0
            line = f"{self.description} update {self.updates}  {self.unit} {env_steps}/{self.total} ({percent:.0f}%)"
            print(f"{line}  {metrics}".rstrip(), file=self.stream, flush=True)
