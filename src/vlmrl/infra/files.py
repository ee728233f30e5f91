"""Writing a file so that readers see the old version or the new one, never half of either.

Every file a run rewrites in place (metrics.jsonl when a resume drops rows, curve.png, a model's
weights after vision pretraining, summaries, configs) goes through `atomic_write`: the content is
written to a temporary file in the same folder, then renamed over the target in one step. A
failure (a full disk, Ctrl-C) removes the temporary file and leaves the target as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

SHARED_MODE = 0o644
"""A run's files are meant to be read by others (mkstemp alone would make them private)."""


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """`write(temp)` fills a temporary file beside `path`, which then replaces `path` (keeping its mode)."""
    path = Path(path)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temp))
        os.chmod(temp, path.stat().st_mode & 0o777 if path.exists() else SHARED_MODE)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """`text` (UTF-8) as the whole new content of `path`, atomically."""
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))
