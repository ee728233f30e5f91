"""Tiny models of every family, built once per test session (offline, random weights)."""

from __future__ import annotations

import pytest

from vlmrl.games import get_task, make_env

FAMILIES = ("llava", "llava-next", "qwen2-vl", "qwen2.5-vl")  # every supported family


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """family -> folder of a `test`-size tiny model of that family (built on first use)."""
    from vlmrl.tiny.build import build_tiny_model

    built: dict[str, object] = {}

    def get(family: str):
        if family not in built:
            built[family] = build_tiny_model(family, "test", tmp_path_factory.mktemp(family.replace(".", "")) / "model")
        return built[family]

    return get


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
