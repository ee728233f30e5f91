"""The whole recipe on one game: supervised warm-up, then PPO, each stage judged on held-out deals.

This is what `make demo` and `vlmrl bench learn --env NAME` run, with the game's presets
(the shipped presets `sft/<game>`, then `<game>` started from the SFT model). Three
policies are evaluated on the same held-out seeds (from `EVAL_SEED_BASE` up, which training
never deals) with the same sampling settings (the PPO preset's evaluation temperature):
the model before any training, after SFT, and after RL. The run folder holds both stages'
runs (`sft/`, `rl/` with its `curve.png`), an episode GIF of the trained agent, and
`summary.json` with every figure the table shows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmrl.evaluation.agents import PolicyAgent
from vlmrl.evaluation.evaluate import EvalResult, play_episode
from vlmrl.evaluation.play import write_gif
from vlmrl.games import EVAL_SEED_BASE, get_task, make_text_env
from vlmrl.infra.distributed import ALONE, World
from vlmrl.infra.files import atomic_write_text
from vlmrl.infra.metrics import read_metrics
from vlmrl.infra.runs import RunFolder
from vlmrl.infra.seeds import HELDOUT_SEEDS
from vlmrl.policy import Policy, load_policy
from vlmrl.recipes.config import SFTConfig, TrainConfig, load_config, load_sft_config
from vlmrl.recipes.ppo import PAPER_RESULTS, evaluate_heldout, train, trained_policy
from vlmrl.recipes.sft import sft
from vlmrl.tiny import demo_model, model_or_demo


@dataclass
class Stage:
    """One row of the table: a policy's held-out result and the time its training took."""

    name: str
    result: EvalResult
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.name, "seconds": round(self.seconds, 1), **self.result.as_dict()}


def evaluate_stage(
    name: str, policy: Policy, config: TrainConfig, episodes: int, seconds: float, world: World = ALONE
) -> Stage:
    """`policy` on the held-out deals, sampled as the PPO preset evaluates (split over the ranks)."""
    result = evaluate_heldout(policy, config, episodes, world)
    result.agent = name
    return Stage(name, result, seconds)


def record_gif(policy: Policy, config: TrainConfig, path: Path, seed: int = EVAL_SEED_BASE) -> Path:
    """One held-out episode of the trained agent, as an animated GIF."""
    task = get_task(config.env)
    agent = PolicyAgent(
        policy, task, temperature=config.heldout_temperature, top_p=config.top_p, max_new_tokens=config.max_new_tokens
    )
    env = make_text_env(task, config.heldout_env_kwargs, config.invalid_action)
    episode = play_episode(env, agent, seed, record=True)
    env.close()
    return write_gif(episode.frames or [], path)


def learn(
    env: str,
    out: str | Path,
    episodes: int = 200,
    sft_overrides: Sequence[str] = (),
    train_overrides: Sequence[str] = (),
    untrained: bool = True,
    log=print,
    overwrite: bool = False,
) -> dict[str, Any]:
    """SFT then PPO on `env` with its presets (plus `key=value` overrides), every stage evaluated on
    `episodes` held-out deals; writes the run folder `out` and returns its summary. `out` must be
    empty (`overwrite`: an earlier pipeline's folder is deleted first)."""
    out = Path(out)
    sft_config = load_sft_config(env=env, overrides=[f"out={out / 'sft'}", *sft_overrides])
    train_config = load_config(env=env, overrides=[f"init={out / 'sft'}", f"out={out / 'rl'}", *train_overrides])
    refusal = "replace it with --overwrite, or choose another --out"
    world = World.join(train_config.device)
    with world.on_main(lambda: RunFolder(out, overwrite=overwrite, refusal=refusal)):
        return pipeline(env, out, episodes, sft_config, train_config, untrained, log if world.is_main else quiet, world)


def quiet(line: str) -> None:
    """The log of ranks other than 0: rank 0 tells the stages for every rank."""


def build_demo_model(world: World = ALONE) -> None:
    """The embedded demo model, built once per machine before the clock of any stage starts: rank 0
    first, then the other ranks find it in the cache."""
    world.from_main(lambda: demo_model() and None)
    if not world.is_main:
        demo_model()


def pipeline(
    env: str,
    out: Path,
    episodes: int,
    sft_config: SFTConfig,
    train_config: TrainConfig,
    untrained: bool,
    log,
    world: World = ALONE,
) -> dict[str, Any]:
    """The five steps of `learn`, in a folder it has claimed (under a launcher: every rank trains
    and evaluates its share; rank 0 writes the GIF and the summary)."""
    started = time.perf_counter()
    if sft_config.model is None:
        build_demo_model(world)
    stages: list[Stage] = []
    if untrained:
        log(f"[1/5] evaluating the untrained model on {episodes} held-out episodes")
        stages.append(
            evaluate_stage(
                "untrained", load_policy(model_or_demo(sft_config.model)), train_config, episodes, 0.0, world
            )
        )
    log(f"[2/5] supervised warm-up: {sft_config.episodes} episodes of {sft_config.behaviour} demonstrations")
    clock = time.perf_counter()
    sft_dir = sft(sft_config)
    sft_seconds = time.perf_counter() - clock
    log(f"[3/5] evaluating the SFT model on {episodes} held-out episodes")
    stages.append(evaluate_stage("sft", load_policy(sft_dir / "model"), train_config, episodes, sft_seconds, world))
    log(f"[4/5] PPO: {train_config.total_steps} env steps")
    clock = time.perf_counter()
    rl_dir = train(train_config)
    rl_seconds = time.perf_counter() - clock
    log(f"[5/5] evaluating the trained model on {episodes} held-out episodes")
    policy, _ = trained_policy(rl_dir)
    stages.append(evaluate_stage("rl", policy, train_config, episodes, rl_seconds, world))
    gif = out / "episode.gif"
    if world.is_main:
        record_gif(policy, train_config, gif)
    task = get_task(env)
    first_seed = HELDOUT_SEEDS[train_config.eval_seeds]
    summary = {
        "env": task.name,
        "episodes": episodes,
        "eval_seeds": [first_seed, first_seed + episodes - 1],
        "eval_env_kwargs": train_config.heldout_env_kwargs,
        "ceiling": float(task.ceiling()),
        "paper_rl4vlm": PAPER_RESULTS.get(task.name),
        "sft_examples": json.loads((sft_dir / "summary.json").read_text()).get("examples"),
        "env_steps": read_metrics(rl_dir)[-1]["env_steps"],  # rounds of whole episodes may take more
        "stages": [stage.as_dict() for stage in stages],
        "seconds": round(time.perf_counter() - started, 1),
        "run": {"sft": str(sft_dir), "rl": str(rl_dir), "curve": str(rl_dir / "curve.png"), "gif": str(gif)},
    }
    if world.is_main:
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
