"""Playing episodes on seeded deals and summarising them: success rate with its interval,
return, length, invalid answers, next to the game's exact ceiling."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vlmrl.agents import Agent
from vlmrl.games import TextActionWrapper, make_env


@dataclass
class Episode:
    success: bool
    ret: float
    length: int
    invalid: int
    frames: list[dict[str, Any]] | None = None


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

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["success_ci95"] = list(self.success_ci95)
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
    task = env.task
    observation, info = env.reset(seed=seed)
    frames: list[dict[str, Any]] | None = [] if record else None
    ret, length, invalid = 0.0, 0, 0
    while True:
        prompt = task.prompt(info)
        text = agent.act(env, observation, prompt)
        next_observation, reward, terminated, truncated, info = env.step(text)
        if frames is not None:
            frames.append({"image": observation, "answer": text, "reward": reward, "invalid": info["invalid"]})
        ret += float(reward)
        length += 1
        invalid += int(info["invalid"])
        observation = next_observation
        if terminated or truncated:
            if frames is not None:
                frames.append({"image": observation, "answer": None, "reward": None, "success": info["success"]})
            return Episode(bool(info["success"]), ret, length, invalid, frames)


def evaluate(
    agent: Agent,
    episodes: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    invalid_action: str = "random",
) -> EvalResult:
    """Play `episodes` episodes of the agent's game with seeds seed, seed+1, ... and summarise them."""
    task = agent.task
    env = TextActionWrapper(make_env(task.name), task, invalid_action=invalid_action)
    results = []
    for i in range(episodes):
        results.append(play_episode(env, agent, seed + i))
        if progress is not None:
            progress(i + 1)
    env.close()
    successes = sum(r.success for r in results)
    steps = sum(r.length for r in results)
    return EvalResult(
        env=task.name,
        agent=agent.name,
        episodes=episodes,
        success_rate=successes / episodes if episodes else 0.0,
        success_ci95=wilson_interval(successes, episodes),
        mean_return=float(np.mean([r.ret for r in results])) if results else 0.0,
        mean_length=float(np.mean([r.length for r in results])) if results else 0.0,
        invalid_rate=sum(r.invalid for r in results) / steps if steps else 0.0,
        ceiling=float(task.ceiling()),
    )
