"""What every game shares: the image-observation environment and the text-interface contract.

A game is two objects. The `GameEnv` is a plain gymnasium environment over discrete action
ids whose observations are 300x300 RGB images. The `Task` is everything that turns the game
into a language problem: the prompt, the parser of the model's answer, the expert's answer,
and the exact ceiling of the success rate. Layers above (rollouts, training) only ever see
these two contracts.

Most games have one fixed list of actions (`Task.action_names`). A game whose legal actions
change every step (ALFWorld's admissible commands) sets `dynamic_actions` and overrides
`legal_actions(info)`: an action id is then an index into *that step's* list, which the step's
`info` carries. Code that must work for both asks `legal_actions(info)` (or
`legal_actions_in(env)`) instead of reading `action_names`, and passes the step's `info` to
`parse`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from PIL import Image

from vlmrl.games.parsing import Parsed, format_answer, parse_action

IMAGE_SIZE = 300
RULE_SETS = ("vlmrl", "rl4vlm")
"""The rule sets every card game plays: vlmrl's own (the default) and the original release's."""
DEFAULT_RULES = "vlmrl"


def check_rules(rules: object) -> str:
    """`rules` if it names a rule set; otherwise a ValueError naming the choices."""
    if rules not in RULE_SETS:
        raise ValueError(f"rules must be {' or '.join(map(repr, RULE_SETS))}, not {rules!r}")
    return str(rules)


class GameEnv(gym.Env):
    """A game whose observation is the image `draw()` paints of the current state.

    All randomness goes through `self.np_random`, which only `reset(seed=...)` seeds: the
    same seed deals the same episode. `max_steps` bounds every episode (truncation). `rules`
    is the rule set the game plays (see the module docstring).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 2}
    max_steps: int

    def __init__(self, render_mode: str | None = None, rules: str = DEFAULT_RULES) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', not {render_mode!r}")
        self.render_mode = render_mode
        self.rules = check_rules(rules)
        self.observation_space = spaces.Box(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)

    @abstractmethod
    def draw(self) -> Image.Image:
        """The current state as a 300x300 RGB picture."""

    @abstractmethod
    def state_info(self) -> dict[str, Any]:
        """What a prompt (and a supervisor writing correct answers) needs to know of the state."""

    def observation(self) -> np.ndarray:
        return np.asarray(self.draw(), dtype=np.uint8)

    def render(self) -> np.ndarray | None:
        return self.observation() if self.render_mode == "rgb_array" else None

    def _finish(self, info: dict[str, Any], terminated: bool, truncated: bool, success: bool) -> dict[str, Any]:
        """`info` of a step, with `success` added once the episode has ended."""
        if terminated or truncated:
            info["success"] = bool(success)
        return info


class Task(ABC):
    """A game's text interface: prompt, parser, expert, ceiling."""

    name: str
    """Short name used on the command line (``numberline``)."""
    env_id: str
    """The gymnasium id (``vlmrl/NumberLine-v0``)."""
    action_names: tuple[str, ...]
    """Legal actions; the index of a name is its action id in the environment (empty when dynamic)."""
    dynamic_actions: ClassVar[bool] = False
    """True when the legal actions change from step to step (see `legal_actions`)."""
    default_invalid_action: ClassVar[str] = "random"
    """What `TextActionWrapper` makes of an answer naming no legal action unless told otherwise."""

    @abstractmethod
    def prompt(self, info: dict[str, Any], cot: bool = True) -> str:
        """The instruction shown with the image; `cot=False` asks for the action alone."""

    @abstractmethod
    def describe(self, env: gym.Env) -> dict[str, Any]:
        """The answer's perception fields, true to the image (e.g. the numbers shown)."""

    @abstractmethod
    def reasoning(self, env: gym.Env, action: int, argued: bool | None = None) -> str:
        """The "thoughts" of an answer that takes `action` in the current state.

        For the expert's action this is the argument that makes it right; for any other
        action, or with `argued=False` (an action a random behaviour policy happened to pick:
        it had no reason), it reads the state correctly and states the choice without a reason.
        """

    def argues(self, env: gym.Env, action: int, argued: bool | None) -> bool:
        """Whether the thoughts for `action` give the expert's argument (see `reasoning`)."""
        return argued is not False and action == self.expert_action(env)

    @abstractmethod
    def expert_action(self, env: gym.Env) -> int:
        """The action an optimal agent takes in the current state."""

    @abstractmethod
    def ceiling(self) -> Fraction:
        """The best success rate any agent can reach under the deal distribution, exactly."""

    def legal_actions(self, info: dict[str, Any] | None = None) -> Sequence[str]:
        """The legal actions in the state a step's `info` describes; action ids index this list.

        Fixed-action games ignore `info`; dynamic ones read it (and know none without it).
        """
        return self.action_names

    def legal_actions_in(self, env: gym.Env) -> Sequence[str]:
        """The legal actions in the environment's current state."""
        return self.action_names

    def parse(self, text: str, info: dict[str, Any] | None = None) -> Parsed:
        """The action an answer names, given the step's `info`; never raises (see `vlmrl.games.parsing`)."""
        return parse_action(text, self.legal_actions(info))

    def answer(self, env: gym.Env, action: int, cot: bool = True, argued: bool | None = None) -> str:
        """The JSON answer that takes `action`, its perception fields true to the image; `argued`
        as in `reasoning`."""
        fields: dict[str, Any] = {}
        if cot:
            fields.update(self.describe(env))
            fields["thoughts"] = self.reasoning(env, action, argued)
        fields["action"] = self.legal_actions_in(env)[action]
        return format_answer(fields)

    def expert(self, env: gym.Env, cot: bool = True) -> tuple[int, str]:
        """The expert's action and the full answer it writes, chain of thought included."""
        action = self.expert_action(env)
        return action, self.answer(env, action, cot)

    def action_list(self) -> str:
        """The legal actions as they are quoted in prompts: "a", "b" or "c"."""
        quoted = [f'"{name}"' for name in self.action_names]
        if len(quoted) <= 3:
            return ", ".join(quoted[:-1]) + " or " + quoted[-1]
        return "<one of " + ", ".join(quoted) + ">"


def json_template(fields: dict[str, str]) -> str:
    """A prompt's answer template: field names with a description of what goes there."""
    body = ", ".join(f'"{key}": {value}' for key, value in fields.items())
    return "{" + body + "}"


ANSWER_FORMAT_LINE = "Reply with one valid JSON object and nothing else, in exactly this format:"
