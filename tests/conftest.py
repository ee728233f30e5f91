"""Shared test helpers: environments put into a chosen state, so each rule is tested by name; one tiny model."""

from __future__ import annotations

import importlib.util
import os

import pytest

from vlmrl.games import make_env


def pytest_configure(config) -> None:
    """`make test` sets VLMRL_REQUIRE_ALFWORLD and VLMRL_REQUIRE_DEEPSPEED: there, the extras' tests must run, so
    a missing extra fails at once (elsewhere they are skipped without it)."""
    if os.environ.get("VLMRL_REQUIRE_ALFWORLD") == "1":
        try:
            import alfworld  # noqa: F401
            import textworld  # noqa: F401
        except ImportError as error:
            raise pytest.UsageError(f"the alfworld extra is required here but does not import: {error}") from None
    if os.environ.get("VLMRL_REQUIRE_DEEPSPEED") == "1" and importlib.util.find_spec("deepspeed") is None:
        raise pytest.UsageError("the deepspeed extra is required here but is not installed")


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
    from vlmrl.tiny import build_tiny_model

    return build_tiny_model("llava", "test", tmp_path_factory.mktemp("model") / "llava")


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
