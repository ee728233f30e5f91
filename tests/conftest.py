"""Shared test helpers: environments put into a chosen state, so each rule is tested by name; one tiny model."""

from __future__ import annotations

import pytest

from vlmrl.games import make_env


@pytest.fixture
def make_game():
    """A reset game (unwrapped), ready for its state to be set by the test."""
    envs = []

    def factory(name: str, seed: int = 0):
        env = make_env(name).unwrapped
        env.reset(seed=seed)
        envs.append(env)
        return env

    yield factory
    for env in envs:
        env.close()


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory):
    """A `test`-size tiny LLaVA folder, built once per test session."""
    from vlmrl.policy import build_tiny_model

    return build_tiny_model("llava", "test", tmp_path_factory.mktemp("model") / "llava")
