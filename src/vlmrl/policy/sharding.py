"""FSDP2: a policy's weights, gradients and optimizer state sharded over the ranks (`fully_shard`).

Replicated data parallelism keeps a whole model on every rank, so a 7B model in bfloat16 needs
its 14 GB on each GPU. Sharded, each rank holds 1/N of every weight and gathers a block's
weights just before that block runs. The blocks ("units") are the model's own repeated layers
(its `_no_split_modules`: decoder layers, vision blocks), then each part of the inner model
(vision tower, projector, language model), then the whole model for what is left (the output
head); the value head is a unit of its own. Gradients leave backward already averaged over the
ranks (a reduce-scatter), so the trainer's own gradient averaging has nothing left to do.

Every forward pass is now a collective: ranks must run the same number of them, which is why
`Policy.generate` is told to keep generating in step (`synced_gpus`) and why a rank with
nothing to play still runs its forward passes (`Policy.collective`).

Checkpoints stay those of one process: `full` gathers a sharded tensor whole, and a
`load_state_dict` of whole tensors into a sharded module keeps each rank's own slice, so a run
of any number of processes, sharded or not, reads and writes the same files.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor
from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY

from vlmrl.infra.distributed import Sharding
from vlmrl.infra.errors import UsageError
from vlmrl.policy.policy import Policy


def hf_model(policy: Policy) -> nn.Module:
    """The Hugging Face model under a policy (under its PEFT wrapper, when LoRA is on)."""
    model = policy.model
    base = getattr(model, "base_model", None)
    return base.model if base is not None and hasattr(base, "peft_config") else model


def units(model: nn.Module) -> list[nn.Module]:
    """The modules that become FSDP units, each after every unit inside it (the order `fully_shard`
    needs): the model's repeated blocks (decoder layers, vision blocks), then each part of the
    inner model but the language model (vision tower, projector). Those parts run outside the
    model's forward (generate encodes the images first), so they must gather their own weights;
    what is left (embeddings, final norm, output head) is gathered by the root, the whole model."""
    repeated = set(getattr(model, "_no_split_modules", None) or [])
    for module in model.modules():
        repeated.update(getattr(module, "_no_split_modules", None) or [])
    chosen = {id(m) for m in model.modules() if type(m).__name__ in repeated}
    inner = getattr(model, "model", None)
    language = getattr(inner, "language_model", None)
    if isinstance(inner, nn.Module):
        chosen.update(
            id(child)
            for child in inner.children()
            if child is not language and any(p.numel() for p in child.parameters())
        )
    chosen.discard(id(model))
    return [m for m in reversed(list(model.modules())) if id(m) in chosen]  # inner units first


def shard_policy(policy: Policy, sharding: Sharding, *, value_head: bool = True) -> None:
    """Shard `policy` in place over the default process group (every rank calls this, once the
    weights are the same on every rank), as `sharding` says (`Sharding.resolve`). `value_head`:
    shard the value head too (a reference policy shares the policy's, already sharded)."""
    options: dict[str, Any] = {"reshard_after_forward": sharding.reshard_after_forward}
    if sharding.offload:
        if policy.device.type == "cpu":
            raise UsageError(
                "the accelerate config offloads to the CPU (fsdp_offload_params: true), which needs GPUs: "
                "on CPU the weights are there already; use fsdp2.yaml"
            )
        options["offload_policy"] = CPUOffloadPolicy()
    model = hf_model(policy)
    recordable = {module: _CAN_RECORD_REGISTRY.get(module) for module in model.modules()}
    for unit in units(model):
        fully_shard(unit, **options)
    fully_shard(model, **options)
    # transformers looks up which outputs (hidden states) a model can record by the name of its
    # class, and fully_shard gives each unit a subclass of its own: the lookup must find them too
    for module, outputs in recordable.items():
        if outputs:
            _CAN_RECORD_REGISTRY[module] = outputs
    model._is_fsdp_managed_module = True  # transformers' generate then keeps the ranks in step
    model.register_load_state_dict_pre_hook(_keep_own_slices)
    if value_head:
        fully_shard(policy.value_head, **options)
        policy.value_head.register_load_state_dict_pre_hook(_keep_own_slices)
    policy.sharded, policy.reshard_after_forward = True, sharding.reshard_after_forward
    # FSDP takes the first unit to run as the root, and generate encodes images (the vision
    # tower's unit) before it calls the model: one token through the whole model settles it
    with torch.no_grad():
        model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=policy.device), use_cache=False)
        policy.release_gathered()


def full(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor whole: gathered from every rank when it is sharded (a collective), else itself."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def full_state(value: Any) -> Any:
    """A state dict (an optimizer's, say) with every sharded tensor gathered whole; every rank
    must call this, in the same order."""
    if isinstance(value, dict):
        return {key: full_state(item) for key, item in value.items()}
    if isinstance(value, list):
        return [full_state(item) for item in value]
    return full(value) if isinstance(value, torch.Tensor) else value


def load_full_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """`optimizer.load_state_dict` from a whole (one-process) state: each moment of a sharded
    parameter becomes this rank's slice, laid out as the parameter is (of a whole one, itself)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    moments = {}
    for index, per_param in state["state"].items():
        if not 0 <= int(index) < len(params):
            raise ValueError(f"it holds a state for parameter {index}, and the optimizer has {len(params)}")
        param = params[int(index)]
        moments[index] = {
            key: _like(value, param) if isinstance(value, torch.Tensor) and value.shape == param.shape else value
            for key, value in per_param.items()
        }
    optimizer.load_state_dict({**state, "state": moments})


def _like(tensor: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`tensor` (whole, on every rank) laid out as `reference`: its own slice when that is sharded."""
    if not isinstance(reference, DTensor):
        return tensor
    whole = tensor.to(device=reference.device, dtype=reference.dtype)
    return distribute_tensor(whole, reference.device_mesh, reference.placements, src_data_rank=None)


def _keep_own_slices(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Before a `load_state_dict` into a sharded module: whole tensors become this rank's slices."""
    targets = module.state_dict()
    for key, value in list(state_dict.items()):
        name = key[len(prefix) :] if key.startswith(prefix) else None
        target = targets.get(name) if name is not None else None
        if isinstance(target, DTensor) and isinstance(value, torch.Tensor) and not isinstance(value, DTensor):
            state_dict[key] = _like(value, target)
