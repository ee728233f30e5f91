"""PPO fine-tuning of a vision-language agent, top to bottom (the RL4VLM recipe).

    for each update:
        1. collect `steps_per_update` env steps: one batched generate per lockstep step
           (grpo / gigpo: rounds of whole episodes, each seed dealt to a group of environments,
           until the update holds at least `steps_per_update` steps)
        2. advantages: GAE over the buffer (truncated episodes bootstrap from their last value),
           or each episode's return against its group's (grpo; gigpo adds same-state steps)
        3. `ppo_epochs` passes over shuffled mini-batches: re-score each sample from its own
           prompt and image, clipped surrogate on the CoT-scaled log-prob, clipped value loss,
           gradient accumulation, grad-norm clip, Adam with a cosine learning rate
        4. log; evaluate on held-out seeds every K updates; checkpoint every K updates

Everything random (deals, sampling, mini-batch order, invalid-answer fallbacks) is seeded
and checkpointed, so on CPU a run stopped after a checkpoint and resumed logs the same
metrics as one that never stopped. Ctrl-C stops at the end of the current update and writes
a final checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, ValidationError
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from vlmrl.algos.advantages import gae, normalize
from vlmrl.algos.group_advantages import gigpo, grpo, tied_groups
from vlmrl.algos.ppo import kl_to_reference, minibatch_indices, ppo_losses
from vlmrl.evaluation.evaluate import EvalResult, play_policy, summarize
from vlmrl.games import Episode, get_task
from vlmrl.infra.checkpoint import (
    capture_rng,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    resume_checkpoint,
    save_checkpoint,
)
from vlmrl.infra.distributed import ALONE, World, split_evenly
from vlmrl.infra.errors import UsageError
from vlmrl.infra.metrics import ConsoleProgress, MetricsLogger
from vlmrl.infra.runs import RunFolder, check_free_space, parameter_bytes, writing
from vlmrl.infra.seeds import HELDOUT_SEEDS
from vlmrl.infra.typed_config import save_config
from vlmrl.policy import LoraSettings, Policy, load_policy
from vlmrl.policy.saving import is_lora, load_trainable_tensors, trainable_tensors
from vlmrl.recipes.config import RESUME_ALONE, TrainConfig, load_config, load_sft_config, resolved_train_config
from vlmrl.recipes.rollout import EpisodeWindow, GroupBuffer, RolloutBuffer, Rollouts, Saved, schema_error
from vlmrl.recipes.sample_log import cot_diversity, picked_samples, thoughts
from vlmrl.recipes.stepping import Steps, lay_out, make_steps
from vlmrl.tiny import model_or_demo

PAPER_RESULTS = {"numberline": 0.894, "ezpoints": 0.50, "points24": 0.023, "blackjack": 0.402, "alfworld": 0.217}
"""RL4VLM's success rates (LLaVA-7B, SFT + PPO), drawn on the curve for reference."""


@dataclass
class Run:
    """Everything a run holds between updates."""

    config: TrainConfig
    run_dir: Path
    policy: Policy
    optimizer: torch.optim.Optimizer
    steps: Steps
    """How an optimizer step is taken over the ranks (torch's optimizer, or DeepSpeed's ZeRO around it)."""
    scheduler: torch.optim.lr_scheduler.LambdaLR
    rollouts: Rollouts
    window: EpisodeWindow
    minibatch_rng: torch.Generator
    reference: Policy | None
    world: World = ALONE
    update: int = 0
    env_steps: int = 0


def optimizer_steps_per_update(config: TrainConfig) -> int:
    minibatches = math.ceil(config.steps_per_update / config.minibatch_size)
    return config.ppo_epochs * math.ceil(minibatches / config.grad_accum)


def initial_model(config: TrainConfig) -> Path:
    """The folder the run starts from: an SFT run's merged model, a model folder, or the demo model."""
    if not config.init:
        return model_or_demo(config.model)
    init = Path(config.init)
    if (init / "model" / "config.json").is_file():
        return init / "model"
    if (init / "config.json").is_file():
        return init
    raise UsageError(f"init {config.init!r} is neither a `vlmrl sft` run (with model/) nor a model folder")


def build_policy(config: TrainConfig, world: World = ALONE) -> Policy:
    """The policy a run trains: its initial model, with LoRA or its parts trainable, on its device
    (under a launcher, this rank's own GPU)."""
    lora = LoraSettings(config.lora_rank, config.lora_alpha, config.lora_dropout) if config.lora else None
    return load_policy(
        initial_model(config),
        lora=lora,
        trainable=config.trainable,
        device=world.device(config.device),
        gradient_checkpointing=config.gradient_checkpointing,
    )


def setup(config: TrainConfig, world: World = ALONE, policy: Policy | None = None) -> Run:
    """Build the policy (unless given one built elsewhere: `vlmrl bench update`'s random model of a real
    shape), the optimizer and its schedule, this rank's share of the environments."""
    local_envs = world.share(config.num_envs, "num_envs")
    world.share(config.minibatch_size, "minibatch_size")  # each forward pass takes minibatch_size / N samples
    torch.manual_seed(config.seed)
    policy = policy if policy is not None else build_policy(config, world)
    policy.kv_cache = config.kv_cache
    if world.distributed:  # one start on every rank (as DDP does), then each rank samples its own way
        world.copy_from_main(p for p in policy.parameters() if p.requires_grad)  # frozen ones come from the folder
        torch.manual_seed(world.seed(config.seed))
    reference = None
    if config.kl_coef > 0 and not is_lora(policy):  # with LoRA the reference is the model with adapters off
        reference = Policy(
            copy.deepcopy(policy.model).eval(),
            policy.processor,
            policy.family,
            policy.suppressed_ids,
            policy.value_head,
        )
    sharding = lay_out(policy, world, config.sharding, reference)
    critic = list(policy.value_head.parameters())
    actor = [p for p in policy.parameters() if p.requires_grad and all(p is not c for c in critic)]
    value_lr = config.lr if config.value_lr is None else config.value_lr
    groups = [{"params": actor, "lr": config.lr}]
    if not config.grouped:  # group-relative advantages need no critic: the value head is not trained
        groups.append({"params": critic, "lr": value_lr})
    optimizer = torch.optim.Adam(groups, lr=config.lr, eps=config.adam_eps)
    steps = make_steps(policy, optimizer, world, sharding, config.max_grad_norm)
    total = config.updates * optimizer_steps_per_update(config)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(  # each group from its own lr down by lr_min / lr
        optimizer, num_warmup_steps=0, num_training_steps=total, min_lr_rate=config.lr_min / config.lr
    )
    rollouts = Rollouts(
        get_task(config.env),
        local_envs,
        config.seed,
        config.invalid_action,
        config.invalid_penalty,
        config.cot,
        config.env_kwargs,
        rank=world.rank,
        world_size=world.size,
        env_workers=config.env_workers,
    )
    return Run(
        config,
        config.run_dir(),
        policy,
        optimizer,
        steps,
        scheduler,
        rollouts,
        EpisodeWindow(config.success_window),
        torch.Generator().manual_seed(world.seed(config.seed)),
        reference,
        world,
    )


def reference_logprobs(run: Run, samples) -> torch.Tensor | None:
    """Per-token log-probs (B, T) of the samples under the initial policy, for the optional KL penalty."""
    if run.config.kl_coef <= 0:
        return None
    with torch.no_grad():
        if run.reference is not None:
            return run.reference.score(samples).token_logprobs.cpu()
        with run.policy.model.disable_adapter():
            return run.policy.score(samples).token_logprobs.cpu()


def ppo_update(
    run: Run, buffer: RolloutBuffer | GroupBuffer, advantages: torch.Tensor, returns: torch.Tensor | None
) -> dict[str, float]:
    """`ppo_epochs` passes of clipped PPO over the buffer; the mean of each loss term. `returns`:
    the critic's targets (None under group-relative advantages: the value head is not trained)."""
    config, policy, world = run.config, run.policy, run.world
    samples = buffer.samples
    old_logprob = torch.tensor([s.logprob(config.cot_lambda) for s in samples])
    old_value = buffer.values.flatten()
    advantages = advantages.flatten()
    critic = returns is not None
    returns = returns.flatten() if critic else old_value  # no critic: a value loss of 0, weighted 0
    if config.normalize_advantages and critic:  # over every rank's part of the buffer
        advantages = normalize(advantages, sum_over_ranks=world.sum if world.distributed else None)
    ref_logprob = reference_logprobs(run, samples)
    device = policy.device
    totals: dict[str, list[float]] = {}
    policy.train()
    for _ in range(config.ppo_epochs):
        batches, weights = epoch_minibatches(run, len(samples))
        for first in range(0, len(batches), config.grad_accum):
            group = batches[first : first + config.grad_accum]
            for index, weight in zip(group, weights[first : first + config.grad_accum], strict=True):
                scores = policy.score(
                    [samples[i] for i in index.tolist()], config.cot_lambda, config.value_trains_model
                )
                kl_ref = None
                if ref_logprob is not None:  # padded to the buffer's longest response, so cut to this batch's
                    reference = ref_logprob[index, : scores.token_logprobs.shape[1]].to(device)
                    kl_ref = kl_to_reference(scores.token_logprobs, reference)
                losses = ppo_losses(
                    new_logprob=scores.logprob,
                    old_logprob=old_logprob[index].to(device),
                    advantages=advantages[index].to(device),
                    new_value=scores.value,
                    old_value=old_value[index].to(device),
                    returns=returns[index].to(device),
                    entropy=scores.entropy,
                    clip=config.clip,
                    value_clip=config.value_clip,
                    value_coef=config.value_coef if critic else 0.0,
                    entropy_coef=config.entropy_coef,
                    kl_ref=kl_ref,
                    kl_coef=config.kl_coef,
                )
                run.steps.backward(losses.loss * weight / len(group))
                for name, value in (
                    ("policy_loss", losses.pg_loss),
                    ("value_loss", losses.v_loss),
                    ("entropy", losses.entropy),
                    ("approx_kl", losses.approx_kl),
                    ("clipfrac", losses.clipfrac),
                    ("kl_ref", losses.kl_ref),
                ):
                    totals.setdefault(name, []).append(float(value.detach()))
            # gradients averaged over the ranks, clipped by their global norm, then Adam
            totals.setdefault("grad_norm", []).append(run.steps.step())  # the norm before the clip
            run.scheduler.step()
    policy.eval()
    stats = {f"losses/{name}": float(np.mean(values)) for name, values in totals.items()}
    if not critic:
        del stats["losses/value_loss"]
    if world.distributed:  # each rank's means over equal shares: their mean is the global one
        means = world.sum(torch.tensor(list(stats.values()), dtype=torch.float64)) / world.size
        stats = dict(zip(stats, means.tolist(), strict=True))
        if critic:
            returns, old_value = torch.cat(world.gather(returns)), torch.cat(world.gather(old_value))
    if critic:
        variance = returns.var()
        explained = float(1 - (returns - old_value).var() / variance) if variance > 0 else 0.0
        stats["losses/explained_variance"] = explained
    return stats


def epoch_minibatches(run: Run, samples: int) -> tuple[list[torch.Tensor], list[float]]:
    """One epoch's mini-batches of this rank's samples (shuffled), and the weight of each one's mean loss.

    GAE's buffer has the same size on every rank: mini-batches of `minibatch_size / N`, weight 1.
    Whole episodes make buffers of any size, so the buffer is cut into as many mini-batches as
    `steps_per_update` samples make (the schedule's step count stays fixed and every rank takes
    the same number of passes), and each rank's mean is weighted by its share of the global
    mini-batch (its size times N over their sum), so the ranks' averaged gradient is the gradient
    of the global mini-batch's mean. A rank whose part of a mini-batch is empty runs a pass over
    one of its samples, weighted 0, so that every rank takes part in the same collectives."""
    config, world = run.config, run.world
    if not config.grouped:
        batches = minibatch_indices(samples, config.minibatch_size // world.size, run.minibatch_rng)
        return batches, [1.0] * len(batches)
    count = math.ceil(config.steps_per_update / config.minibatch_size)
    order = torch.randperm(samples, generator=run.minibatch_rng)
    batches = list(order.tensor_split(count))
    sizes = torch.tensor([[len(b) for b in batches]], dtype=torch.float64)
    every_rank = torch.cat(world.gather(sizes)) if world.distributed else sizes
    weights = (sizes[0] * world.size / every_rank.sum(0).clamp(min=1)).tolist()
    return [b if len(b) else order[:1] for b in batches], weights


def group_advantages(run: Run, buffer: GroupBuffer) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's or GiGPO's advantage of each of this rank's steps, its groups compared over every rank, and
    the share of those groups whose episodes all returned the same (no signal for GRPO's term)."""
    config, world = run.config, run.world
    parts = [(buffer.rewards, buffer.episode, buffer.group, buffer.state)]
    if world.distributed:
        parts = world.gather(parts[0])
    rewards, episode, group, state = (torch.cat([part[k] for part in parts]) for k in range(4))
    if config.advantage == "grpo":
        advantages = grpo(rewards, episode, group, config.group_std)
    else:
        advantages = gigpo(rewards, episode, group, state, config.gamma, config.gigpo_step_weight, config.group_std)
    compared, tied = tied_groups(rewards, episode, group)
    start = sum(len(part[0]) for part in parts[: world.rank])
    stats = {"charts/tied_groups": tied / compared if compared else 0.0}
    return advantages[start : start + len(buffer.rewards)], stats


def evaluate_heldout(
    policy: Policy,
    config: TrainConfig,
    episodes: int,
    world: World = ALONE,
) -> EvalResult:
    """`policy` on `episodes` held-out deals (never dealt in training: the test seeds from EVAL_SEED_BASE,
    or the validation seeds, by `eval_seeds`), sampled at the evaluation temperature, on the evaluation
    environments (`eval_env_kwargs`).
    Under a launcher each rank plays its contiguous part of the seeds and every rank gets all the
    episodes back, in seed order: the same deals one process would play."""
    first = HELDOUT_SEEDS[config.eval_seeds]
    played = play_as_evaluated(
        policy, config, split_evenly(range(first, first + episodes), world), config.heldout_env_kwargs, world=world
    )
    return summarize(get_task(config.env), "policy", [episode for part in world.gather(played) for episode in part])


def play_as_evaluated(
    policy: Policy,
    config: TrainConfig,
    seeds: Sequence[int],
    env_kwargs: dict[str, Any],
    invalid_action: str | None = None,
    world: World = ALONE,
) -> list[Episode]:
    """`policy` on the deals of `seeds`, prompted and sampled as `config`'s held-out evaluation is (its cot,
    evaluation temperature, top_p, answer length; its invalid-answer rule unless `invalid_action` is given)."""
    return play_policy(
        policy,
        get_task(config.env),
        seeds,
        cot=config.cot,
        temperature=config.heldout_temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        invalid_action=invalid_action or config.invalid_action,
        env_kwargs=env_kwargs,
        world=world,
        env_workers=config.env_workers,
    )


def evaluate_now(run: Run) -> dict[str, float]:
    result = evaluate_heldout(run.policy, run.config, run.config.eval_episodes, run.world)
    low, high = result.success_ci95
    return {
        "eval/success_rate": result.success_rate,
        "eval/success_ci95_low": low,
        "eval/success_ci95_high": high,
        "eval/mean_return": result.mean_return,
        "eval/invalid_rate": result.invalid_rate,
    }


def save(run: Run) -> Path | None:
    """A checkpoint, written by rank 0: the shared weights, optimizer and schedule once, every rank's
    environments (rank 0's as one process saves them, the others' under `ranks`) and generators
    (the others' in their own RNG sections)."""
    state: dict[str, Any] = {
        "update": run.update,
        "env_steps": run.env_steps,
        "rollouts": run.rollouts.state_dict(),
        "window": run.window.state_dict(),
    }
    generators = {"minibatch": run.minibatch_rng}
    other_ranks_rng = []
    if run.world.distributed:
        state["world_size"] = run.world.size
        others = run.world.gather((run.rollouts.state_dict(), capture_rng(generators)))[1:]
        state["ranks"] = [{"rollouts": rollouts} for rollouts, _ in others]
        other_ranks_rng = [rng for _, rng in others]
    if not (run.world.is_main or run.steps.gathers):  # else every rank takes part in gathering weights and Adam
        return None
    tensors = trainable_tensors(run.policy)
    optimizer = run.steps.state_dict()
    if not run.world.is_main:
        return None
    return save_checkpoint(
        run.run_dir,
        run.update,
        tensors,
        optimizer,
        run.scheduler,
        state,
        keep=run.config.keep_checkpoints,
        generators=generators,
        other_ranks_rng=other_ranks_rng,
    )


class RankState(Saved):
    """A rank's own environments in a checkpoint (ranks 1 and up; its RNGs have their own section)."""

    rollouts: dict


class TrainerState(Saved):
    """What `save` puts in a checkpoint's state (the rollouts and window have schemas of their own)."""

    update: Annotated[int, Field(ge=1)]
    env_steps: Annotated[int, Field(ge=0)]
    rollouts: dict
    window: list
    world_size: Annotated[int, Field(ge=2)] | None = None
    """Written by runs of more than one process, with `ranks`: ranks 1 and up."""
    ranks: list[RankState] | None = None


def check_state(run: Run, step: int, state: dict[str, Any]) -> None:
    """ValueError unless a checkpoint's trainer state is one this run could have written at `step`
    (checked before anything is restored, so a bad one falls back to the previous checkpoint); a
    checkpoint of another number of processes is a UsageError naming both."""
    try:
        TrainerState.model_validate(state)
    except ValidationError as error:
        raise ValueError(schema_error(error)) from None
    config, world = run.config, run.world
    written_by = state.get("world_size") or 1
    if written_by != world.size:
        raise UsageError(
            f"checkpoint step-{step} of {run.run_dir} was written by {written_by} process(es), this run has "
            f"{world.size}: resume it with {written_by} (each process continues its own environments)"
        )
    ranks = state.get("ranks") or []
    if len(ranks) != world.size - 1:
        raise ValueError(
            f"ranks holds {len(ranks)} ranks' states; a run of {world.size} processes writes {world.size - 1}"
        )
    if state["update"] != step or not 1 <= step <= config.updates:
        raise ValueError(f"update is {state['update']}, the checkpoint's step {step}, this run has {config.updates}")
    if config.grouped:  # rounds of whole episodes take at least steps_per_update steps
        if state["env_steps"] < step * config.steps_per_update:
            raise ValueError(
                f"env_steps is {state['env_steps']}, but {step} updates take at least "
                f"{step * config.steps_per_update} steps"
            )
    elif state["env_steps"] != step * config.steps_per_update:
        raise ValueError(
            f"env_steps is {state['env_steps']}, but {step} updates of {config.steps_per_update} steps make "
            f"{step * config.steps_per_update}"
        )
    run.window.check_state(state["window"])
    for rollouts in [state["rollouts"], *(rank["rollouts"] for rank in ranks)]:
        run.rollouts.check_state(rollouts)


def restore(run: Run, checkpoint: Path) -> None:
    """Continue from a checkpoint `resume_checkpoint` chose (so verified, and its state checked);
    every rank reads it and takes its own RNGs and environments."""
    rank = run.world.rank
    loaded = load_checkpoint(
        checkpoint, run.steps, run.scheduler, generators={"minibatch": run.minibatch_rng}, verify=False, rank=rank
    )
    load_trainable_tensors(run.policy, loaded.tensors, repr(str(checkpoint)))
    run.steps.weights_loaded()
    run.update, run.env_steps = loaded.state["update"], loaded.state["env_steps"]
    run.window.load_state_dict(loaded.state["window"])
    own = loaded.state["rollouts"] if rank == 0 else loaded.state["ranks"][rank - 1]["rollouts"]
    run.rollouts.load_state_dict(own)


def checkpoint_bytes(run: Run) -> int:
    """What one checkpoint of this run takes on disk: the trained tensors and Adam's two moments."""
    return 3 * parameter_bytes(p for p in run.policy.parameters() if p.requires_grad)


def trained_policy(run_dir: str | Path) -> tuple[Policy, TrainConfig]:
    """The policy a run's newest intact checkpoint holds, built as the run built it, and the run's config."""
    config = train_run_config(Path(run_dir))
    policy = build_policy(config)
    checkpoint, tensors = load_weights(run_dir, device=policy.device)
    load_trainable_tensors(policy, tensors, repr(str(checkpoint)))
    return policy.eval(), config


def is_sft_run(run_dir: Path) -> bool:
    return (run_dir / "config.yaml").is_file() and (run_dir / "model" / "config.json").is_file()


def train_run_config(run_dir: Path) -> TrainConfig:
    """A `vlmrl train` run's own config (a UsageError where the folder is not one)."""
    if not (run_dir / "config.yaml").is_file():
        raise UsageError(f"{str(run_dir)!r} is not a `vlmrl train` run directory (no config.yaml)")
    return load_config(run_dir / "config.yaml")


def run_config(run_dir: str | Path) -> TrainConfig:
    """The config that says how a run's policy is prompted and sampled, without loading it (so a wrong
    game is one line before any weights are read): a `vlmrl train` run's own; for a `vlmrl sft` run,
    its game's PPO preset with the warm-up's `cot`, as `vlmrl bench learn` judges a warm-up."""
    run_dir = Path(run_dir)
    if is_sft_run(run_dir):
        warmup = load_sft_config(run_dir / "config.yaml")
        return load_config(env=warmup.env, overrides=[f"cot={warmup.cot}"])
    return train_run_config(run_dir)


def run_policy(run_dir: str | Path) -> tuple[Policy, TrainConfig]:
    """The policy of a `vlmrl train` run (its newest checkpoint) or of a `vlmrl sft` run (its model), with
    its `run_config`."""
    run_dir = Path(run_dir)
    if is_sft_run(run_dir):
        return load_policy(run_dir / "model").eval(), run_config(run_dir)
    return trained_policy(run_dir)


class StopRequest:
    """Ctrl-C once: finish this update, checkpoint, exit. Twice: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, *_: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nvlmrl: stopping after this update and writing a checkpoint (Ctrl-C again to abort now)", flush=True)

    def __exit__(self, *_: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train(
    config: TrainConfig | None = None,
    resume: str | Path | None = None,
    stop_after: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Run (or resume) PPO training; returns the run directory. A new run needs an empty `out`
    (`overwrite`: an earlier run there is deleted first). `stop_after` ends after that many
    updates in total, as an interruption would (used by tests of resuming)."""
    if resume is not None:
        config = resolved_train_config(None, None, [], resume)
    elif config is None:
        raise ValueError("give a config or a run directory to resume")
    run_dir = config.run_dir()
    refusal = (
        f"continue that run with `vlmrl train --resume {run_dir}`, replace it with --overwrite, or choose another out"
    )
    world = World.join(config.device)
    with world.on_main(lambda: RunFolder(run_dir, resume=resume is not None, overwrite=overwrite, refusal=refusal)):
        run = setup(config, world)
        with contextlib.closing(run.rollouts):  # its environment workers stop however the run ends
            checkpoint = world.from_main(lambda: starting_point(run, resume is not None))
            if checkpoint is not None:
                restore(run, Path(checkpoint))
            with world.on_main(lambda: writing(run_dir, lambda: what_survives(run_dir))):
                train_loop(run, resume is not None, stop_after)
    world.barrier()  # rank 0 has written the last checkpoint: every rank may read it
    return run_dir


def starting_point(run: Run, resuming: bool) -> str | None:
    """The checkpoint a resumed run continues from (None: from the start), or, for a new run, a
    check that the disk holds its checkpoints. Rank 0 decides; every rank follows."""
    config, run_dir = run.config, run.run_dir
    if not resuming:
        check_free_space(
            run_dir,
            (config.keep_checkpoints + 1) * checkpoint_bytes(run),
            f"{config.keep_checkpoints} checkpoints and one being written",
        )
        return None
    if not list_checkpoints(run_dir):  # stopped before its first checkpoint
        print(f"vlmrl: note: {run_dir} has no checkpoint yet; the run starts again from its beginning", flush=True)
        return None
    checkpoint = resume_checkpoint(
        run_dir,
        on_skip=lambda line: print(f"vlmrl: {line}", flush=True),
        check=lambda step, state: check_state(run, step, state),
    )
    return str(checkpoint)


def what_survives(run_dir: Path) -> str:
    """After a failed write: the checkpoint the run can continue from, and how."""
    newest = latest_checkpoint(run_dir, deep=False)
    if newest is None:
        return "no checkpoint was written yet: free some space and start again"
    return f"{newest.name} is intact: free some space and continue with `vlmrl train --resume {run_dir}`"


def train_loop(run: Run, resumed: bool, stop_after: int | None) -> Path:
    """Updates from `run.update` on: collect, advantages, PPO, log, evaluate, checkpoint."""
    config, world = run.config, run.world
    if not resumed and world.is_main:
        save_config(config, run.run_dir / "config.yaml")
    task = get_task(config.env)
    logger = None  # rank 0 alone writes the metrics and shows progress
    if world.is_main:
        logger = MetricsLogger(
            run.run_dir,
            title=f"{config.env}: PPO",
            tensorboard=config.tensorboard,
            resume=resumed,
            ceiling=float(task.ceiling()),
            reference=PAPER_RESULTS.get(config.env),
            reference_label="RL4VLM (paper)",
        )
        if resumed:
            logger.truncate_after(run.update)
    last_update = config.updates if stop_after is None else min(config.updates, stop_after)
    if config.grouped:  # rounds of whole episodes take a varying number of steps: progress counts updates
        progress = ConsoleProgress(
            config.updates, config.env, unit="updates", updates_done=run.update, steps_done=run.update
        )
    else:
        total_steps = config.updates * config.steps_per_update
        progress = ConsoleProgress(total_steps, config.env, updates_done=run.update, steps_done=run.env_steps)
    stopping = False
    try:
        with StopRequest() as stop, progress if world.is_main else contextlib.nullcontext():
            while run.update < last_update and not stopping:
                started = time.perf_counter()
                run.policy.eval()
                steps_before = run.env_steps
                buffer, advantages, returns, finished, estimated = collect_and_estimate(run)
                stats = ppo_update(run, buffer, advantages, returns)
                run.update += 1
                stats.update(run.window.summary())
                stats.update(rollout_stats(run, buffer, len(finished)))
                stats.update(estimated)
                stats["charts/learning_rate"] = run.scheduler.get_last_lr()[0]
                stats["charts/SPS"] = (run.env_steps - steps_before) / (time.perf_counter() - started)
                stats["world_size"] = world.size
                if config.eval_every and run.update % config.eval_every == 0:
                    stats.update(evaluate_now(run))
                if logger is not None:
                    logger.log(run.update, run.env_steps, stats)
                    if config.samples_every and run.update % config.samples_every == 0:  # rank 0's samples
                        picked = picked_samples(buffer, advantages, config.samples_logged)
                        logger.log_samples(run.update, run.env_steps, picked)
                    progress.update(run.update if config.grouped else run.env_steps, stats)
                stopping = world.any(stop.requested)  # every rank stops after the same update
                if run.update % config.checkpoint_every == 0 or run.update == last_update or stopping:
                    save(run)
    finally:
        if logger is not None:
            logger.close()
    return run.run_dir


def collect_and_estimate(
    run: Run,
) -> tuple[RolloutBuffer | GroupBuffer, torch.Tensor, torch.Tensor | None, list, dict[str, float]]:
    """Steps 1 and 2 of the loop: this update's experience (every rank's finished episodes go into
    the success window) and its advantages, with the critic's targets (None without a critic) and
    what the estimate measured on the way (group advantages: the share of tied groups)."""
    config, world = run.config, run.world
    if config.grouped:
        buffer, finished = run.rollouts.collect_groups(
            run.policy,
            config.steps_per_update,
            config.group_size,
            config.temperature,
            config.top_p,
            config.max_new_tokens,
            world,
        )
        run.env_steps += buffer.steps_all_ranks
    else:
        buffer, finished = run.rollouts.collect(
            run.policy, config.rollout_length, config.temperature, config.top_p, config.max_new_tokens, world
        )
        run.env_steps += config.steps_per_update
    finished = [episode for part in world.gather(finished) for episode in part]
    run.window.extend(finished)
    if config.grouped:
        advantages, estimated = group_advantages(run, buffer)
        return buffer, advantages, None, finished, estimated
    advantages, returns = gae(
        buffer.rewards,
        buffer.values,
        buffer.next_values,
        buffer.terminated,
        buffer.truncated,
        config.gamma,
        config.gae_lambda,
    )
    return buffer, advantages, returns, finished, {}


def rollout_stats(run: Run, buffer: RolloutBuffer | GroupBuffer, finished: int) -> dict[str, float]:
    """Invalid answers, the diversity of thoughts and generation speed over every rank's share of the update."""
    if not run.world.distributed:
        return {
            "charts/invalid_rate": float(buffer.invalid.float().mean()),
            "charts/episodes_finished": float(finished),
            "charts/cot_diversity": cot_diversity(thoughts(buffer.samples)),
            "charts/tokens_per_second": buffer.generated_tokens / max(buffer.generation_seconds, 1e-9),
        }
    own = [
        float(buffer.invalid.sum()),
        float(buffer.invalid.numel()),
        buffer.generated_tokens,
        buffer.generation_seconds,
    ]
    invalid, answers, tokens, seconds = run.world.sum(torch.tensor(own, dtype=torch.float64)).tolist()
    every_thought = [thought for part in run.world.gather(thoughts(buffer.samples)) for thought in part]
    return {
        "charts/invalid_rate": invalid / answers,
        "charts/episodes_finished": float(finished),
        "charts/cot_diversity": cot_diversity(every_thought),
        "charts/tokens_per_second": tokens / max(seconds / run.world.size, 1e-9),  # ranks generate side by side
    }


def main_train(
    config_path: str | None, env: str | None, overrides: list[str], resume: str | None, overwrite: bool = False
) -> Path:
    """The `vlmrl train` command."""
    if resume is not None:
        if config_path or env or overrides or overwrite:
            raise UsageError(RESUME_ALONE)
        return train(resume=resume)
    return train(resolved_train_config(config_path, env, overrides), overwrite=overwrite)
