"""Saving what trains (LoRA adapter or fine-tuned weights, and the value head), loading it
back, and exporting a merged model folder.

Only safetensors and JSON are written or read: nothing is unpickled. Weights of parts that
do not train are never copied, so a 7B checkpoint holds megabytes of adapter, not 14 GB.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vlmrl.infra.errors import UsageError
from vlmrl.policy.policy import Policy
from vlmrl.policy.sharding import full

VALUE_HEAD = "value_head.safetensors"
TRAINED = "trained.safetensors"
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def is_lora(policy: Policy) -> bool:
    return isinstance(policy.model, PeftModel)


def on_cpu(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor whole, detached, contiguous, on the CPU (gathered first when it is sharded: a
    collective every rank must join)."""
    return full(tensor.detach()).cpu().contiguous()


def trained_state(policy: Policy) -> dict:
    """The parameters that train, by name, detached on the CPU."""
    return {n: on_cpu(p) for n, p in policy.model.named_parameters() if p.requires_grad}


def trainable_tensors(policy: Policy) -> dict[str, dict[str, torch.Tensor]]:
    """What trains, as flat tensor dicts by file stem: the adapter (or fine-tuned weights) and the
    value head. Sharded, every rank must call this (the tensors are gathered whole)."""
    if is_lora(policy):
        weights = {n: on_cpu(t) for n, t in get_peft_model_state_dict(policy.model).items()}
        stem = "adapter"
    else:
        weights, stem = trained_state(policy), "trained"
    return {stem: weights, "value_head": value_head_tensors(policy)}


def value_head_tensors(policy: Policy) -> dict[str, torch.Tensor]:
    return {n: on_cpu(t) for n, t in policy.value_head.state_dict().items()}


def load_trainable_tensors(policy: Policy, tensors: dict[str, dict[str, torch.Tensor]], source: str) -> None:
    """Put tensors from `trainable_tensors` (of a policy built the same way) back into `policy`."""
    stem = "adapter" if is_lora(policy) else "trained"
    if stem not in tensors or "value_head" not in tensors:
        raise UsageError(f"{source} holds no {stem} weights; it was written by a run with lora={not is_lora(policy)}")
    if is_lora(policy):
        result = set_peft_model_state_dict(policy.model, tensors[stem])
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if unexpected:
            raise UsageError(f"adapter in {source} does not fit this model (unexpected {unexpected[0]!r})")
    else:
        expected = trained_state(policy)
        if set(tensors[stem]) != set(expected):
            mismatch = sorted(set(expected) ^ set(tensors[stem]))
            raise UsageError(
                f"weights in {source} do not fit this model and its trainable parts (first mismatch: {mismatch[0]!r})"
            )
        policy.model.load_state_dict(tensors[stem], strict=False)
    policy.value_head.load_state_dict(tensors["value_head"])


def save_trainable(policy: Policy, folder: str | Path) -> Path:
    """Write the trained weights and the value head into `folder` (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if is_lora(policy):
        policy.model.save_pretrained(folder / ADAPTER_DIR, safe_serialization=True)
    else:
        save_file(trained_state(policy), str(folder / TRAINED))
    save_file(value_head_tensors(policy), str(folder / VALUE_HEAD))
    (folder / "policy.json").write_text(json.dumps({"family": policy.family, "lora": is_lora(policy)}, indent=2))
    return folder


def _read(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"{str(path)!r} is missing; the checkpoint is incomplete")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UsageError(f"{str(path)!r} is corrupt ({error}); use an earlier checkpoint") from None


def load_trainable(policy: Policy, folder: str | Path) -> None:
    """Load weights written by `save_trainable` into a policy built the same way."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"policy checkpoint {str(folder)!r} does not exist")
    if is_lora(policy):
        tensors = {"adapter": _read(folder / ADAPTER_DIR / ADAPTER_WEIGHTS)}
    else:
        tensors = {"trained": _read(folder / TRAINED)}
    tensors["value_head"] = _read(folder / VALUE_HEAD)
    load_trainable_tensors(policy, tensors, repr(str(folder)))


def export_merged(policy: Policy, folder: str | Path) -> Path:
    """Write a plain HF model folder with LoRA merged in (the policy is merged in place),
    plus its processor and value head, loadable without peft."""
    folder = Path(folder)
    if is_lora(policy):
        policy.model = policy.model.merge_and_unload()
    policy.model.save_pretrained(folder, safe_serialization=True)
    policy.processor.save_pretrained(folder)
    save_file(value_head_tensors(policy), str(folder / VALUE_HEAD))
    return folder
