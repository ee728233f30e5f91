"""What a run reports while it trains: `metrics.jsonl`, TensorBoard events, `curve.png` and the console.

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

import json
import math
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from vlmrl.infra.files import atomic_write, atomic_write_text

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "curve.png"
RESERVED_KEYS = ("update", "env_steps", "time")
TIMING_KEYS = frozenset({"time", "charts/SPS", "charts/tokens_per_second"})
TIMING_PREFIXES = ("time/", "perf/")


def is_timing_key(key: str) -> bool:
    """Whether a metric depends on the wall clock, and so may differ between identical runs."""
    return key in TIMING_KEYS or key.startswith(TIMING_PREFIXES)


def deterministic_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record without its wall-clock values: what a resumed run must reproduce exactly."""
    return {key: value for key, value in record.items() if not is_timing_key(key)}


def plain_number(value: Any, key: str = "value") -> int | float | None:
    """A JSON-ready number from a Python, numpy or torch scalar; NaN and infinities become None."""
    if value is None:
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy scalars and arrays, torch tensors
        try:
            value = value.item()
        except (ValueError, RuntimeError) as error:
            raise TypeError(f"metric {key!r} is not a scalar (shape {getattr(value, 'shape', '?')})") from error
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    raise TypeError(f"metric {key!r} is {type(value).__name__}, not a number")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a `metrics.jsonl` (or of the run folder holding one); a torn last line is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # a crash while appending: the line never finished
                break
            raise
    return records


class MetricsLogger:
    """One run's metrics, written three ways at every `log`: a JSON line, TensorBoard scalars, a plot.

    `ceiling` (the best success rate the game allows) and `reference` (a published figure, say)
    are drawn as dashed lines on the success panel. `curve.png` is redrawn by `log` once
    `plot_every_seconds` have passed since the logger started or last drew, and on `close()`.
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
        self.title = title
        self.ceiling, self.ceiling_label = ceiling, ceiling_label
        self.reference, self.reference_label = reference, reference_label
        self.plot_every_seconds = plot_every_seconds
        self._tensorboard = tensorboard
        self._resume = resume
        self._writer: Any = None
        self._closed = False
        self._last_plot = time.monotonic()  # the first redraw waits as long as the later ones
        self._stale = False  # records changed since curve.png was drawn
        self._clock_start = time.monotonic()
        self._records: list[dict[str, Any]] = read_metrics(self.path) if resume else []
        self._first_log_pending = True
        self._time_before = 0.0
        self._rewrite()
        self._file: TextIO = self.path.open("a", encoding="utf-8")

    # -- the records ------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """What `metrics.jsonl` holds, oldest first."""
        return [dict(record) for record in self._records]

    def truncate_after(self, update: int) -> None:
        """Drop the records of updates after `update`: the checkpoint being resumed predates them."""
        self._keep(lambda record: record["update"] <= update)

    def log(self, update: int, env_steps: int, values: Mapping[str, Any]) -> None:
        """Append one record, send its numbers to TensorBoard and maybe redraw the curve."""
        if self._closed:
            raise RuntimeError("MetricsLogger.log after close()")
        clashes = [key for key in RESERVED_KEYS if key in values]
        if clashes:
            raise ValueError(f"metric names {clashes} are reserved for the record itself")
        numbers = {key: plain_number(value, key) for key, value in values.items()}
        if self._first_log_pending and self._resume:
            self._keep(lambda record: record["update"] < update)
        record = {"update": int(update), "env_steps": int(env_steps), "time": self._elapsed(), **numbers}
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        self._records.append(record)
        self._stale = True
        self._write_tensorboard(record)
        self._first_log_pending = False
        if time.monotonic() - self._last_plot >= self.plot_every_seconds:
            self.plot()

    def close(self) -> None:
        """Draw the final curve and close the files; calling it twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._file.close()
        if self._writer is not None:
            self._writer.close()
        if self._stale and self._records:
            self.plot()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _keep(self, wanted: Any) -> None:
        kept = [record for record in self._records if wanted(record)]
        if len(kept) != len(self._records):
            self._records = kept
            self._stale = True
            self._file.close()
            self._rewrite()
            self._file = self.path.open("a", encoding="utf-8")

    def _rewrite(self) -> None:
        """Write the kept records to `metrics.jsonl` in one step, never leaving a half file."""
        atomic_write_text(self.path, "".join(json.dumps(record, allow_nan=False) + "\n" for record in self._records))

    def _elapsed(self) -> float:
        """Seconds of training so far, counting those before a resume (read from the last kept record)."""
        if self._first_log_pending:
            self._time_before = (self._records[-1].get("time") or 0.0) if self._records else 0.0
        return round(self._time_before + time.monotonic() - self._clock_start, 3)

    # -- TensorBoard ------------------------------------------------------------------------

    def _write_tensorboard(self, record: Mapping[str, Any]) -> None:
        if not self._tensorboard:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            old_events = any(self.run_dir.glob("events.out.tfevents.*"))
            purge_step = record["env_steps"] if self._resume else (0 if old_events else None)
            self._writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge_step)
        for key, value in record.items():
            if key not in RESERVED_KEYS and value is not None:
                self._writer.add_scalar(key, value, global_step=record["env_steps"])
        self._writer.flush()

    # -- curve.png --------------------------------------------------------------------------

    def plot(self) -> None:
        """Redraw `curve.png` now (atomically: a reader sees the old picture or the new one)."""
        self._last_plot = time.monotonic()
        self._stale = False
        figure = plot_curves(
            self._records,
            title=self.title,
            ceiling=self.ceiling,
            ceiling_label=self.ceiling_label,
            reference=self.reference,
            reference_label=self.reference_label,
        )
        atomic_write(self.curve_path, lambda temp: figure.savefig(temp, format="png", dpi=100))


def _series(records: Iterable[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(env_steps, value) of the records holding a number under `key`.

    Updates with no value (no episode ended, say) are left out, so the line joins its neighbours.
    """
    xs, ys = [], []
    for record in records:
        if record.get(key) is not None:
            xs.append(record["env_steps"])
            ys.append(record[key])
    return xs, ys


def smooth(values: list[float], window: int) -> list[float]:
    """A centred moving average, narrower at the ends, so the trend does not lag behind the eval points."""
    half = max(0, window // 2)
    sums = [0.0]
    for value in values:
        sums.append(sums[-1] + value)
    out = []
    for i in range(len(values)):
        low, high = max(0, i - half), min(len(values), i + half + 1)
        out.append((sums[high] - sums[low]) / (high - low))
    return out


def plot_curves(
    records: list[Mapping[str, Any]],
    title: str = "",
    ceiling: float | None = None,
    ceiling_label: str = "ceiling",
    reference: float | None = None,
    reference_label: str = "reference",
) -> Any:
    """A matplotlib Figure of success rate and episodic return against environment steps.

    Built on the Agg canvas directly, not pyplot: no window, no global backend switch, nothing
    left behind in pyplot's figure registry by a long run.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    success_axes, return_axes = figure.subplots(1, 2)
    panels = [
        (success_axes, "charts/success_rate", "eval/success_rate", "success rate"),
        (return_axes, "charts/episodic_return", "eval/mean_return", "episodic return"),
    ]
    for axes, train_key, eval_key, label in panels:
        xs, ys = _series(records, train_key)
        if xs:
            many = len(xs) >= 20
            marker = None if many else "."
            axes.plot(xs, ys, color="tab:blue", alpha=0.3 if many else 1.0, lw=1, marker=marker, label="train")
            if many:
                axes.plot(xs, smooth(ys, len(xs) // 15), color="tab:blue", lw=2, label="train (moving average)")
        ex, ey = _series(records, eval_key)
        if ex:
            errors = None
            if eval_key == "eval/success_rate":
                bounds = [
                    (r.get("eval/success_ci95_low"), r.get("eval/success_ci95_high"))
                    for r in records
                    if r.get(eval_key) is not None
                ]
                if all(low is not None and high is not None for low, high in bounds):
                    errors = [
                        [max(0.0, y - low) for y, (low, _) in zip(ey, bounds, strict=True)],
                        [max(0.0, high - y) for y, (_, high) in zip(ey, bounds, strict=True)],
                    ]
            eval_label = "eval (95% CI)" if errors else "eval"
            axes.errorbar(ex, ey, yerr=errors, fmt="o", color="tab:orange", capsize=3, ms=5, label=eval_label)
        if xs or ex:
            axes.xaxis.set_major_formatter(EngFormatter())
        axes.set_xlabel("environment steps")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
    for value, text, color in ((ceiling, ceiling_label, "tab:green"), (reference, reference_label, "tab:red")):
        if value is not None:
            success_axes.axhline(value, ls="--", color=color, lw=1.2, label=f"{text} ({value:.2f})")
    success_axes.set_ylim(-0.02, 1.02)
    success_axes.set_title("success rate")
    return_axes.set_title("episodic return")
    for axes in (success_axes, return_axes):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="best", fontsize="small")
        else:
            axes.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=axes.transAxes, color="gray")
    if title:
        figure.suptitle(title)
    return figure


# -- console ------------------------------------------------------------------------------

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
