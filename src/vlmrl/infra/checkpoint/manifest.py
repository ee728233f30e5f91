"""What makes a checkpoint folder intact: its state.json (format, version, step, a manifest of
every file with its size and sha256, a digest of itself) and the files matching it."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

FORMAT = "vlmrl-checkpoint"
VERSION = 2
"""2: state.json carries a digest of itself."""
STATE_FILE = "state.json"
TMP_PREFIX = ".tmp-"
SECTIONS = ("optimizer", "scheduler", "rng")
"""Files the checkpoint itself writes as <section>.json (+ <section>.safetensors); not usable as weight stems."""

STEP_DIR = re.compile(r"step-(\d+)")
STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
StateCheck = Callable[[int, dict[str, Any]], None]
"""The trainer's check of a checkpoint's (step, state): raises ValueError saying what is wrong."""


class Corrupt(Exception):
    """Why a checkpoint cannot be used, as `reason`; `phrase` says what kind of problem it is."""

    def __init__(self, reason: str, phrase: str = "is corrupt") -> None:
        super().__init__(reason)
        self.reason, self.phrase = reason, phrase


def step_dirs(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.fullmatch(p.name)) and p.is_dir()]
    return sorted(found)


def step_of(path: Path) -> int | None:
    match = STEP_DIR.fullmatch(path.name)
    return int(match.group(1)) if match else None


def verify_folder(path: Path, deep: bool, check: StateCheck | None = None) -> dict[str, Any]:
    """The manifest of an intact checkpoint; raises `Corrupt` naming the first thing that is not."""
    doc = read_manifest(path)
    folder_step = step_of(path)
    if folder_step is not None and folder_step != doc["step"]:
        raise Corrupt(
            f"its state.json is of step {doc['step']}: it was copied or renamed, so it is not taken at its name",
            "is misnamed",
        )
    for name, entry in doc["files"].items():
        file = path / name
        if not file.is_file():
            raise Corrupt(f"{name} is missing")
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise Corrupt(f"{name} has {size} bytes, the manifest says {entry['bytes']}")
        if deep and sha256_of(file) != entry["sha256"]:
            raise Corrupt(f"{name} does not match the sha256 in its manifest")
    if check is not None:
        try:
            check(doc["step"], doc["state"])
        except ValueError as error:
            raise Corrupt(f"{STATE_FILE}: {error}", "holds an invalid state") from None
    return doc


def read_manifest(path: Path) -> dict[str, Any]:
    if not (path / STATE_FILE).is_file():
        raise Corrupt(f"{STATE_FILE} is missing")
    doc = read_json(path / STATE_FILE)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise Corrupt(f"{STATE_FILE} is not a vlmrl checkpoint manifest")
    version = doc.get("version")
    if not isinstance(version, int):
        raise Corrupt(f"{STATE_FILE} has no format version")
    if version > VERSION:
        raise Corrupt(
            f"format version {version}; this one reads up to {VERSION}: upgrade vlmrl", "is from a newer vlmrl"
        )
    if version < VERSION:
        raise Corrupt(
            f"format version {version} has no digest of {STATE_FILE}; this vlmrl reads version {VERSION}: "
            "continue it with the vlmrl that wrote it, or start a new run",
            "is from an older vlmrl",
        )
    if doc.get("digest") != manifest_digest(doc):
        raise Corrupt(f"{STATE_FILE} does not match its digest: it was edited or damaged after it was written")
    files, weights = doc.get("files"), doc.get("weights")
    if not isinstance(files, dict) or not all(valid_entry(n, e) for n, e in files.items()):
        raise Corrupt(f"{STATE_FILE} has no valid file manifest")
    if not isinstance(weights, list) or not all(f"{s}.safetensors" in files for s in weights):
        raise Corrupt(f"{STATE_FILE} lists weights that are not in its manifest")
    if not isinstance(doc.get("step"), int) or not isinstance(doc.get("state"), dict):
        raise Corrupt(f"{STATE_FILE} has no step or state")
    return doc


def manifest_digest(doc: dict[str, Any]) -> str:
    """sha256 of a manifest without its digest, in a canonical JSON form (sorted keys, no spaces)."""
    body = {key: value for key, value in doc.items() if key != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def valid_entry(name: object, entry: object) -> bool:
    """A plain file name in the folder (never a path out of it) with a size and a digest."""
    if not isinstance(name, str) or STEM.fullmatch(name) is None or name == STATE_FILE:
        return False
    return isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str)


def sha256_of(path: Path, fsync: bool = False) -> str:
    """The file's digest, read in chunks (weights can be GBs); `fsync` also flushes it to disk."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 22):
            digest.update(chunk)
        if fsync:
            os.fsync(file.fileno())
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise Corrupt(f"{path.name} cannot be read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise Corrupt(f"{path.name} is not text") from None
    except json.JSONDecodeError as error:
        raise Corrupt(f"{path.name} is not valid JSON (line {error.lineno}, column {error.colno})") from None


def read_tensors(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path), device=str(device))
    except Exception as error:  # noqa: BLE001 - safetensors raises several types; all mean "unreadable"
        raise Corrupt(f"{path.name} is not readable safetensors ({' '.join(str(error).split())})") from None
