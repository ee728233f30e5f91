"""One optimizer step over the ranks: backward passes, gradients averaged over the ranks, the norm
clip over the global gradient, the optimizer's update. Two engines take it:

- `TorchSteps`: torch's own optimizer. With a whole copy per rank the gradients are averaged in
  one all-reduce (`World.mean_gradients`); with FSDP2's shards they leave backward averaged
  (a reduce-scatter), and the clip is over every rank's shard.
- `DeepSpeedSteps`: DeepSpeed's ZeRO stage 1 or 2 (the paper's engine), optionally with the
  optimizer's state and its update in CPU memory. The weights stay whole on every rank; the
  gradients (stage 2) and Adam's moments are partitioned. The optimizer is still torch's, run
  by ZeRO on the partitions, so both engines compute the same update.

Either saves the optimizer's state as one process's torch optimizer would (`state_dict`), so
a checkpoint reads the same whatever wrote it. The schedule stays the recipe's: it steps the
torch optimizer's learning rates, which both engines use.
"""

from __future__ import annotations

import copy
import logging
import sys
from typing import Any, Protocol

import torch

from vlmrl.infra.distributed import Sharding, World
from vlmrl.infra.errors import UsageError
from vlmrl.policy import Policy
from vlmrl.policy.sharding import full, full_state, load_full_optimizer_state, shard_policy


class Steps(Protocol):
    """What a recipe needs to train: the torch optimizer (whose learning rates its schedule sets),
    backward passes that accumulate, and steps."""

    optimizer: torch.optim.Optimizer
    gathers: bool
    """Whether `state_dict` is a collective, which every rank must join."""

    def backward(self, loss: torch.Tensor) -> None: ...

    def step(self) -> float:
        """Average, clip, update, clear; the global gradient norm before the clip."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def weights_loaded(self) -> None:
        """The model's weights were set from a checkpoint: an engine with its own copy takes them."""
        ...


class TorchSteps:
    """torch's optimizer, over whole copies (one all-reduce) or FSDP2's shards."""

    def __init__(self, optimizer: torch.optim.Optimizer, world: World, max_grad_norm: float, sharded: bool) -> None:
        self.optimizer, self.world, self.max_grad_norm = optimizer, world, max_grad_norm
        self.parameters = [p for group in optimizer.param_groups for p in group["params"]]
        self.gathers = sharded

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float:
        self.world.mean_gradients(self.parameters)  # every rank now holds the global gradient: the clip is global
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)  # sharded: over all shards
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(full(norm))

    def state_dict(self) -> dict[str, Any]:
        return full_state(self.optimizer.state_dict())  # shards gathered whole; whole copies as they are

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_full_optimizer_state(self.optimizer, state)  # each rank keeps its own slice of a shard

    def weights_loaded(self) -> None:
        pass  # torch's optimizer updates the model's own weights


class DeepSpeedSteps:
    """DeepSpeed's ZeRO (stage 1 or 2) around a torch optimizer; the step is the caller's to place
    (unmanaged accumulation), the clip DeepSpeed's, over the global gradient."""

    gathers = True

    def __init__(
        self, policy: Policy, optimizer: torch.optim.Optimizer, sharding: Sharding, max_grad_norm: float
    ) -> None:
        try:
            import deepspeed
            from deepspeed.utils import logger
        except ImportError:
            raise UsageError(
                "the accelerate config asks for DeepSpeed, which is not installed: pip install 'vlmrl[deepspeed]'"
            ) from None
        logger.setLevel(logging.WARNING)  # its INFO lines (versions, timers, configs) would fill the run's output
        self.optimizer = optimizer
        self.members = [list(group["params"]) for group in optimizer.param_groups]
        self.template = copy.deepcopy(optimizer.state_dict()["param_groups"])
        config = {
            "train_micro_batch_size_per_gpu": 1,  # the recipe makes its own batches; DeepSpeed only checks this
            "gradient_accumulation_steps": 1,
            "managed_gradient_accumulation": False,  # every step() is an accumulation boundary
            "gradient_clipping": max_grad_norm,
            "zero_optimization": {
                "stage": sharding.zero_stage,
                "offload_optimizer": {"device": "cpu" if sharding.offload else "none"},
            },
            "zero_force_ds_cpu_optimizer": False,  # torch's Adam on the CPU partitions: the same update everywhere
            "bf16": {"enabled": policy.dtype == torch.bfloat16},
            "steps_per_print": 2**62,
        }
        self.engine, self.zero, _, _ = deepspeed.initialize(
            model=policy, optimizer=optimizer, config=config, dist_init_required=False
        )

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss, scale_wrt_gas=False)

    def step(self) -> float:
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm)

    def state_dict(self) -> dict[str, Any]:
        """Adam's state per parameter, whole, as one process's torch optimizer holds it (a collective)."""
        from deepspeed.utils import safe_get_full_optimizer_state

        self._link_moments()
        groups, state, index = [], {}, 0
        for template, group, members in zip(self.template, self.optimizer.param_groups, self.members, strict=True):
            hyper = {key: value for key, value in group.items() if key != "params"}
            groups.append({**template, **hyper, "params": list(range(index, index + len(members)))})
            flat = self.optimizer.state.get(group["params"][0], {})
            for param in members:
                if flat:
                    moments = {key: safe_get_full_optimizer_state(param, key) for key in flat if key != "step"}
                    state[index] = {"step": flat["step"].clone(), **{k: v.detach().cpu() for k, v in moments.items()}}
                index += 1
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, whole: dict[str, Any]) -> None:
        from deepspeed.utils import safe_set_full_optimizer_state

        groups = whole["param_groups"]
        if len(groups) != len(self.members) or any(
            len(g["params"]) != len(m) for g, m in zip(groups, self.members, strict=True)
        ):
            raise ValueError("its parameter groups are not this optimizer's")
        for group, saved in zip(self.optimizer.param_groups, groups, strict=True):
            group.update({key: value for key, value in saved.items() if key != "params"})
        states = {int(number): entry for number, entry in whole["state"].items()}
        if not states:
            return  # saved before the first step: Adam has no moments yet
        for group, saved in zip(self.optimizer.param_groups, groups, strict=True):
            first = states[saved["params"][0]]  # every parameter of a group has stepped as often
            # the partition's moments, made as Adam's first step makes them, then filled from the saved ones
            self.optimizer.state[group["params"][0]] = {
                "step": first["step"].clone(),
                **{key: torch.zeros_like(group["params"][0]) for key in first if key != "step"},
            }
        self._link_moments()
        for saved, members in zip(groups, self.members, strict=True):
            for param, number in zip(members, saved["params"], strict=True):
                for key, value in states[number].items():
                    if key != "step":
                        safe_set_full_optimizer_state(param, value.to(param.device, torch.float32), key)

    def weights_loaded(self) -> None:
        self.zero.refresh_fp32_params()  # ZeRO updates its float32 partitions, then copies them into the model

    def _link_moments(self) -> None:
        """Point each parameter's view into its partition's moments anew. ZeRO links them once, after
        the first group's first update, when a second group (the value head's) has no moments yet."""
        self.zero._hp_optimizer_states_linked = False
        self.zero._lazy_init_hp_params_optimizer_state()


def lay_out(policy: Policy, world: World, asked: str, reference: Policy | None = None) -> Sharding:
    """The run's layout over the ranks (`Sharding.resolve`), said once on stderr; under FSDP2 the
    policy (and a reference policy, which shares its value head) sharded in place."""
    sharding = Sharding.resolve(asked, world)
    if world.distributed and world.is_main:
        print(f"vlmrl: {sharding.describe(world)}", file=sys.stderr, flush=True)
    if sharding.kind == "fsdp":
        shard_policy(policy, sharding)
        if reference is not None:
            shard_policy(reference, sharding, value_head=False)
    return sharding


def make_steps(
    policy: Policy, optimizer: torch.optim.Optimizer, world: World, sharding: Sharding, max_grad_norm: float
) -> Steps:
    """The engine the run's layout asks for (the policy already sharded when it is FSDP2's)."""
    if sharding.kind == "deepspeed":
        return DeepSpeedSteps(policy, optimizer, sharding, max_grad_norm)
    return TorchSteps(optimizer, world, max_grad_norm, sharded=policy.sharded)
