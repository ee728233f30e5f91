"""What a model folder must be before any of it is loaded, checked without running or unpickling it.

A model folder is data from elsewhere, and loading it must never be a way to run someone's code:

- no code from the folder runs, and nothing asks whether it may: every `from_pretrained` gets
  `families.LOADING` (`trust_remote_code=False`, local files only). A folder whose model type only its own
  code defines (an `auto_map` to a `.py` beside it) is refused in one line; one of a family vlmrl
  knows that also ships code is loaded with transformers' own classes, and a notice says so;
- no pickle is read: weights come from safetensors only (`use_safetensors=True`); a folder with
  only `pytorch_model.bin` is refused, with the way to convert it;
- broken weights (an empty or truncated `model.safetensors`, a missing shard) are named in one
  line before loading starts, from the files' headers (cheap: no tensor is read);
- a config that does not describe its weights is refused before the model is built: a bare
  `{"model_type": "llava"}` would otherwise make transformers build (and randomly initialise) a
  full-size 7B model around a tiny checkpoint. The model the config describes is built on the
  meta device (no memory, under a second for 7B) and its parameters counted against those the
  safetensors headers hold.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from vlmrl.infra.errors import Notice, UsageError, first_line
from vlmrl.policy.families import FAMILIES, family_for_model_type

PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
CODE_CONFIGS = (
    "config.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
)
"""Files whose `auto_map` can point transformers at code in the folder."""
SIZE_TOLERANCE = 1.5
"""The config's model may differ from the stored weights by this factor (tied or buffered weights)."""
HINT = "give a local Hugging Face model folder, or build a tiny one with `vlmrl init-model`"


@dataclass(frozen=True)
class ModelFolder:
    """A folder that passed `check_model_folder`."""

    path: Path
    family: str
    weight_files: tuple[Path, ...]
    stored_parameters: int
    """Parameters the safetensors files hold (read from their headers)."""


def check_model_folder(folder: Path) -> ModelFolder:
    """Fail early, in one line, on a folder that cannot be a VLM checkpoint vlmrl loads safely."""
    name = repr(str(folder))
    if not folder.exists():
        raise UsageError(f"model folder {name} does not exist; {HINT}")
    if not folder.is_dir():
        raise UsageError(f"model path {name} is a file, not a folder; {HINT}")
    if not (folder / "config.json").is_file():
        raise UsageError(f"model folder {name} has no config.json, so it is not a Hugging Face model; {HINT}")
    config = _read_json_config(folder, "config.json")
    if "model_type" not in config:
        raise UsageError(f"config.json in {name} names no model_type; it is not a Hugging Face model config")
    family = _check_code(folder, config)
    files = _weight_files(folder)
    if not any((folder / file).is_file() for file in TOKENIZER_FILES):
        raise UsageError(f"model folder {name} has no tokenizer files; the download or copy is incomplete")
    return ModelFolder(folder, family, files, sum(_stored_parameters(folder, file) for file in files))


def _read_json_config(folder: Path, file: str) -> dict[str, Any]:
    try:
        data = json.loads((folder / file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"model folder {str(folder)!r} has an unreadable {file} ({error})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{file} in {str(folder)!r} is not a JSON object; it is not a Hugging Face config")
    return data


def _auto_maps(folder: Path, config: dict[str, Any]) -> dict[str, list[str]]:
    """The code each config file points at (`auto_map` values), by file."""
    found = {}
    for file in CODE_CONFIGS:
        data = config if file == "config.json" else None
        if data is None and (folder / file).is_file():
            try:
                data = json.loads((folder / file).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # not for this check to judge; the loader names an unreadable file
        auto_map = data.get("auto_map") if isinstance(data, dict) else None
        if auto_map:
            values = auto_map.values() if isinstance(auto_map, dict) else [auto_map]
            targets = {str(t) for value in values for t in (value if isinstance(value, list) else [value]) if t}
            found[file] = sorted(targets)
    return found


def _check_code(folder: Path, config: dict[str, Any]) -> str:
    """The folder's family; refuses a model type only the folder's own code defines."""
    model_type = config["model_type"]
    family = family_for_model_type(model_type)
    code = _auto_maps(folder, config)
    if family is None:
        supported = ", ".join(f"{f.name} ({'/'.join(f.model_types)})" for f in FAMILIES.values())
        if code:
            where = "; ".join(f"{file} names {', '.join(targets)}" for file, targets in code.items())
            raise UsageError(
                f"model folder {str(folder)!r} needs custom code to load (model_type {model_type!r}; {where}), "
                f"which vlmrl never runs; it loads these families with transformers' own code: {supported}"
            )
        raise UsageError(
            f"model folder {str(folder)!r}: unsupported model type {model_type!r}; supported families: {supported}"
        )
    if code:
        warnings.warn(
            f"model folder {str(folder)!r} ships custom code (auto_map in {', '.join(code)}); vlmrl ignores it "
            f"and loads the {family} family with transformers' own classes",
            Notice,
            stacklevel=3,
        )
    return family


def _weight_files(folder: Path) -> tuple[Path, ...]:
    """The safetensors files of the model (one file, or the shards its index lists)."""
    name = repr(str(folder))
    if (folder / "model.safetensors.index.json").is_file():
        index = _read_json_config(folder, "model.safetensors.index.json")
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise UsageError(f"model.safetensors.index.json in {name} has no weight_map; the download is incomplete")
        shards = sorted({str(shard) for shard in weight_map.values()})
        for shard in shards:
            if Path(shard).name != shard or not shard.endswith(".safetensors"):
                raise UsageError(f"model.safetensors.index.json in {name} names {shard!r}, not a shard in the folder")
            if not (folder / shard).is_file():
                raise UsageError(
                    f"model folder {name} lacks the shard {shard} its index lists; the download is incomplete"
                )
        return tuple(folder / shard for shard in shards)
    if (folder / "model.safetensors").is_file():
        return (folder / "model.safetensors",)
    if any((folder / file).is_file() for file in PICKLED_WEIGHTS):
        raise UsageError(
            f"model folder {name} holds only pickled weights (pytorch_model.bin), which vlmrl never loads "
            "(unpickling can run code); where you trust the file, convert it to model.safetensors "
            "(from_pretrained, then save_pretrained with safe_serialization=True)"
        )
    raise UsageError(
        f"model folder {name} has no weights (model.safetensors or a shard index); the download or copy is incomplete"
    )


def _stored_parameters(folder: Path, file: Path) -> int:
    """Parameters in one safetensors file, from its header; a damaged file is one line."""
    try:
        with safe_open(str(file), framework="pt") as weights:
            return sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())
    except (SafetensorError, OSError) as error:
        reason = " ".join(str(error).split())
        raise UsageError(
            f"model folder {str(folder)!r}: {file.name} is not readable safetensors ({reason}); "
            "the file is truncated or corrupt: copy or download it again"
        ) from None


def check_sizes(folder: ModelFolder, config: Any) -> None:
    """Refuse a config whose model (built on the meta device, to count its parameters) differs from
    the stored weights by more than `SIZE_TOLERANCE`."""
    import torch
    from transformers import AutoModelForImageTextToText

    try:
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(config)
    except (ValueError, TypeError, KeyError) as error:
        raise UsageError(
            f"model folder {str(folder.path)!r}: its config.json does not build a model ({first_line(error)})"
        ) from None
    described = sum(p.numel() for p in model.parameters())
    stored = folder.stored_parameters
    if described > SIZE_TOLERANCE * stored or stored > SIZE_TOLERANCE * described:
        raise UsageError(
            f"model folder {str(folder.path)!r}: its config.json describes a {_count(described)}-parameter model "
            f"but its weights hold {_count(stored)} parameters; the config is not the one these weights came with "
            "(sizes such as hidden_size or num_hidden_layers missing or changed): use the checkpoint's own config.json"
        )


def check_loaded(folder: ModelFolder, info: dict[str, Any]) -> None:
    """After `from_pretrained(..., output_loading_info=True, ignore_mismatched_sizes=True)`: every
    parameter the config describes came from the weights, at its shape (transformers would
    otherwise initialise the missing ones at random, and say so only in a log table)."""
    name = repr(str(folder.path))
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(info.get("mismatched_keys") or [], key=lambda entry: entry[0])
    if missing:
        raise UsageError(
            f"model folder {name}: its weights lack {len(missing)} parameter(s) its config.json describes "
            f"(first: {missing[0]}), which would start at random; use the checkpoint's own config.json"
        )
    if mismatched:
        key, stored, described = mismatched[0]
        raise UsageError(
            f"model folder {name}: {len(mismatched)} weight(s) have other shapes than its config.json describes "
            f"(first: {key} is {list(stored)} in the weights, {list(described)} in the config); "
            "use the checkpoint's own config.json"
        )
    unexpected = sorted(info.get("unexpected_keys") or [])
    if unexpected:
        warnings.warn(
            f"model folder {name}: {len(unexpected)} stored weight(s) fit no parameter of the model and are "
            f"ignored (first: {unexpected[0]})",
            Notice,
            stacklevel=3,
        )


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Saving or loading a few-MB model needs no progress bar on the console."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


@contextmanager
def transformers_quiet() -> Iterator[None]:
    """Transformers' own loading report off: `check_loaded` says what matters, in one line."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _count(n: int) -> str:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return str(n)
