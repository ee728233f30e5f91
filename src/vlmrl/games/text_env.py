"""Stepping a game with the model's raw answer text instead of an action id.

The wrapper parses each answer with the game's `Task`, given the info of the state the answer
replies to (games with dynamic actions, like ALFWorld, read their legal actions from it). An
answer that names no legal action becomes, by the `invalid_action` setting (by default the
task's `default_invalid_action`):
- ``"random"`` (the paper's rule for the card games): a uniformly random legal action of that
  state, drawn from the wrapper's own generator (seeded by `reset(seed=...)`, so runs reproduce
  and the game's deal stream is not disturbed);
- ``"penalty"`` (the paper's rule for ALFWorld): the game does not move and the step earns
  `invalid_penalty`; the episode is truncated once it has lasted the game's `max_steps` steps,
  invalid ones included.
Either way `info["invalid"]` says so for the step, `info["parse_reason"]` says why,
`info["action"]` is the action id taken (None when none was) and `info["action_name"]` its
name, and the wrapper counts invalid answers (`invalid_steps` / `steps`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from vlmrl.games.base import Task


@dataclass
class Episode:
    """How one episode of a text-stepped game went: what training, evaluation and the success window count."""

    success: bool
    ret: float
    length: int
    invalid: int
    frames: list[dict[str, Any]] | None = None
    """The steps as `vlmrl play` draws them (only when recorded)."""
    task_type: str | None = None
    """ALFWorld's task type (None for games without types)."""


InvalidAction = Literal["random", "penalty"]
INVALID_ACTIONS = ("random", "penalty")


class TextActionWrapper(gym.Wrapper):
    def __init__(
        self,
        env: gym.Env,
        task: Task,
        invalid_action: InvalidAction | None = None,
        invalid_penalty: float = -1.0,
    ) -> None:
        super().__init__(env)
        invalid_action = task.default_invalid_action if invalid_action is None else invalid_action
        if invalid_action not in INVALID_ACTIONS:
            raise ValueError(f"invalid_action must be one of {INVALID_ACTIONS}, not {invalid_action!r}")
        self.task = task
        self.invalid_action = invalid_action
        self.invalid_penalty = float(invalid_penalty)
        self.max_episode_steps = int(getattr(env.unwrapped, "max_steps", 50))
        self.fallback_rng = np.random.default_rng()
        """Draws the random legal action of an unparseable answer; part of a run's saved state."""
        self._last: tuple[np.ndarray, dict[str, Any]] | None = None
        self.episode_steps = 0
        self.steps = 0
        self.invalid_steps = 0

    @property
    def invalid_rate(self) -> float:
        return self.invalid_steps / self.steps if self.steps else 0.0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self.fallback_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E47]))
        self._last = (obs, info)
        self.episode_steps = 0
        return obs, info

    def step(self, text: str):
        if self._last is None:
            raise RuntimeError("call reset() before step()")
        last_info = self._last[1]
        legal = self.task.legal_actions(last_info)
        parsed = self.task.parse(text, last_info)
        self.steps += 1
        self.episode_steps += 1
        if parsed.valid:
            action = parsed.action
        else:
            self.invalid_steps += 1
            action = int(self.fallback_rng.integers(len(legal))) if self.invalid_action == "random" and legal else None
        if action is None:
            obs, _ = self._last
            info = dict(last_info)
            info.pop("success", None)
            reward, terminated, truncated = self.invalid_penalty, False, False
        else:
            obs, reward, terminated, truncated, info = self.env.step(action)
        if not (terminated or truncated) and self.episode_steps >= self.max_episode_steps:
            truncated = True
            info["success"] = False
        info.update(
            invalid=not parsed.valid,
            parse_reason=parsed.reason,
            action=action,
            action_name=None if action is None else legal[action],
        )
        self._last = (obs, info)
        return obs, reward, terminated, truncated, info
