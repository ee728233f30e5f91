"""Speed of the games alone: environment steps per second (reset, step and the image) per game."""

from __future__ import annotations

import time

import numpy as np

from vlmrl.games import get_task, make_env


def env_steps_per_second(name: str, steps: int = 2000, seed: int = 0) -> dict[str, float]:
    """Random actions for `steps` steps, resetting whenever an episode ends; every step draws its image."""
    env = make_env(name)
    rng = np.random.default_rng(seed)
    n_actions = len(get_task(name).action_names)
    start = time.perf_counter()
    env.reset(seed=seed)
    episodes = 1
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(n_actions)))
        if terminated or truncated:
            env.reset()
            episodes += 1
    elapsed = time.perf_counter() - start
    env.close()
    return {"env": name, "steps": steps, "episodes": episodes, "seconds": elapsed, "steps_per_second": steps / elapsed}
