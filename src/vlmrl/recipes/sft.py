"""Supervised warm-up: the games write their own demonstrations, the model learns to answer.

The paper starts PPO from a supervised fine-tuned LLaVA. Here the data comes from the games:
seeded episodes played by a behaviour policy (`expert`, `random`, or `epsilon`: the expert
with probability 1 - eps), each step recorded as (image, prompt, answer). The answer always
describes the image correctly (the numbers, the cards, the formula) while its thoughts and
action follow the behaviour policy: a random draw comes with no argument, even when it happens
to be the expert's action (otherwise the argument would mark the right action and the model
would learn part of the decision from it). A `random` warm-up therefore teaches perception
and the answer format but not the decisions, which RL must then learn: the honest way to show
what RL adds.

The loss is the negative log-likelihood of the answer tokens only, computed by the same
`Policy.score` that PPO uses, so SFT trains exactly the distribution `generate` samples
from. The run writes `RUN/model/`, a plain model folder that `vlmrl train --init RUN` starts
from, whatever LoRA or full fine-tuning PPO then uses.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import get_cosine_schedule_with_warmup

from vlmrl.evaluation.episodes import Lockstep
from vlmrl.games import Task, get_task, make_env
from vlmrl.games.parsing import json_objects
from vlmrl.infra.distributed import ALONE, WHOLE, Sharding, World, split_evenly
from vlmrl.infra.errors import UsageError
from vlmrl.infra.files import atomic_write_text
from vlmrl.infra.metrics import ConsoleProgress, MetricsLogger
from vlmrl.infra.runs import RunFolder, check_free_space, parameter_bytes, writing
from vlmrl.infra.typed_config import save_config
from vlmrl.policy import LoraSettings, Policy, Sample, export_merged, load_policy
from vlmrl.policy.folder import quiet_progress_bars
from vlmrl.policy.saving import load_trainable_tensors, trainable_tensors
from vlmrl.policy.split import action_start
from vlmrl.recipes.config import SFTConfig
from vlmrl.recipes.stepping import Steps, lay_out, make_steps
from vlmrl.tiny import model_or_demo


@dataclass
class Demonstration:
    image: np.ndarray
    prompt: str
    answer: str
    action: int
    truth: dict[str, Any] = field(default_factory=dict)
    """The answer's perception fields, true to the image (what field accuracy compares)."""
    episode: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    """The step's `info`, which parsing needs where the legal actions change by step (ALFWorld)."""


def behaviour_action(task: Task, env, behaviour: str, epsilon: float, rng: np.random.Generator) -> tuple[int, bool]:
    """The behaviour policy's action, and whether the expert chose it (else a uniform draw, which
    may coincide with the expert's action but has no argument behind it)."""
    if behaviour == "expert" or (behaviour == "epsilon" and rng.random() >= epsilon):
        return task.expert_action(env), True
    return int(rng.integers(len(task.legal_actions_in(env)))), False


def collect_demonstrations(
    task: Task,
    behaviour: str,
    episodes: int,
    seed: int,
    epsilon: float = 0.5,
    cot: bool = True,
    env_kwargs: dict[str, Any] | None = None,
) -> list[Demonstration]:
    """Every step of `episodes` seeded episodes played by the behaviour policy."""
    env = make_env(task.name, **(env_kwargs or {}))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDE40]))
    games = Lockstep([env], [range(seed, seed + episodes)])
    demonstrations, episode = [], 0
    while games.active:
        [(observation, info)] = games.states()
        action, argued = behaviour_action(task, env, behaviour, epsilon, rng)
        demonstrations.append(
            Demonstration(
                observation,
                task.prompt(info, cot=cot),
                task.answer(env, action, cot, argued),
                action,
                task.describe(env) if cot else {},
                episode,
                info,
            )
        )
        [step] = games.step([action])
        episode += step.episode is not None
    env.close()
    return demonstrations


def as_samples(policy: Policy, demonstrations: list[Demonstration]) -> list[Sample]:
    """Demonstrations in the form PPO re-scores: own prompt ids and image, the answer + end token."""
    inputs = policy.encode([d.image for d in demonstrations], [d.prompt for d in demonstrations])
    samples = []
    for i, demo in enumerate(demonstrations):
        prompt = inputs["input_ids"][i][inputs["attention_mask"][i].bool()].cpu()
        ids = policy.tokenizer.encode(demo.answer, add_special_tokens=False) + [policy.eos_ids[0]]
        response = torch.tensor(ids)
        samples.append(
            Sample(
                demo.image,
                prompt,
                response,
                demo.answer,
                torch.zeros(len(ids)),
                0.0,
                action_start(policy.tokenizer, ids),
                1.0,
            )
        )
    return samples


def answer_loss(policy: Policy, demonstrations: list[Demonstration]) -> torch.Tensor:
    """Mean negative log-likelihood per answer token (prompt tokens carry no loss)."""
    nll, tokens = answer_nll(policy, demonstrations)
    return nll / tokens


def answer_nll(policy: Policy, demonstrations: list[Demonstration]) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the answer tokens, and how many there are."""
    samples = as_samples(policy, demonstrations)
    scores = policy.score(samples, cot_lambda=1.0)
    return -scores.token_logprobs.sum(), sum(len(s.response_ids) for s in samples)


def sft_step(policy: Policy, batch: list[Demonstration], world: World, steps: Steps) -> float:
    """One optimizer step on `batch` (under a launcher, each rank scores its part of it): the loss is
    the mean over every answer token of the whole batch, whichever rank holds it; returns that loss."""
    policy.train()
    mine = list(split_evenly(batch, world))
    # a rank with no part still runs its forward and backward (sharded weights need every rank), weighted 0
    nll, tokens = answer_nll(policy, mine or batch[:1])
    nll, tokens = (nll, tokens) if mine else (nll * 0.0, 0)
    total = float(world.sum(torch.tensor(float(tokens))))
    # gradients are averaged over ranks, so each rank's part of the batch's mean counts size times
    steps.backward(nll * (world.size / total))
    steps.step()  # averaged over the ranks, clipped by the global norm, AdamW
    return float(world.sum(nll.detach())) / total


def check_answers(
    policy: Policy,
    task: Task,
    demonstrations: list[Demonstration],
    max_new_tokens: int,
) -> dict[str, float]:
    """Greedy answers to held-out prompts: how many parse, how many fields read the image right,
    how many take the demonstrated action, and, to tell perception from reasoning, how many read every
    field right and how often those take the demonstrated action."""
    samples = policy.generate(
        [d.image for d in demonstrations],
        [d.prompt for d in demonstrations],
        temperature=0.0,
        max_new_tokens=max_new_tokens,
    )
    valid = fields_right = fields_total = same_action = read = same_action_read = 0
    for demo, sample in zip(demonstrations, samples, strict=True):
        parsed = task.parse(sample.text, demo.info)
        valid += parsed.valid
        same_action += parsed.action == demo.action
        objects = [o for o in json_objects(sample.text) if isinstance(o, dict)]
        answer = objects[-1] if objects else {}
        right = [answer.get(key) == value for key, value in demo.truth.items()]
        fields_total += len(right)
        fields_right += sum(right)
        if right and all(right):
            read += 1
            same_action_read += parsed.action == demo.action
    n = len(demonstrations)
    scores = {"sft/valid_rate": valid / n, "sft/action_agreement": same_action / n}
    if fields_total:  # a game whose answer has no perception fields (Blackjack) reports none, not 0%
        scores["sft/field_accuracy"] = fields_right / fields_total
        scores["sft/read_all_fields"] = read / n
        if read:  # the decision given a right reading: reasoning, with perception taken out
            scores["sft/action_agreement_when_read"] = same_action_read / read
    return scores


def split(demonstrations: list[Demonstration], episodes: int, fraction: float) -> tuple[list, list]:
    """Held-out examples are whole episodes (the last ones), never steps of a training episode."""
    cut = episodes - round(episodes * fraction)
    return [d for d in demonstrations if d.episode < cut], [d for d in demonstrations if d.episode >= cut]


def lora_settings(config: SFTConfig) -> LoraSettings | None:
    return LoraSettings(config.lora_rank, config.lora_alpha, config.lora_dropout) if config.lora else None


def sft(config: SFTConfig, overwrite: bool = False) -> Path:
    """Fine-tune on demonstrations; returns the run directory (holding `model/`). The run folder
    must be empty (`overwrite`: an earlier run there is deleted first)."""
    run_dir, task = config.run_dir(), get_task(config.env)
    world = World.join(config.device)
    refusal = "replace it with --overwrite, or choose another out"
    with world.on_main(lambda: RunFolder(run_dir, overwrite=overwrite, refusal=refusal)):
        torch.manual_seed(config.seed)
        demonstrations = collect_demonstrations(
            task, config.behaviour, config.episodes, config.seed, config.epsilon, config.cot, config.env_kwargs
        )
        train_set, heldout = split(demonstrations, config.episodes, config.heldout_fraction)
        if not train_set:
            raise UsageError("no training demonstrations: raise episodes or lower heldout_fraction")
        policy = load_policy(
            model_or_demo(config.model),
            lora=lora_settings(config),
            trainable=config.trainable,
            device=world.device(config.device),
        )
        world.copy_from_main(p for p in policy.parameters() if p.requires_grad)
        sharding = lay_out(policy, world, config.sharding)
        world.from_main(
            lambda: check_free_space(
                run_dir, parameter_bytes(policy.model.parameters()), "the fine-tuned model/ folder"
            )
        )
        incomplete = "the SFT run is incomplete: free some space and run it again with --overwrite"
        with world.on_main(lambda: writing(run_dir, lambda: incomplete)):
            fine_tune(config, run_dir, task, policy, train_set, heldout, world, sharding)
    world.barrier()  # rank 0 has written model/: every rank may read it
    return run_dir


def fine_tune(
    config: SFTConfig,
    run_dir: Path,
    task: Task,
    policy: Policy,
    train_set: list,
    heldout: list,
    world: World = ALONE,
    sharding: Sharding = WHOLE,
) -> Path:
    """The supervised loop over `train_set`, held-out checks on `heldout`, then the merged model/ export
    (under a launcher every rank takes its part of each batch; rank 0 writes the run folder; the
    held-out checks, small, are made by every rank alike). `sharding`: the layout over the ranks
    (the policy already sharded when it is FSDP2's)."""
    parameters = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    steps = make_steps(policy, optimizer, world, sharding, config.max_grad_norm)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=total)
    order = torch.Generator().manual_seed(config.seed)  # the same batches on every rank
    checks = heldout[: config.eval_examples]
    title = f"{config.env}: SFT ({config.behaviour} demonstrations)"
    progress = ConsoleProgress(total, f"sft {config.env}", unit="steps")
    logger = None
    if world.is_main:
        save_config(config, run_dir / "config.yaml")
        logger = MetricsLogger(run_dir, title=title, tensorboard=config.tensorboard)
    step = 0
    with logger or contextlib.nullcontext(), progress if world.is_main else contextlib.nullcontext():
        for _ in range(config.epochs):
            permutation = torch.randperm(len(train_set), generator=order).tolist()
            for first in range(0, len(train_set), config.batch_size):
                batch = [train_set[i] for i in permutation[first : first + config.batch_size]]
                loss = sft_step(policy, batch, world, steps)
                scheduler.step()
                step += 1
                values: dict[str, float] = {"sft/loss": loss, "sft/lr": scheduler.get_last_lr()[0]}
                if checks and ((config.eval_every and step % config.eval_every == 0) or step == total):
                    policy.eval()
                    with torch.no_grad():
                        values["sft/heldout_loss"] = float(answer_loss(policy, checks))
                    values.update(check_answers(policy, task, checks, config.max_new_tokens))
                values["world_size"] = world.size
                if logger is not None:
                    logger.log(step, step * config.batch_size, values)
                    progress.update(step, values)
    whole = policy
    if policy.sharded:  # every rank gathers the trained weights; rank 0 puts them into a whole copy
        tensors = trainable_tensors(policy)
        if world.is_main:
            whole = load_policy(
                model_or_demo(config.model), lora=lora_settings(config), trainable=config.trainable, device="cpu"
            )
            load_trainable_tensors(whole, tensors, "the gathered weights")
    if not world.is_main:
        return run_dir
    with quiet_progress_bars():
        export_merged(whole, run_dir / "model")
    summary = {"examples": len(train_set), "heldout": len(heldout), "steps": step, **logger.records()[-1]}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return run_dir
