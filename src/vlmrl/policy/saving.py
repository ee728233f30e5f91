"""Saving what trains (LoRA adapter or fine-tuned weights, and the value head), loading it
back, and exporting a merged model folder.

Only safetensors and JSON are written or read: nothing is unpickled. Weights of parts that
do not train are never copied, so a 7B checkpoint holds megabytes of adapter, not 14 GB.
"""

from __future__ import annotations

import json
from pathlib import Path

from peft import PeftModel, set_peft_model_state_dict
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vlmrl.errors import UsageError
from vlmrl.policy.policy import Policy

VALUE_HEAD = "value_head.safetensors"
TRAINED = "trained.safetensors"
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def is_lora(policy: Policy) -> bool:
    return isinstance(policy.model, PeftModel)


def trained_state(policy: Policy) -> dict:
    """The parameters that train, by name, detached on the CPU."""
    return {n: p.detach().cpu().contiguous() for n, p in policy.model.named_parameters() if p.requires_grad}


def save_trainable(policy: Policy, folder: str | Path) -> Path:
    """Write the trained weights and the value head into `folder` (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if is_lora(policy):
        policy.model.save_pretrained(folder / ADAPTER_DIR, safe_serialization=True)
    else:
        save_file(trained_state(policy), str(folder / TRAINED))
    value_head = {n: t.detach().cpu().contiguous() for n, t in policy.value_head.state_dict().items()}
    save_file(value_head, str(folder / VALUE_HEAD))
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
        result = set_peft_model_state_dict(policy.model, _read(folder / ADAPTER_DIR / ADAPTER_WEIGHTS))
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if unexpected:
            raise UsageError(f"adapter in {str(folder)!r} does not fit this model (unexpected {unexpected[0]!r})")
    else:
        state = _read(folder / TRAINED)
        expected = trained_state(policy)
        if set(state) != set(expected):
            missing = sorted(set(expected) - set(state)) or sorted(set(state) - set(expected))
            raise UsageError(
                f"weights in {str(folder)!r} do not fit this model and its trainable parts "
                f"(first mismatch: {missing[0]!r})"
            )
        policy.model.load_state_dict(state, strict=False)
    policy.value_head.load_state_dict(_read(folder / VALUE_HEAD))


def export_merged(policy: Policy, folder: str | Path) -> Path:
    """Write a plain HF model folder with LoRA merged in (the policy is merged in place),
    plus its processor and value head, loadable without peft."""
    folder = Path(folder)
    if is_lora(policy):
        policy.model = policy.model.merge_and_unload()
    policy.model.save_pretrained(folder, safe_serialization=True)
    policy.processor.save_pretrained(folder)
    value_head = {n: t.detach().cpu().contiguous() for n, t in policy.value_head.state_dict().items()}
    save_file(value_head, str(folder / VALUE_HEAD))
    return folder
