"""Every random number generator a run draws from, captured and restored: python, numpy, torch
(CPU and, when in use, CUDA) and the trainer's own named generators."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from vlmrl.infra.checkpoint.codec import decode, encode
from vlmrl.infra.errors import UsageError

Generator = torch.Generator | np.random.Generator | np.random.RandomState | random.Random


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
    check_generators(state["generators"], generators or {}, "the saved RNG state")
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


def check_generators(saved: Mapping[str, Any], generators: Mapping[str, Generator], where: str) -> None:
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
