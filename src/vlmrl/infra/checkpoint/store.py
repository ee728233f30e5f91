"""Checkpoint folders on disk: saving atomically, finding the newest intact one, loading, pruning."""

from __future__ import annotations

import json
import operator
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError

from vlmrl.infra.checkpoint.codec import decode, encode
from vlmrl.infra.checkpoint.manifest import (
    FORMAT,
    SECTIONS,
    STATE_FILE,
    STEM,
    TMP_PREFIX,
    VERSION,
    Corrupt,
    StateCheck,
    manifest_digest,
    read_json,
    read_tensors,
    sha256_of,
    step_dirs,
    step_of,
    verify_folder,
)
from vlmrl.infra.checkpoint.rng import Generator, capture_rng, check_generators, restore_rng
from vlmrl.infra.errors import Notice, UsageError


class CheckpointWarning(Notice):
    """A checkpoint was skipped (corrupt or unreadable); the message is one line the CLI can print."""


@dataclass
class LoadedCheckpoint:
    """What `load_checkpoint` gives back; optimizer, scheduler and RNGs were restored in place."""

    path: Path
    step: int
    tensors: dict[str, dict[str, torch.Tensor]]
    state: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    """Lines worth showing the user (e.g. CUDA RNG states that could not be restored on this machine)."""


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Every `step-N` folder of the run, oldest first, intact or not (`.tmp-*` leftovers excluded)."""
    return [path for _, path in step_dirs(checkpoints_dir(run_dir))]


def latest_checkpoint(
    run_dir: str | Path,
    *,
    deep: bool = True,
    on_skip: Callable[[str], None] | None = None,
    check: StateCheck | None = None,
) -> Path | None:
    """The newest intact `step-N` folder, or None. Each newer one that is corrupt is reported, one
    line each, to `on_skip` (default: a `CheckpointWarning`), so a resume can say what it skipped.
    `deep=False` checks file sizes only, not sha256 (faster on multi-GB weights). `check` is the
    trainer's test of a checkpoint's (step, state), raising ValueError: a state it rejects counts
    as corrupt."""
    found, skipped = _scan(checkpoints_dir(run_dir), deep, check)
    _report(found, skipped, on_skip)
    return found


def resume_checkpoint(
    run_dir: str | Path, *, on_skip: Callable[[str], None] | None = None, check: StateCheck | None = None
) -> Path:
    """Like `latest_checkpoint`, but a run with nothing to resume is a `UsageError` saying what to do."""
    root = checkpoints_dir(run_dir)
    found, skipped = _scan(root, True, check)
    if found is None and not skipped:
        raise UsageError(f"no checkpoint in {root}; nothing to resume — start a new run without --resume")
    if found is None:
        path, problem = skipped[0]
        others = f", and {len(skipped) - 1} older one(s) too" if len(skipped) > 1 else ""
        raise UsageError(
            f"no intact checkpoint in {root} ({path.name} {problem.phrase}: {problem.reason}{others}); "
            "start a new run without --resume"
        )
    _report(found, skipped, on_skip)
    return found


def _scan(root: Path, deep: bool, check: StateCheck | None = None) -> tuple[Path | None, list[tuple[Path, Corrupt]]]:
    """Newest intact checkpoint under `root`, and the newer ones skipped on the way (newest first)."""
    skipped = []
    for _, path in reversed(step_dirs(root)):
        try:
            verify_folder(path, deep, check)
        except Corrupt as problem:
            skipped.append((path, problem))
            continue
        return path, skipped
    return None, skipped


def _report(found: Path | None, skipped: list[tuple[Path, Corrupt]], on_skip: Callable[[str], None] | None) -> None:
    for path, problem in skipped:
        fallback = f"resuming from {found.name}, the newest intact one" if found else "no intact checkpoint is left"
        message = f"checkpoint {path} {problem.phrase} ({problem.reason}); {fallback}"
        if on_skip is None:
            warnings.warn(message, CheckpointWarning, stacklevel=4)
        else:
            on_skip(message)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    tensors: Mapping[str, Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer | Mapping[str, Any] | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    state: Mapping[str, Any] | None = None,
    keep: int | None = 3,
    generators: Mapping[str, Generator] | None = None,
    other_ranks_rng: Sequence[tuple[dict[str, Any], dict[str, torch.Tensor]]] = (),
) -> Path:
    """Write `RUN_DIR/checkpoints/step-N` atomically and return it; then remove leftover `.tmp-*`
    folders and all but the `keep` newest intact checkpoints older than this one (None: keep all).
    Checkpoints of a higher step (a run resumed from an earlier one) are left alone.
    `optimizer`: the optimizer, or its state dict already taken (a sharded run's, gathered whole).
    `other_ranks_rng`: in a distributed run, what `capture_rng` took on ranks 1, 2, ..., written
    beside this process's own as the sections rng-1, rng-2, ... (`load_checkpoint(rank=)` reads them)."""
    step = _check_step(step)
    _check_stems(tensors)
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be at least 1 (or None to keep every checkpoint), not {keep}")
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{TMP_PREFIX}step-{step}-{secrets.token_hex(4)}"
    tmp.mkdir()
    final = root / f"step-{step}"
    try:
        rngs = [capture_rng(generators), *other_ranks_rng]
        _write_contents(tmp, step, tensors, optimizer, scheduler, dict(state or {}), rngs)
        _publish(tmp, final)
    except BaseException:
        _discard(tmp)
        raise
    _prune(root, step, keep)
    return final


def rng_section(rank: int) -> str:
    """The section holding a rank's RNGs: `rng` for rank 0 (and a run of one process), `rng-R` for rank R."""
    return "rng" if rank == 0 else f"rng-{rank}"


def _check_step(step: int) -> int:
    step = operator.index(step)
    if step < 0:
        raise ValueError(f"step must be >= 0, not {step}")
    return step


def _check_stems(tensors: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    for stem in tensors:
        sections = isinstance(stem, str) and (stem in SECTIONS or stem.startswith("rng-") or stem == "state")
        if not isinstance(stem, str) or not STEM.fullmatch(stem) or sections:
            raise ValueError(f"{stem!r} cannot name a weights file; use letters, digits, '_', '-', '.', not {SECTIONS}")


def _write_contents(
    folder: Path,
    step: int,
    tensors: Mapping[str, Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer | Mapping[str, Any] | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    state: dict[str, Any],
    rngs: Sequence[tuple[dict[str, Any], dict[str, torch.Tensor]]],
) -> None:
    """Every file of the checkpoint, state.json (with the manifest of the others) last."""
    _check_json(state)
    for stem, flat in tensors.items():
        _write_tensors(folder / f"{stem}.safetensors", {k: v.detach().cpu().contiguous() for k, v in flat.items()})
    if optimizer is not None:
        whole = optimizer if isinstance(optimizer, Mapping) else optimizer.state_dict()
        _write_section(folder, "optimizer", *_encoded(dict(whole)))
    if scheduler is not None:
        _write_section(folder, "scheduler", *_encoded(scheduler.state_dict()))
    for rank, rng in enumerate(rngs):
        _write_section(folder, rng_section(rank), *rng)
    files = {p.name: _seal(p) for p in sorted(folder.iterdir())}
    doc = {"format": FORMAT, "version": VERSION, "step": step, "weights": list(tensors), "files": files, "state": state}
    doc["digest"] = manifest_digest(doc)
    _write_text(folder / STATE_FILE, json.dumps(doc, indent=2) + "\n")
    _fsync_dir(folder)


def _check_json(state: dict[str, Any]) -> None:
    """The trainer's state must be plain JSON; checked before any file is written."""
    try:
        json.dumps(state)
    except (TypeError, ValueError) as error:
        raise TypeError(f"checkpoint state must be plain JSON data: {error}") from None


def _encoded(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    tensors: dict[str, torch.Tensor] = {}
    return encode(obj, tensors), tensors


def _write_section(folder: Path, name: str, json_part: Any, tensors: dict[str, torch.Tensor]) -> None:
    _write_text(folder / f"{name}.json", json.dumps(json_part))
    if tensors:
        _write_tensors(folder / f"{name}.safetensors", tensors)


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """A safetensors file; a failed write (the disk full, say) is the OSError it was underneath."""
    try:
        safetensors.torch.save_file(tensors, str(path), metadata={"format": "pt"})
    except SafetensorError as error:
        code = re.search(r"os error (\d+)", str(error))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None


def _write_text(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def _seal(path: Path) -> dict[str, Any]:
    """Flush a written file to disk and record its manifest entry (read back: what is on disk counts)."""
    digest = sha256_of(path, fsync=True)
    return {"bytes": path.stat().st_size, "sha256": digest}


def _fsync_dir(path: Path) -> None:
    """Make renames and new entries in `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished folder into place; a checkpoint of the same step is replaced."""
    if final.exists():
        old = final.with_name(f"{TMP_PREFIX}old-{final.name}-{secrets.token_hex(4)}")
        os.replace(final, old)
        os.replace(tmp, final)
        _discard(old)
    else:
        os.replace(tmp, final)
    _fsync_dir(final.parent)


def _discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _prune(root: Path, step: int, keep: int | None) -> None:
    """Remove crash leftovers, then checkpoints older than `step` beyond the `keep` newest intact
    ones (corrupt older ones go too: a newer intact checkpoint now exists)."""
    for leftover in root.iterdir():
        if leftover.name.startswith(TMP_PREFIX):
            _discard(leftover)
    if keep is None:
        return
    kept = 1
    for other, path in reversed(step_dirs(root)):
        if other >= step:
            continue
        if kept < keep and _is_intact(path, deep=False):
            kept += 1
        else:
            _discard(path)


def _is_intact(path: Path, deep: bool) -> bool:
    try:
        verify_folder(path, deep)
    except Corrupt:
        return False
    return True


def load_checkpoint(
    path: str | Path,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    generators: Mapping[str, Generator] | None = None,
    *,
    device: str | torch.device = "cpu",
    verify: bool = True,
    rank: int = 0,
) -> LoadedCheckpoint:
    """Read a `step-N` folder (or a run directory: its newest intact checkpoint) and restore the
    optimizer, scheduler and every RNG in place; weights come back as tensors on `device` for the
    trainer to load. Everything is read and checked before anything is restored.
    `verify=False` skips the sha256 check (sizes are still checked). `rank`: which rank's RNGs of a
    distributed run's checkpoint this process takes."""
    path = _resolve(Path(path))
    try:
        doc = verify_folder(path, deep=verify)
        weights = _read_weights(path, doc, device)
        optimizer_state = _read_section(path, doc, "optimizer") if optimizer is not None else None
        scheduler_state = _read_section(path, doc, "scheduler") if scheduler is not None else None
        rng_json, rng_tensors = _read_section(path, doc, rng_section(rank), decoded=False)
    except Corrupt as problem:
        raise UsageError(_corrupt_message(path, problem)) from None
    check_generators(decode(rng_json, rng_tensors)["generators"], generators or {}, f"checkpoint {path}")
    if optimizer is not None:
        _load_into(optimizer, optimizer_state, path, "optimizer")
    if scheduler is not None:
        _load_into(scheduler, scheduler_state, path, "scheduler")
    notes = restore_rng(rng_json, rng_tensors, generators)
    return LoadedCheckpoint(path, doc["step"], weights, doc["state"], notes)


def load_weights(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[Path, dict[str, dict[str, torch.Tensor]]]:
    """Only the weights of a checkpoint (or of a run directory's newest intact one), checked against
    its manifest; nothing else is read or restored. For evaluating or exporting a trained policy."""
    path = _resolve(Path(path))
    try:
        doc = verify_folder(path, deep=True)
        return path, _read_weights(path, doc, device)
    except Corrupt as problem:
        raise UsageError(_corrupt_message(path, problem)) from None


def _read_weights(path: Path, doc: dict[str, Any], device: str | torch.device) -> dict[str, dict[str, torch.Tensor]]:
    """Every weight file a verified checkpoint lists, by stem."""
    return {stem: read_tensors(path / f"{stem}.safetensors", device) for stem in doc["weights"]}


def _resolve(path: Path) -> Path:
    """A checkpoint folder as given, or a run directory's newest intact checkpoint."""
    if not path.is_dir():
        raise UsageError(f"checkpoint {path} does not exist; pass a RUN/checkpoints/step-N folder or a run directory")
    if not (path / STATE_FILE).exists() and checkpoints_dir(path).is_dir():
        return resume_checkpoint(path)
    return path


def _read_section(path: Path, doc: dict[str, Any], name: str, decoded: bool = True) -> Any:
    """A section's structure with its tensors put back (or both parts, `decoded=False`)."""
    if f"{name}.json" not in doc["files"]:
        what = "RNG" if name.startswith("rng") else name
        raise UsageError(
            f"checkpoint {path} holds no {what} state, so training cannot continue exactly from it; "
            f"start a new run from its weights (init={path}) instead"
        )
    json_part = read_json(path / f"{name}.json")
    has_tensors = f"{name}.safetensors" in doc["files"]
    tensors = read_tensors(path / f"{name}.safetensors", "cpu") if has_tensors else {}
    try:
        value = decode(json_part, tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise Corrupt(f"{name}.json does not match {name}.safetensors ({error!r})") from None
    return value if decoded else (json_part, tensors)


def _load_into(target: Any, state: dict[str, Any], path: Path, what: str) -> None:
    try:
        target.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        reason = " ".join(str(error).split())
        raise UsageError(
            f"checkpoint {path} does not fit this run's {what} ({reason}); "
            "resume with the config the run was started with"
        ) from None


def _corrupt_message(path: Path, problem: Corrupt) -> str:
    """One line: what is wrong, and the checkpoint to use instead when there is one."""
    head = f"checkpoint {path} {problem.phrase} ({problem.reason})"
    step = step_of(path)
    if step is not None:
        for other, candidate in reversed(step_dirs(path.parent)):
            if other < step and _is_intact(candidate, deep=True):
                return f"{head}; the previous one, {candidate.name}, is intact: resume from {candidate}"
    return f"{head}; no earlier intact checkpoint in {path.parent} — start a new run without --resume"
