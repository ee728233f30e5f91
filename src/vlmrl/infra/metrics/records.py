"""What a metrics record is: its reserved keys, which keys read the wall clock, plain JSON numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

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
