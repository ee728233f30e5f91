"""Python structures as JSON plus tensors, and back: what optimizer and scheduler state become on disk.

Tagged forms say what JSON cannot: {"__tuple__": [...]}, {"__dict__": [[key, value], ...]}
(non-string keys), {"__ndarray__": [...], "dtype": ...} and {"__tensor__": key} (the tensor lives
in the matching .safetensors file). Decoding gives back the same types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

_TENSOR, _TUPLE, _DICT, _ARRAY = "__tensor__", "__tuple__", "__dict__", "__ndarray__"
_MARKERS = frozenset({_TENSOR, _TUPLE, _DICT, _ARRAY})


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
