"""A run folder's life: one process and one run at a time, no crash leftovers, room on its disk.

- **One run per folder.** A new run into a folder that holds anything (another run, say) is
  refused in one line: its checkpoints would otherwise sit beside the new ones, and a later
  `--resume` would pick the old run's newest step. `overwrite` starts clean instead, and only
  in a folder that is recognisably a vlmrl run (`holds_a_run`).
- **One process per folder.** The folder is locked (`.vlmrl.lock`, an OS file lock the kernel
  releases when the process dies, even by `kill -9`) for as long as the run writes to it; a
  second `vlmrl train --resume` of the same run is refused instead of interleaving checkpoints.
- **No leftovers.** Once locked, what a killed save left behind (`checkpoints/.tmp-*`) is removed.
- **Room.** `check_free_space` refuses to start when the disk cannot hold what the run will
  write; `writing` turns a failed write (a disk filling up mid-run) into one line saying what
  survived and how to continue.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from vlmrl.infra.checkpoint import TMP_PREFIX, checkpoints_dir
from vlmrl.infra.errors import UsageError

LOCK_FILE = ".vlmrl.lock"
RUN_MARKERS = ("config.yaml", "summary.json", "metrics.jsonl", "checkpoints")
"""What every vlmrl run folder holds one of (train and sft: config.yaml; bench learn: summary.json)."""
LOG_ROOM = 16 * 2**20
"""Bytes kept free beyond the estimate, for metrics.jsonl, TensorBoard events and curve.png."""


class RunFolder:
    """Claim `path` for one run (see the module docstring): `with RunFolder(path, ...) as folder:`.

    `resume`: the folder holds the run to continue (it must not be refused for holding it).
    `overwrite`: a folder holding an earlier run is emptied first. `refusal` is the end of the
    refusal's sentence: how to continue or replace that run with this command.
    """

    def __init__(self, path: str | Path, *, resume: bool = False, overwrite: bool = False, refusal: str = "") -> None:
        self.path = Path(path)
        self.resume, self.overwrite, self.refusal = resume, overwrite, refusal
        self._lock: FileLock | None = None
        self._created = False

    def __enter__(self) -> RunFolder:
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise UsageError(f"run folder {str(self.path)!r} is a file; choose another out") from None
        lock = FileLock(self.path / LOCK_FILE, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise UsageError(
                f"run folder {str(self.path)!r} is in use by another vlmrl process; wait for it to finish or stop it"
            ) from None
        self._lock = lock
        try:
            if not self.resume:
                self._check_empty()
            remove_leftovers(self.path)
        except BaseException:
            self._release(failed=True)
            raise
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self._release(failed=exc_type is not None)

    def _release(self, failed: bool) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if failed and self._created and [p.name for p in self.path.iterdir()] == [LOCK_FILE]:
            shutil.rmtree(self.path, ignore_errors=True)  # a run that wrote nothing leaves no folder

    def _check_empty(self) -> None:
        held = sorted(p.name for p in self.path.iterdir() if p.name != LOCK_FILE)
        if not held:
            return
        if self.overwrite and holds_a_run(self.path):
            for name in held:
                entry = self.path / name
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            return
        shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
        if self.overwrite:
            raise UsageError(
                f"run folder {str(self.path)!r} holds files that are not a vlmrl run ({shown}); "
                "--overwrite replaces only run folders: choose another out"
            )
        raise UsageError(f"run folder {str(self.path)!r} is not empty (it holds {shown}); {self.refusal}")


def holds_a_run(folder: Path) -> bool:
    """Whether `folder` is a vlmrl run: it holds one of `RUN_MARKERS`, or its subfolders do (the
    `sft/` and `rl/` runs of a `bench learn` folder, even one killed before its summary)."""
    children = [folder / name for name in RUN_MARKERS]
    children += [sub / name for sub in folder.iterdir() if sub.is_dir() for name in RUN_MARKERS]
    return any(path.exists() for path in children)


def remove_leftovers(run_dir: Path) -> None:
    """What an interrupted save left: unfinished checkpoint folders (`checkpoints/.tmp-*`)."""
    root = checkpoints_dir(run_dir)
    if root.is_dir():
        for leftover in root.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)


def parameter_bytes(parameters: Iterable[Any]) -> int:
    """Bytes the tensors take (in memory, and on disk as safetensors): what the disk checks estimate from."""
    return sum(p.numel() * p.element_size() for p in parameters)


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse to start a run whose files will not fit: `needed` bytes (plus `LOG_ROOM`) for `what`."""
    free = shutil.disk_usage(folder).free
    if free < needed + LOG_ROOM:
        raise UsageError(
            f"not enough disk space for {str(folder)!r}: {_size(free)} free, the run needs about "
            f"{_size(needed + LOG_ROOM)} ({what}, and its logs); free some space or choose another out"
        )


def _size(n: float) -> str:
    for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f} {suffix}"
    return f"{int(n)} bytes"


WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})
"""Errors that mean a write failed, whatever file it was (TensorBoard's thread names none)."""


@contextmanager
def writing(run_dir: Path, after: Callable[[], str]) -> Iterator[None]:
    """A failed write of the run (the disk full, the folder removed or read-only) becomes one line:
    what failed, then `after()`: what survived and how to continue. Other OSErrors pass through."""
    try:
        yield
    except OSError as error:
        inside = error.filename is not None and Path(os.path.abspath(error.filename)).is_relative_to(run_dir.absolute())
        if error.errno not in WRITE_ERRORS and not inside:
            raise
        reason = error.strerror or str(error)
        target = f" ({error.filename})" if error.filename else ""
        raise UsageError(f"cannot write the run in {str(run_dir)!r}: {reason}{target}; {after()}") from None
