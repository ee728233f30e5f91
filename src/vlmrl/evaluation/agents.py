"""Agents that answer a game's prompt with text, as a model would.

An agent sees the wrapped environment (for the oracle's benefit), the observation image and
the prompt, and returns its answer text; the `TextActionWrapper` parses that text. A VLM
policy is one more agent behind the same call (`PolicyAgent`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import gymnasium as gym
import numpy as np

from vlmrl.games import Task
from vlmrl.infra.errors import UsageError

if TYPE_CHECKING:  # the games-only agents must not pull in torch
    from vlmrl.policy import Policy


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
        action = int(self.rng.integers(len(self.task.legal_actions_in(env))))
        return self.task.answer(env, action, self.cot)


class PolicyAgent:
    """A VLM policy answering one prompt at a time (batched evaluation uses `evaluate.play_policy`)."""

    name = "policy"

    def __init__(
        self, policy: Policy, task: Task, temperature: float = 0.2, top_p: float = 1.0, max_new_tokens: int = 256
    ) -> None:
        self.policy, self.task = policy, task
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens

    def act(self, env: gym.Env, observation: np.ndarray, prompt: str) -> str:
        sample = self.policy.generate(
            [observation], [prompt], temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens
        )[0]
        return sample.text


class ConstantAgent:
    """One action every step (`always:stand`): the baseline a learned policy must beat where a single
    action is already a strong strategy (always standing wins about 40% of Blackjack hands)."""

    def __init__(self, task: Task, action: str, cot: bool = True) -> None:
        if action not in task.action_names:
            raise UsageError(
                f"agent always:{action}: {task.name} has no action {action!r}; "
                f"its actions: {', '.join(task.action_names) or 'none fixed (they change every step)'}"
            )
        self.task, self.cot, self.action = task, cot, action
        self.name = f"always:{action}"

    def act(self, env: gym.Env, observation: np.ndarray, prompt: str) -> str:
        legal = list(self.task.legal_actions_in(env))
        if self.action not in legal:  # a game whose actions change by state; the card games' never do
            raise UsageError(f"agent {self.name}: {self.action!r} is not legal here; legal: {', '.join(legal)}")
        return self.task.answer(env, legal.index(self.action), self.cot)


AGENTS = ("expert", "random", "always:ACTION")


def is_agent_name(name: str) -> bool:
    """Whether `name` names a games-only agent (`expert`, `random`, `always:<action>`)."""
    return name in ("expert", "random") or (name.startswith("always:") and len(name) > len("always:"))


def make_agent(name: str, task: Task, seed: int | None = None) -> Agent:
    if name == "expert":
        return ExpertAgent(task)
    if name == "random":
        return RandomAgent(task, seed)
    if is_agent_name(name) and name.startswith("always:"):
        return ConstantAgent(task, name.removeprefix("always:"))
    raise UsageError(f"unknown agent {name!r}; known agents: {', '.join(AGENTS)}")
