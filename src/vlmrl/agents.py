"""Agents that answer a game's prompt with text, as a model would.

An agent sees the wrapped environment (for the oracle's benefit), the observation image and
the prompt, and returns its answer text; the `TextActionWrapper` parses that text. The
trained VLM policy will be one more agent behind the same call.
"""

from __future__ import annotations

from typing import Protocol

import gymnasium as gym
import numpy as np

from vlmrl.errors import UsageError
from vlmrl.games import Task


class Agent(Protocol):
    name: str
    """How results name the agent (``expert``)."""
    task: Task
    """The game it plays."""

    def act(self, env: gym.Env, observation: np.ndarray, prompt: str) -> str: ...


class ExpertAgent:
    """The game's oracle: optimal actions, with the chain of thought that justifies them."""

    name = "expert"

    def __init__(self, task: Task, cot: bool = True) -> None:
        self.task, self.cot = task, cot

    def act(self, env: gym.Env, observation: np.ndarray, prompt: str) -> str:
        return self.task.expert(env, self.cot)[1]


class RandomAgent:
    """Uniformly random legal actions, written as well-formed answers (so none is invalid)."""

    name = "random"

    def __init__(self, task: Task, seed: int | None = None, cot: bool = True) -> None:
        self.task, self.cot = task, cot
        self.rng = np.random.default_rng(seed)

    def act(self, env: gym.Env, observation: np.ndarray, prompt: str) -> str:
        action = int(self.rng.integers(len(self.task.action_names)))
        return self.task.answer(env, action, self.cot)


AGENTS = ("expert", "random")


def make_agent(name: str, task: Task, seed: int | None = None) -> Agent:
    if name == "expert":
        return ExpertAgent(task)
    if name == "random":
        return RandomAgent(task, seed)
    raise UsageError(f"unknown agent {name!r}; known agents: {', '.join(AGENTS)}")
