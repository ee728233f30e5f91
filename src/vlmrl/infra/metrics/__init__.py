"""What a run reports while it trains: `metrics.jsonl`, TensorBoard events, `curve.png` and the console.

`MetricsLogger` is the one interface a recipe logs through; it keeps the records and hands each
to its sinks (`jsonl.JsonlFile`, `tensorboard.TensorBoardEvents`, `plot.CurvePlot`), which share
one small contract (`Sink`). `console.ConsoleProgress` shows progress; `records` says what a record
is and which of its keys read the clock.

Names follow CleanRL's prefixes, so a TensorBoard user reads them at a glance: `charts/...` for
what the agent achieves and how fast (`charts/success_rate`, `charts/episodic_return`,
`charts/SPS`), `losses/...` for the optimiser's view (`losses/approx_kl`, `losses/clipfrac`),
`eval/...` for held-out evaluations (`eval/success_rate` with `eval/success_ci95_low/high`).

`metrics.jsonl` holds one JSON object per `MetricsLogger.log` call:
`{"update": u, "env_steps": s, "time": seconds since the run started, **values}`. Values are
plain ints and floats; NaN and infinities are written as `null`, so every line is valid JSON.

Timing convention. A resumed run must log the same numbers as an uninterrupted one, and only
wall-clock figures may differ. Those are exactly the keys `is_timing_key` names: `time`,
`charts/SPS`, `charts/tokens_per_second` and anything under `time/` or `perf/`. Put every other
speed or clock reading under `perf/...`; `deterministic_view(record)` drops them all, and is
what a test comparing two runs should compare.

Resuming. `MetricsLogger(run_dir, resume=True)` keeps `metrics.jsonl` (a half-written last line
from a crash is dropped); `truncate_after(update)` then drops the records of updates after the
checkpoint, which the resumed run will log again. As a safety net the first `log` after a resume
also drops any record at or after its own update. TensorBoard events cannot be edited, so the
new event file starts with a purge marker at the first resumed step (`SummaryWriter(purge_step=)`):
TensorBoard discards the old events from that step on and the curves do not zigzag. A logger
that does not resume starts `metrics.jsonl` afresh and purges any older events in the folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from vlmrl.infra.metrics.console import CONSOLE_METRICS, ConsoleProgress, format_metrics
from vlmrl.infra.metrics.jsonl import METRICS_FILE, JsonlFile, read_metrics
from vlmrl.infra.metrics.plot import CURVE_FILE, CurvePlot, plot_curves, smooth
from vlmrl.infra.metrics.records import RESERVED_KEYS, deterministic_view, is_timing_key, plain_number
from vlmrl.infra.metrics.samples import SAMPLES_FILE, SamplesFile
from vlmrl.infra.metrics.tensorboard import TensorBoardEvents

__all__ = [
    "CONSOLE_METRICS",
    "CURVE_FILE",
    "METRICS_FILE",
    "SAMPLES_FILE",
    "ConsoleProgress",
    "MetricsLogger",
    "Sink",
    "deterministic_view",
    "format_metrics",
    "is_timing_key",
    "plain_number",
    "plot_curves",
    "read_metrics",
    "smooth",
]

Record = Mapping[str, Any]


class Sink(Protocol):
    """Where records go. Each call also gets every record kept so far (the new one last)."""

    def write(self, record: Record, records: Sequence[Record]) -> None:
        """A new record."""

    def rewrite(self, records: Sequence[Record]) -> None:
        """Records were dropped (a resume drops what its checkpoint predates); these are kept."""

    def close(self, records: Sequence[Record]) -> None:
        """The run is over; flush and close."""


class MetricsLogger:
    """One run's metrics: each `log` is a record ({"update", "env_steps", "time", **values}) that goes
    to metrics.jsonl, TensorBoard (unless `tensorboard=False`) and curve.png.

    `ceiling` and `reference` are dashed lines on the success panel of curve.png, which is redrawn
    by `log` once `plot_every_seconds` have passed since it was last drawn, and on `close()`.
    """

    def __init__(
        self,
        run_dir: str | Path,
        title: str = "",
        tensorboard: bool = True,
        resume: bool = False,
        *,
        ceiling: float | None = None,
        ceiling_label: str = "ceiling",
        reference: float | None = None,
        reference_label: str = "reference",
        plot_every_seconds: float = 10.0,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / METRICS_FILE
        self.curve_path = self.run_dir / CURVE_FILE
        self._resume = resume
        self._closed = False
        self._clock_start = time.monotonic()
        self._records: list[dict[str, Any]] = read_metrics(self.path) if resume else []
        self._first_log_pending = True
        self._time_before = 0.0
        self._curve = CurvePlot(
            self.curve_path,
            title,
            ceiling=ceiling,
            ceiling_label=ceiling_label,
            reference=reference,
            reference_label=reference_label,
            every_seconds=plot_every_seconds,
        )
        self._sinks: list[Sink] = [JsonlFile(self.path, self._records), self._curve]
        self._events = TensorBoardEvents(self.run_dir, resume) if tensorboard else None
        if self._events is not None:
            self._sinks.append(self._events)
        self._samples: SamplesFile | None = None
        self._samples_resume = resume

    @property
    def plot_every_seconds(self) -> float:
        return self._curve.every_seconds

    @plot_every_seconds.setter
    def plot_every_seconds(self, seconds: float) -> None:
        self._curve.every_seconds = seconds

    def records(self) -> list[dict[str, Any]]:
        """What `metrics.jsonl` holds, oldest first."""
        return [dict(record) for record in self._records]

    def truncate_after(self, update: int) -> None:
        """Drop the records of updates after `update`: the checkpoint being resumed predates them."""
        self._keep(lambda record: record["update"] <= update)
        self._samples_file().truncate_after(update)

    def log(self, update: int, env_steps: int, values: Mapping[str, Any]) -> None:
        """Append one record and hand it to every sink."""
        if self._closed:
            raise RuntimeError("MetricsLogger.log after close()")
        clashes = [key for key in RESERVED_KEYS if key in values]
        if clashes:
            raise ValueError(f"metric names {clashes} are reserved for the record itself")
        numbers = {key: plain_number(value, key) for key, value in values.items()}
        if self._first_log_pending and self._resume:
            self._keep(lambda record: record["update"] < update)
        record = {"update": int(update), "env_steps": int(env_steps), "time": self._elapsed(), **numbers}
        self._records.append(record)
        self._first_log_pending = False
        for sink in self._sinks:
            sink.write(record, self._records)

    def log_samples(self, update: int, env_steps: int, steps: Sequence[Mapping[str, Any]]) -> None:
        """A few sampled steps of update `update` (each with `image`, `prompt`, `answer`, `action`,
        `reward`, `advantage`) to samples.jsonl and samples/, and to TensorBoard as images and text."""
        rows = self._samples_file().write(update, env_steps, steps)
        if self._events is not None:
            self._events.add_samples(env_steps, steps, rows)

    def _samples_file(self) -> SamplesFile:
        if self._samples is None:
            self._samples = SamplesFile(self.run_dir, self._samples_resume)
        return self._samples

    def plot(self) -> None:
        """Redraw curve.png now."""
        self._curve.draw(self._records)

    def close(self) -> None:
        """Draw the final curve and close the files; calling it twice is harmless."""
        if self._closed:
            return
        self._closed = True
        for sink in self._sinks:
            sink.close(self._records)
        if self._samples is not None:
            self._samples.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _keep(self, wanted: Callable[[Record], bool]) -> None:
        kept = [record for record in self._records if wanted(record)]
        if len(kept) != len(self._records):
            self._records = kept
            for sink in self._sinks:
                sink.rewrite(self._records)

    def _elapsed(self) -> float:
        """Seconds of training so far, counting those before a resume (read from the last kept record)."""
        if self._first_log_pending:
            self._time_before = (self._records[-1].get("time") or 0.0) if self._records else 0.0
        return round(self._time_before + time.monotonic() - self._clock_start, 3)
