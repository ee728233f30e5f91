"""What the distributed tests run in each process (under torchrun, or alone as one process).

    python worker.py one-step MODEL OUT          one PPO optimizer step over a fixed buffer of 4 samples
    python worker.py sft-step MODEL OUT          one SFT optimizer step over a fixed batch of 5 demonstrations
    python worker.py group-step MODEL OUT        one GiGPO optimizer step over a fixed round of whole episodes
    python worker.py evaluate MODEL OUT          held-out evaluation at temperature 0
    python worker.py train MODEL OUT RUN [STOP]  a tiny PPO run in RUN (stopped after STOP updates; resumed
                                                 when RUN holds one)

Every rank writes OUT/rank-R.json (and rank 0 OUT/weights.safetensors), which the tests compare.
WORKER_SHARDING=fsdp shards the model over the ranks (FSDP2) instead of replicating it; WORKER_OVERRIDES
(space-separated key=value) change the `train` job's config.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from tiny_runs import TINY
from vlmrl.algos.advantages import gae
from vlmrl.games import get_task
from vlmrl.infra.distributed import Sharding, World, end_process, leave_world, split_evenly
from vlmrl.policy import load_policy
from vlmrl.policy.saving import trainable_tensors, trained_state
from vlmrl.policy.sharding import shard_policy
from vlmrl.recipes.config import load_config, load_sft_config
from vlmrl.recipes.ppo import evaluate_heldout, group_advantages, ppo_update, setup, train
from vlmrl.recipes.sft import collect_demonstrations, sft_step
from vlmrl.recipes.stepping import make_steps

ONE_STEP = ["num_envs=4", "steps_per_update=4", "ppo_epochs=1", "minibatch_size=4", "grad_accum=1", "temperature=0"]
"""One optimizer step over 4 samples; no dropout, whose masks depend on how the batch is split."""
NO_DROPOUT = "lora_dropout=0"
SHARDING = f"sharding={os.environ.get('WORKER_SHARDING', 'replicate')}"


def one_step(model: str, out: Path, world: World) -> dict:
    """The buffer is collected by one process's rollouts (4 environments, 1 step) on every rank alike;
    each rank then trains on its half of the environments, one process on all of them."""
    overrides = [*TINY, *ONE_STEP, NO_DROPOUT, SHARDING, f"model={model}", f"out={out}"]
    config = load_config(env="numberline", overrides=overrides)
    alone = setup(config)  # one process's rollouts: the same 4 deals on every rank
    buffer, _ = alone.rollouts.collect(alone.policy, 1, 0.0, 1.0, config.max_new_tokens)
    advantages, returns = gae(
        buffer.rewards, buffer.values, buffer.next_values, buffer.terminated, buffer.truncated, 0.9, 0.95
    )
    run = setup(config, world) if world.distributed else alone  # the same start, sharded if asked
    envs = split_evenly(range(4), world)
    half = slice(envs.start, envs.stop)
    part = dataclasses.replace(
        buffer,
        samples=buffer.samples[half],
        rewards=buffer.rewards[:, half],
        values=buffer.values[:, half],
        next_values=buffer.next_values[:, half],
        terminated=buffer.terminated[:, half],
        truncated=buffer.truncated[:, half],
        invalid=buffer.invalid[:, half],
    )
    stats = ppo_update(run, part, advantages[:, half], returns[:, half])
    weights = trainable_tensors(run.policy)  # gathered whole when sharded: every rank takes part
    if world.is_main:
        save_weights(weights, out)
    return stats


GROUP_STEP = [
    "num_envs=4",
    "steps_per_update=4",
    "ppo_epochs=1",
    "minibatch_size=4",
    "grad_accum=1",
    "advantage=gigpo",
    "group_size=4",
    "temperature=1.0",
]
"""One round of 4 episodes dealt alike (one group, over both ranks: environments 0-1 on rank 0, 2-3 on
rank 1); one optimizer step over all of its steps (a single mini-batch, whatever the ranks' shares)."""


def group_step(model: str, out: Path, world: World) -> dict:
    """The round is collected by one process's rollouts on every rank alike (same seeds, same sampling);
    each rank then takes its environments' episodes: advantages compared over the ranks, one step."""
    overrides = [*TINY, *GROUP_STEP, NO_DROPOUT, SHARDING, f"model={model}", f"out={out}"]
    config = load_config(env="numberline", overrides=overrides)
    alone = setup(config)
    buffer, _ = alone.rollouts.collect_groups(alone.policy, 4, 4, 1.0, 1.0, config.max_new_tokens)
    # The tiny model's answers are garbage, so a group's episodes play alike (each environment's random
    # fallback is seeded by its deal): rewards drawn here and a shortened last episode make them differ.
    last = buffer.episode == 3
    cut = ~(last & (last.cumsum(0) > 2))  # episode 3 keeps its first two steps: the ranks' shares differ
    buffer = dataclasses.replace(
        buffer,
        samples=[sample for sample, kept in zip(buffer.samples, cut.tolist(), strict=True) if kept],
        rewards=torch.randn(int(cut.sum()), generator=torch.Generator().manual_seed(1)),
        episode=buffer.episode[cut],
        group=buffer.group[cut],
        state=buffer.state[cut],
        invalid=buffer.invalid[cut],
        actions=[action for action, kept in zip(buffer.actions, cut.tolist(), strict=True) if kept],
    )
    run = setup(config, world) if world.distributed else alone
    envs = split_evenly(range(4), world)
    mine = (buffer.episode >= envs.start) & (buffer.episode < envs.stop)
    keep = mine.nonzero().flatten().tolist()
    part = dataclasses.replace(
        buffer,
        samples=[buffer.samples[k] for k in keep],
        rewards=buffer.rewards[mine],
        episode=buffer.episode[mine],
        group=buffer.group[mine],
        state=buffer.state[mine],
        invalid=buffer.invalid[mine],
        actions=[buffer.actions[k] for k in keep],
    )
    advantages, _ = group_advantages(run, part)
    stats = ppo_update(run, part, advantages, None)
    weights = trainable_tensors(run.policy)
    if world.is_main:
        save_weights(weights, out)
    return {**stats, "steps": keep, "advantages": advantages.tolist()}


def sft_one_step(model: str, out: Path, world: World) -> dict:
    """Five demonstrations (answers of different lengths, split 3 + 2 over two ranks), one step."""
    config = load_sft_config(env="numberline", overrides=[f"model={model}", f"out={out}", "lr=1e-3"])
    batch = collect_demonstrations(get_task("numberline"), "random", 3, 0)[:5]
    policy = load_policy(config.model, trainable=config.trainable, device="cpu")
    sharding = Sharding.resolve(SHARDING.partition("=")[2], world)
    if sharding.kind == "fsdp":
        shard_policy(policy, sharding)
    optimizer = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=config.lr)
    loss = sft_step(policy, batch, world, make_steps(policy, optimizer, world, sharding, max_grad_norm=1e9))
    weights = trained_state(policy)  # gathered whole when sharded: every rank takes part
    if world.is_main:
        save_weights({"trained": weights}, out)
    return {"sft/loss": loss}


def save_weights(parts: dict, out: Path) -> None:
    tensors = {f"{stem}/{name}": t.detach().contiguous() for stem, part in parts.items() for name, t in part.items()}
    save_file(tensors, out / "weights.safetensors")


def evaluate(model: str, out: Path, world: World) -> dict:
    config = load_config(env="numberline", overrides=[*TINY, SHARDING, f"model={model}", f"out={out}", "temperature=0"])
    run = setup(config, world)
    result = evaluate_heldout(run.policy, config, 6, world)
    return result.as_dict()


def train_run(model: str, run_dir: Path, stop: int | None) -> dict:
    if (run_dir / "config.yaml").is_file():
        train(resume=run_dir)
    else:
        steps = os.environ.get("WORKER_TOTAL_STEPS", "12")
        extra = os.environ.get("WORKER_OVERRIDES", "").split()
        config = load_config(
            env="numberline",
            overrides=[*TINY, SHARDING, f"model={model}", f"out={run_dir}", f"total_steps={steps}", *extra],
        )
        train(config, stop_after=stop)
    return {}


def main() -> None:
    job, model, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    world = World.join("cpu")
    (out / f"pid-{world.rank}").write_text(str(os.getpid()))  # for the test that kills a rank
    torch.manual_seed(0)
    if job == "one-step":
        result = one_step(model, out, world)
    elif job == "group-step":
        result = group_step(model, out, world)
    elif job == "sft-step":
        result = sft_one_step(model, out, world)
    elif job == "evaluate":
        result = evaluate(model, out, world)
    else:
        result = train_run(model, Path(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else None)
    (out / f"rank-{world.rank}.json").write_text(json.dumps(result))
    if leave_world():  # as the command line does: a process group left to the interpreter's exit may abort it
        end_process(0)


if __name__ == "__main__":
    main()
