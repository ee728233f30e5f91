"""Speed of the games alone: environment steps per second (reset, step and the image) per game."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from vlmrl.games import get_task, make_env


def env_steps_per_second(
    name: str, steps: int = 2000, seed: int = 0, env_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Random legal actions for `steps` steps, resetting whenever an episode ends; every step draws its image."""
    env = make_env(name, **(env_kwargs or {}))
    task = get_task(name)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    _, info = env.reset(seed=seed)
    episodes = 1
    for _ in range(steps):
        _, _, terminated, truncated, info = env.step(int(rng.integers(len(task.legal_actions(info)))))
        if terminated or truncated:
            _, info = env.reset()
            episodes += 1
    elapsed = time.perf_counter() - start
    env.close()
    return {"env": name, "steps": steps, "episodes": episodes, "seconds": elapsed, "steps_per_second": steps / elapsed}
