"""`metrics.jsonl`: one JSON object per record, appended and flushed as it comes; rewritten in one
atomic step when a resume drops records; read back with a torn last line (a crash mid-append) skipped."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from vlmrl.infra.files import atomic_write_text

METRICS_FILE = "metrics.jsonl"


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


class JsonlFile:
    """The metrics.jsonl sink: `write` appends one line, `rewrite` replaces the file with the kept records."""

    def __init__(self, path: Path, records: Sequence[Mapping[str, Any]]) -> None:
        self.path = path
        self._write_all(records)
        self._file: TextIO = path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> None:
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()

    def rewrite(self, records: Sequence[Mapping[str, Any]]) -> None:
        self._file.close()
        self._write_all(records)
        self._file = self.path.open("a", encoding="utf-8")

    def _write_all(self, records: Sequence[Mapping[str, Any]]) -> None:
        """The kept records in one step, never leaving a half file."""
        atomic_write_text(self.path, "".join(json.dumps(record, allow_nan=False) + "\n" for record in records))

    def close(self, records: Sequence[Mapping[str, Any]]) -> None:
        self._file.close()
