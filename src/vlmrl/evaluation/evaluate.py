"""Playing episodes on seeded deals and summarising them: success rate with its interval,
return, length, invalid answers, next to the game's exact ceiling; for a game whose episodes
have a task type (ALFWorld's six, from `info["task_type"]`), success per type as the paper
reports it.

Held-out evaluation of a game whose seeds only pick among a fixed set of games (ALFWorld)
needs held-out games, not just held-out seeds: pass the environment's held-out split in
`env_kwargs` (``{"split": "valid_unseen"}``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vlmrl.evaluation.agents import Agent
from vlmrl.evaluation.episodes import Lockstep
from vlmrl.games import Episode, Task, TextActionWrapper, make_text_env
from vlmrl.games.pool import make_pool
from vlmrl.infra.distributed import ALONE, World

if TYPE_CHECKING:
    from vlmrl.policy import Policy


@dataclass
class EvalResult:
    env: str
    agent: str
    episodes: int
    success_rate: float
    success_ci95: tuple[float, float]
    mean_return: float
    mean_length: float
    invalid_rate: float
    ceiling: float
    per_type: dict[str, dict[str, float]] | None = None
    """Task type -> episodes, successes, success_rate (None for games without task types)."""

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["success_ci95"] = list(self.success_ci95)
        if self.per_type is None:
            del result["per_type"]
        return result


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval: honest at rates near 0 or 1, where the normal one is not."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def play_episode(env: TextActionWrapper, agent: Agent, seed: int, record: bool = False) -> Episode:
    """One episode on the deal of `seed`; with `record`, every step's image, answer and reward."""
    games = Lockstep([env], [[seed]])
    frames: list[dict[str, Any]] = []
    while games.active:
        [(observation, info)] = games.states()
        [step] = games.step([agent.act(env, observation, env.task.prompt(info))])
        frames.append({"image": observation, "answer": step.answer, "reward": step.reward, "invalid": step.invalid})
    episode = step.episode
    if record:
        frames.append({"image": step.next_observation, "answer": None, "reward": None, "success": episode.success})
        episode.frames = frames
    return episode


def success_per_type(results: list[Episode]) -> dict[str, dict[str, float]] | None:
    """Episodes, successes and success rate of each task type, by name."""
    if not any(r.task_type for r in results):
        return None
    per_type: dict[str, dict[str, float]] = {}
    for r in sorted(results, key=lambda r: r.task_type or ""):
        row = per_type.setdefault(r.task_type or "unknown", {"episodes": 0, "successes": 0})
        row["episodes"] += 1
        row["successes"] += int(r.success)
    for row in per_type.values():
        row["success_rate"] = row["successes"] / row["episodes"]
    return per_type


def summarize(task: Task, agent_name: str, results: list[Episode]) -> EvalResult:
    """Success rate with its interval, mean return and length, invalid answers per step, and
    success per task type where episodes have one."""
    episodes = len(results)
    successes = sum(r.success for r in results)
    steps = sum(r.length for r in results)
    return EvalResult(
        env=task.name,
        agent=agent_name,
        episodes=episodes,
        success_rate=successes / episodes if episodes else 0.0,
        success_ci95=wilson_interval(successes, episodes),
        mean_return=float(np.mean([r.ret for r in results])) if results else 0.0,
        mean_length=float(np.mean([r.length for r in results])) if results else 0.0,
        invalid_rate=sum(r.invalid for r in results) / steps if steps else 0.0,
        ceiling=float(task.ceiling()),
        per_type=success_per_type(results),
    )


def evaluate(
    agent: Agent,
    episodes: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    invalid_action: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> EvalResult:
    """Play `episodes` episodes of the agent's game with seeds seed, seed+1, ... and summarise them
    (`invalid_action` None: the game's own rule; `env_kwargs`: the environment's, e.g. its split)."""
    env = make_text_env(agent.task, env_kwargs, invalid_action)
    results = []
    for i in range(episodes):
        results.append(play_episode(env, agent, seed + i))
        if progress is not None:
            progress(i + 1)
    env.close()
    return summarize(agent.task, agent.name, results)


def play_policy(
    policy: Policy,
    task: Task,
    seeds: Sequence[int],
    *,
    cot: bool = True,
    temperature: float = 0.2,
    top_p: float = 1.0,
    max_new_tokens: int = 256,
    invalid_action: str | None = None,
    batch_size: int = 64,
    env_kwargs: dict[str, Any] | None = None,
    world: World = ALONE,
    env_workers: int = 0,
) -> list[Episode]:
    """A VLM policy on the deals of `seeds`, in their order: up to `batch_size` episodes run in
    lockstep, one batched `generate` per step, each episode stepped until it ends (the games over
    `env_workers` processes, 0: here). A sharded policy's ranks (`world`, each with its own seeds)
    generate together until all are done."""
    results: list[Episode] = []
    together = policy.sharded and world.distributed
    longest = max(world.gather(len(seeds))) if together else len(seeds)
    for first in range(0, longest, batch_size):
        batch = seeds[first : first + batch_size]
        envs = make_pool(functools.partial(make_text_env, task, env_kwargs, invalid_action), len(batch), env_workers)
        try:
            games = Lockstep(envs, [[s] for s in batch])
            ended: dict[int, Episode] = {}
            while world.any(bool(games.active)) if together else games.active:
                states = games.states()
                samples = policy.generate(
                    [observation for observation, _ in states],
                    [task.prompt(info, cot=cot) for _, info in states],
                    temperature=temperature,
                    top_p=top_p,
                    max_new_tokens=max_new_tokens,
                )
                for step in games.step([sample.text for sample in samples]):
                    if step.episode is not None:
                        ended[step.index] = step.episode
        finally:
            envs.close()
        results.extend(ended[index] for index in range(len(batch)))
    return results
