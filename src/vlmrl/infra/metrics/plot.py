"""`curve.png`: success rate and return against environment steps, training and held-out, redrawn
at most every few seconds and on close, written atomically (a reader sees the old picture or the new)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vlmrl.infra.files import atomic_write

CURVE_FILE = "curve.png"


class CurvePlot:
    """The curve.png sink. `ceiling` (the best success rate the game allows) and `reference` (a
    published figure, say) are drawn as dashed lines on the success panel."""

    def __init__(
        self,
        path: Path,
        title: str = "",
        *,
        ceiling: float | None = None,
        ceiling_label: str = "ceiling",
        reference: float | None = None,
        reference_label: str = "reference",
        every_seconds: float = 10.0,
    ) -> None:
        self.path, self.title = path, title
        self.ceiling, self.ceiling_label = ceiling, ceiling_label
        self.reference, self.reference_label = reference, reference_label
        self.every_seconds = every_seconds
        self._last_drawn = time.monotonic()  # the first redraw waits as long as the later ones
        self._stale = False  # records changed since curve.png was drawn

    def write(self, record: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> None:
        self._stale = True
        if time.monotonic() - self._last_drawn >= self.every_seconds:
            self.draw(records)

    def rewrite(self, records: Sequence[Mapping[str, Any]]) -> None:
        self._stale = True

    def close(self, records: Sequence[Mapping[str, Any]]) -> None:
        if self._stale and records:
            self.draw(records)

    def draw(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Redraw curve.png now."""
        self._last_drawn = time.monotonic()
        self._stale = False
        figure = plot_curves(
            list(records),
            title=self.title,
            ceiling=self.ceiling,
            ceiling_label=self.ceiling_label,
            reference=self.reference,
            reference_label=self.reference_label,
        )
        atomic_write(self.path, lambda temp: figure.savefig(temp, format="png", dpi=100))


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
