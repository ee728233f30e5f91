"""Inputs the policy tests share: one observation and prompt of each game (the tiny models of every family
are built by `tiny_model_dir` in the top conftest)."""

from __future__ import annotations

import pytest

from vlmrl.games import get_task, make_env


@pytest.fixture(scope="session")
def game_inputs():
    """One observation image and CoT prompt from each game (varied lengths: a real batch)."""
    images, prompts = [], []
    for name in ("numberline", "ezpoints", "points24", "blackjack"):
        task, env = get_task(name), make_env(name)
        observation, info = env.reset(seed=1)
        images.append(observation)
        prompts.append(task.prompt(info))
    return images, prompts
