"""Training checkpoints: everything a run needs to continue exactly where it stopped.

On disk, inside the run directory::

    RUN_DIR/checkpoints/
        step-40/
            adapter.safetensors     the trainer's tensors, one file per stem of `tensors`
            value_head.safetensors  (e.g. "adapter" or "trained", and "value_head")
            optimizer.json          optimizer.state_dict() with each tensor replaced by {"__tensor__": key}
            optimizer.safetensors   those tensors (exp_avg, exp_avg_sq, step, ...), keys like "state.0.exp_avg"
            scheduler.json          lr-scheduler state_dict, same encoding (+ scheduler.safetensors if it has tensors)
            rng.json                python `random`, numpy global, named numpy / python generators
            rng.safetensors         torch CPU RNG, CUDA RNGs (when CUDA is in use), named torch.Generator states
            state.json              written LAST: format, version, step, the weight stems, a manifest
                                    {file: {bytes, sha256}} of every other file, the trainer's own `state`,
                                    and `digest`, the sha256 of all of that (so state.json is checked too)
        step-50/ ...
        .tmp-step-60-1a2b3c4d/      a save in progress, or one a crash interrupted: ignored, removed by the next save

A save writes into a `.tmp-*` folder, fsyncs every file, writes state.json last, then renames
the folder to `step-N` (one atomic rename), so a `step-N` folder is either complete or absent.
A checkpoint counts as intact iff state.json parses, matches its own digest, names the step of its
folder (a copied or renamed `step-N` is not taken at its name), every file has the size and sha256
its manifest records, and the trainer's `check` (a schema of its state) accepts the state;
`latest_checkpoint` skips the others, so a resume falls back to the newest intact checkpoint and
says which one it skipped and why.

Why JSON + safetensors: loading never unpickles anything (no `torch.load`, no `pickle`), so a
checkpoint from elsewhere cannot run code. Python structures that JSON cannot say directly are
tagged: {"__tuple__": [...]}, {"__dict__": [[key, value], ...]} (non-string keys, e.g. the
optimizer's integer parameter ids), {"__ndarray__": [...], "dtype": ...} (numpy RNG keys), and
{"__tensor__": key} (the tensor lives in the matching .safetensors file). Decoding gives back the
same types, so `optimizer.load_state_dict` sees what `state_dict()` gave, `step` tensors included.

LambdaLR stores no lambdas (they are code): the trainer rebuilds its scheduler from the config
and `load_checkpoint` restores the counters (last_epoch, base_lrs, _last_lr, ...) into it.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import random
import re
import secrets
import shutil
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError

from vlmrl.infra.errors import Notice, UsageError

FORMAT = "vlmrl-checkpoint"
VERSION = 2
"""2: state.json carries a digest of itself."""
STATE_FILE = "state.json"
TMP_PREFIX = ".tmp-"
SECTIONS = ("optimizer", "scheduler", "rng")
"""Files the checkpoint itself writes as <section>.json (+ <section>.safetensors); not usable as weight stems."""

_STEP_DIR = re.compile(r"step-(\d+)")
_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_TENSOR, _TUPLE, _DICT, _ARRAY = "__tensor__", "__tuple__", "__dict__", "__ndarray__"
_MARKERS = frozenset({_TENSOR, _TUPLE, _DICT, _ARRAY})

Generator = torch.Generator | np.random.Generator | np.random.RandomState | random.Random
StateCheck = Callable[[int, dict[str, Any]], None]
"""The trainer's check of a checkpoint's (step, state): raises ValueError saying what is wrong."""


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


class _Corrupt(Exception):
    """Why a checkpoint cannot be used, as `reason`; `phrase` says what kind of problem it is."""

    def __init__(self, reason: str, phrase: str = "is corrupt") -> None:
        super().__init__(reason)
        self.reason, self.phrase = reason, phrase


# ---------------------------------------------------------------- encoding python structures as JSON + tensors
def encode(obj: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """JSON-able form of `obj`; its tensors move into `tensors` under their dotted path (a stable key)."""
    if isinstance(obj, torch.Tensor):
        key = path or "value"
        if key in tensors:
            raise ValueError(f"two tensors would be stored under the key {key!r}")
        tensors[key] = obj.detach().cpu().contiguous()
        return {_TENSOR: key}
    if isinstance(obj, np.ndarray | np.generic):
        return _encode_array(obj, path)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, tuple):
        return {_TUPLE: [encode(v, tensors, _join(path, i)) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, tensors, _join(path, i)) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not _MARKERS.intersection(obj):
            return {k: encode(v, tensors, _join(path, k)) for k, v in obj.items()}
        return {_DICT: [[encode(k, tensors, path), encode(v, tensors, _join(path, k))] for k, v in obj.items()]}
    raise TypeError(f"cannot store a {type(obj).__name__} (at {path or 'the top level'!r}) in a checkpoint")


def _encode_array(obj: np.ndarray | np.generic, path: str) -> dict[str, Any]:
    if obj.dtype.kind not in "biuf":
        raise TypeError(f"cannot store a numpy {obj.dtype} value (at {path or 'the top level'!r}) in a checkpoint")
    return {_ARRAY: obj.tolist(), "dtype": obj.dtype.str, "scalar": isinstance(obj, np.generic)}


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def decode(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of `encode`: the same types back (tuples, integer keys, numpy arrays, tensors)."""
    if isinstance(obj, list):
        return [decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if _TENSOR in obj:
        return tensors[obj[_TENSOR]]
    if _TUPLE in obj:
        return tuple(decode(v, tensors) for v in obj[_TUPLE])
    if _DICT in obj:
        return {decode(k, tensors): decode(v, tensors) for k, v in obj[_DICT]}
    if _ARRAY in obj:
        array = np.array(obj[_ARRAY], dtype=np.dtype(obj["dtype"]))
        return array[()] if obj.get("scalar") else array
    return {k: decode(v, tensors) for k, v in obj.items()}


# ---------------------------------------------------------------- random number generators
def capture_rng(generators: Mapping[str, Generator] | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Every RNG the run draws from, as (JSON part, tensors): python, numpy and torch global
    state, CUDA (when in use), and the trainer's own generators by name."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(legacy=False),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if _cuda_in_use() else [],
        "generators": {name: _generator_state(name, g) for name, g in (generators or {}).items()},
    }
    tensors: dict[str, torch.Tensor] = {}
    return encode(state, tensors), tensors


def restore_rng(
    json_part: dict[str, Any], tensors: Mapping[str, torch.Tensor], generators: Mapping[str, Generator] | None = None
) -> list[str]:
    """Put back what `capture_rng` took; returns notes on what this machine could not restore."""
    state = decode(json_part, tensors)
    _check_generators(state["generators"], generators or {}, "the saved RNG state")
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    for name, generator in (generators or {}).items():
        _set_generator_state(generator, state["generators"][name])
    return _restore_cuda(state["cuda"])


def _cuda_in_use() -> bool:
    """CUDA RNGs only matter once CUDA is initialised; asking earlier would start CUDA on every GPU."""
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _restore_cuda(states: list[torch.Tensor]) -> list[str]:
    if not states:
        return []
    if not torch.cuda.is_available():
        return ["the checkpoint holds CUDA RNG states but CUDA is not available here; GPU sampling will differ"]
    count = torch.cuda.device_count()
    for index, rng_state in enumerate(states[:count]):
        torch.cuda.set_rng_state(rng_state, index)
    if count != len(states):
        return [f"the checkpoint holds RNG states of {len(states)} GPUs, this machine has {count}; restored the first"]
    return []


def _generator_state(name: str, generator: Generator) -> dict[str, Any]:
    if isinstance(generator, torch.Generator):
        return {"kind": "torch", "state": generator.get_state()}
    if isinstance(generator, np.random.Generator):
        return {"kind": "numpy", "state": generator.bit_generator.state}
    if isinstance(generator, np.random.RandomState):
        return {"kind": "numpy_legacy", "state": generator.get_state(legacy=False)}
    if isinstance(generator, random.Random):
        return {"kind": "python", "state": generator.getstate()}
    raise TypeError(f"generator {name!r} is a {type(generator).__name__}; expected a torch, numpy or python generator")


def _generator_kind(generator: Generator) -> str:
    kinds = {torch.Generator: "torch", np.random.Generator: "numpy", np.random.RandomState: "numpy_legacy"}
    return next((kind for cls, kind in kinds.items() if isinstance(generator, cls)), "python")


def _set_generator_state(generator: Generator, saved: dict[str, Any]) -> None:
    if isinstance(generator, torch.Generator):
        generator.set_state(saved["state"])
    elif isinstance(generator, np.random.Generator):
        generator.bit_generator.state = saved["state"]
    elif isinstance(generator, np.random.RandomState):
        generator.set_state(saved["state"])
    else:
        generator.setstate(saved["state"])


def _check_generators(saved: Mapping[str, Any], generators: Mapping[str, Generator], where: str) -> None:
    """Fail before anything is restored when the run's generators do not match the saved ones."""
    for name, generator in generators.items():
        if name not in saved:
            known = ", ".join(sorted(saved)) or "none"
            raise UsageError(f"{where} has no generator {name!r} (it has: {known}); it was written by another setup")
        kind = _generator_kind(generator)
        if saved[name]["kind"] != kind:
            raise UsageError(f"{where} holds a {saved[name]['kind']} generator {name!r}, this run a {kind} one")
        if kind == "numpy" and saved[name]["state"]["bit_generator"] != generator.bit_generator.state["bit_generator"]:
            raise UsageError(
                f"{where} holds generator {name!r} as {saved[name]['state']['bit_generator']}, "
                f"this run uses {generator.bit_generator.state['bit_generator']}"
            )


# ---------------------------------------------------------------- finding checkpoints
def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Every `step-N` folder of the run, oldest first, intact or not (`.tmp-*` leftovers excluded)."""
    return [path for _, path in _step_dirs(checkpoints_dir(run_dir))]


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.fullmatch(p.name)) and p.is_dir()]
    return sorted(found)


def _step_of(path: Path) -> int | None:
    match = _STEP_DIR.fullmatch(path.name)
    return int(match.group(1)) if match else None


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


def _scan(root: Path, deep: bool, check: StateCheck | None = None) -> tuple[Path | None, list[tuple[Path, _Corrupt]]]:
    """Newest intact checkpoint under `root`, and the newer ones skipped on the way (newest first)."""
    skipped = []
    for _, path in reversed(_step_dirs(root)):
        try:
            _verify(path, deep, check)
        except _Corrupt as problem:
            skipped.append((path, problem))
            continue
        return path, skipped
    return None, skipped


def _report(found: Path | None, skipped: list[tuple[Path, _Corrupt]], on_skip: Callable[[str], None] | None) -> None:
    for path, problem in skipped:
        fallback = f"resuming from {found.name}, the newest intact one" if found else "no intact checkpoint is left"
        message = f"checkpoint {path} {problem.phrase} ({problem.reason}); {fallback}"
        if on_skip is None:
            warnings.warn(message, CheckpointWarning, stacklevel=4)
        else:
            on_skip(message)


# ---------------------------------------------------------------- verifying
def _verify(path: Path, deep: bool, check: StateCheck | None = None) -> dict[str, Any]:
    """The manifest of an intact checkpoint; raises `_Corrupt` naming the first thing that is not."""
    doc = _read_manifest(path)
    folder_step = _step_of(path)
    if folder_step is not None and folder_step != doc["step"]:
        raise _Corrupt(
            f"its state.json is of step {doc['step']}: it was copied or renamed, so it is not taken at its name",
            "is misnamed",
        )
    for name, entry in doc["files"].items():
        file = path / name
        if not file.is_file():
            raise _Corrupt(f"{name} is missing")
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise _Corrupt(f"{name} has {size} bytes, the manifest says {entry['bytes']}")
        if deep and _sha256(file) != entry["sha256"]:
            raise _Corrupt(f"{name} does not match the sha256 in its manifest")
    if check is not None:
        try:
            check(doc["step"], doc["state"])
        except ValueError as error:
            raise _Corrupt(f"{STATE_FILE}: {error}", "holds an invalid state") from None
    return doc


def _read_manifest(path: Path) -> dict[str, Any]:
    if not (path / STATE_FILE).is_file():
        raise _Corrupt(f"{STATE_FILE} is missing")
    doc = _read_json(path / STATE_FILE)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _Corrupt(f"{STATE_FILE} is not a vlmrl checkpoint manifest")
    version = doc.get("version")
    if not isinstance(version, int):
        raise _Corrupt(f"{STATE_FILE} has no format version")
    if version > VERSION:
        raise _Corrupt(
            f"format version {version}; this one reads up to {VERSION}: upgrade vlmrl", "is from a newer vlmrl"
        )
    if version < VERSION:
        raise _Corrupt(
            f"format version {version} has no digest of {STATE_FILE}; this vlmrl reads version {VERSION}: "
            "continue it with the vlmrl that wrote it, or start a new run",
            "is from an older vlmrl",
        )
    if doc.get("digest") != _digest(doc):
        raise _Corrupt(f"{STATE_FILE} does not match its digest: it was edited or damaged after it was written")
    files, weights = doc.get("files"), doc.get("weights")
    if not isinstance(files, dict) or not all(_valid_entry(n, e) for n, e in files.items()):
        raise _Corrupt(f"{STATE_FILE} has no valid file manifest")
    if not isinstance(weights, list) or not all(f"{s}.safetensors" in files for s in weights):
        raise _Corrupt(f"{STATE_FILE} lists weights that are not in its manifest")
    if not isinstance(doc.get("step"), int) or not isinstance(doc.get("state"), dict):
        raise _Corrupt(f"{STATE_FILE} has no step or state")
    return doc


def _digest(doc: dict[str, Any]) -> str:
    """sha256 of a manifest without its digest, in a canonical JSON form (sorted keys, no spaces)."""
    body = {key: value for key, value in doc.items() if key != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _valid_entry(name: object, entry: object) -> bool:
    """A plain file name in the folder (never a path out of it) with a size and a digest."""
    if not isinstance(name, str) or _STEM.fullmatch(name) is None or name == STATE_FILE:
        return False
    return isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str)


def _sha256(path: Path, fsync: bool = False) -> str:
    """The file's digest, read in chunks (weights can be GBs); `fsync` also flushes it to disk."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 22):
            digest.update(chunk)
        if fsync:
            os.fsync(file.fileno())
    return digest.hexdigest()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise _Corrupt(f"{path.name} cannot be read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise _Corrupt(f"{path.name} is not text") from None
    except json.JSONDecodeError as error:
        raise _Corrupt(f"{path.name} is not valid JSON (line {error.lineno}, column {error.colno})") from None


def _read_tensors(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path), device=str(device))
    except Exception as error:  # noqa: BLE001 - safetensors raises several types; all mean "unreadable"
        raise _Corrupt(f"{path.name} is not readable safetensors ({' '.join(str(error).split())})") from None


# ---------------------------------------------------------------- saving
def save_checkpoint(
    run_dir: str | Path,
    step: int,
    tensors: Mapping[str, Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    state: Mapping[str, Any] | None = None,
    keep: int | None = 3,
    generators: Mapping[str, Generator] | None = None,
) -> Path:
    """Write `RUN_DIR/checkpoints/step-N` atomically and return it; then remove leftover `.tmp-*`
    folders and all but the `keep` newest intact checkpoints older than this one (None: keep all).
    Checkpoints of a higher step (a run resumed from an earlier one) are left alone."""
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
        _write_contents(tmp, step, tensors, optimizer, scheduler, dict(state or {}), generators or {})
        _publish(tmp, final)
    except BaseException:
        _discard(tmp)
        raise
    _prune(root, step, keep)
    return final


def _check_step(step: int) -> int:
    step = operator.index(step)
    if step < 0:
        raise ValueError(f"step must be >= 0, not {step}")
    return step


def _check_stems(tensors: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    for stem in tensors:
        if not isinstance(stem, str) or not _STEM.fullmatch(stem) or stem in SECTIONS or stem == "state":
            raise ValueError(f"{stem!r} cannot name a weights file; use letters, digits, '_', '-', '.', not {SECTIONS}")


def _write_contents(
    folder: Path,
    step: int,
    tensors: Mapping[str, Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    state: dict[str, Any],
    generators: Mapping[str, Generator],
) -> None:
    """Every file of the checkpoint, state.json (with the manifest of the others) last."""
    _check_json(state)
    for stem, flat in tensors.items():
        _write_tensors(folder / f"{stem}.safetensors", {k: v.detach().cpu().contiguous() for k, v in flat.items()})
    if optimizer is not None:
        _write_section(folder, "optimizer", *_encoded(optimizer.state_dict()))
    if scheduler is not None:
        _write_section(folder, "scheduler", *_encoded(scheduler.state_dict()))
    _write_section(folder, "rng", *capture_rng(generators))
    files = {p.name: _seal(p) for p in sorted(folder.iterdir())}
    doc = {"format": FORMAT, "version": VERSION, "step": step, "weights": list(tensors), "files": files, "state": state}
    doc["digest"] = _digest(doc)
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
    digest = _sha256(path, fsync=True)
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
    for other, path in reversed(_step_dirs(root)):
        if other >= step:
            continue
        if kept < keep and _is_intact(path, deep=False):
            kept += 1
        else:
            _discard(path)


def _is_intact(path: Path, deep: bool) -> bool:
    try:
        _verify(path, deep)
    except _Corrupt:
        return False
    return True


# ---------------------------------------------------------------- loading
def load_checkpoint(
    path: str | Path,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    generators: Mapping[str, Generator] | None = None,
    *,
    device: str | torch.device = "cpu",
    verify: bool = True,
) -> LoadedCheckpoint:
    """Read a `step-N` folder (or a run directory: its newest intact checkpoint) and restore the
    optimizer, scheduler and every RNG in place; weights come back as tensors on `device` for the
    trainer to load. Everything is read and checked before anything is restored.
    `verify=False` skips the sha256 check (sizes are still checked)."""
    path = _resolve(Path(path))
    try:
        doc = _verify(path, deep=verify)
        weights = _read_weights(path, doc, device)
        optimizer_state = _read_section(path, doc, "optimizer") if optimizer is not None else None
        scheduler_state = _read_section(path, doc, "scheduler") if scheduler is not None else None
        rng_json, rng_tensors = _read_section(path, doc, "rng", decoded=False)
    except _Corrupt as problem:
        raise UsageError(_corrupt_message(path, problem)) from None
    _check_generators(decode(rng_json, rng_tensors)["generators"], generators or {}, f"checkpoint {path}")
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
        doc = _verify(path, deep=True)
        return path, _read_weights(path, doc, device)
    except _Corrupt as problem:
        raise UsageError(_corrupt_message(path, problem)) from None


def _read_weights(path: Path, doc: dict[str, Any], device: str | torch.device) -> dict[str, dict[str, torch.Tensor]]:
    """Every weight file a verified checkpoint lists, by stem."""
    return {stem: _read_tensors(path / f"{stem}.safetensors", device) for stem in doc["weights"]}


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
        what = {"rng": "RNG"}.get(name, name)
        raise UsageError(
            f"checkpoint {path} holds no {what} state, so training cannot continue exactly from it; "
            f"start a new run from its weights (init={path}) instead"
        )
    json_part = _read_json(path / f"{name}.json")
    has_tensors = f"{name}.safetensors" in doc["files"]
    tensors = _read_tensors(path / f"{name}.safetensors", "cpu") if has_tensors else {}
    try:
        value = decode(json_part, tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise _Corrupt(f"{name}.json does not match {name}.safetensors ({error!r})") from None
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


def _corrupt_message(path: Path, problem: _Corrupt) -> str:
    """One line: what is wrong, and the checkpoint to use instead when there is one."""
    head = f"checkpoint {path} {problem.phrase} ({problem.reason})"
    step = _step_of(path)
    if step is not None:
        for other, candidate in reversed(_step_dirs(path.parent)):
            if other < step and _is_intact(candidate, deep=True):
                return f"{head}; the previous one, {candidate.name}, is intact: resume from {candidate}"
    return f"{head}; no earlier intact checkpoint in {path.parent} — start a new run without --resume"
