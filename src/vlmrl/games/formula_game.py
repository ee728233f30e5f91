"""The shared mechanics of EZPoints and Points24: build a formula from the cards, one element a step.

Actions are the numbers "1".."10", the game's operators (and parentheses), and "=".
Under vlmrl's rules (the default):
- A number that is not among the cards not yet used: reward -1, the formula is unchanged and
  the episode goes on.
- Any other number or operator is appended to the formula; the element that makes the formula
  longer than the game's bound ends the episode (truncated) with reward -1.
- `max_steps` bounds the episode length (truncated, reward unchanged), so that an agent that
  keeps naming absent numbers cannot loop forever.
Under ``rules="rl4vlm"`` (the original release's):
- A number that is absent or used up costs -1 and appends a blank element, which counts
  toward the bound (and is ignored by the evaluation, as the original's `eval` ignored spaces).
- The element that makes the formula longer than the bound is accepted (reward 0, or -1 for a
  blank); the next action, whatever it is, truncates the episode with -1. Every action thus
  lengthens the formula or ends the episode: no episode lasts more than bound + 2 steps.
- The image shows the current formula below the cards, as the original's did.
In both, "=" ends the episode (terminated): +10 when the formula is valid, equals the target and
uses every card exactly once; -1 otherwise. Formulas are evaluated by
`vlmrl.games.formula.evaluate` over exact rationals (adjacent numbers are invalid, no unary
signs, no ``**`` or ``//``), where the original called Python's `eval` (see the README's table).
Success: "=" on a correct formula.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import Any

import gymnasium as gym
from gymnasium import spaces
from PIL import Image, ImageDraw

from vlmrl.games.base import ANSWER_FORMAT_LINE, DEFAULT_RULES, GameEnv, Task, json_template
from vlmrl.games.cards import Card, font
from vlmrl.games.formula import evaluate, solutions

NUMBER_NAMES = tuple(str(n) for n in range(1, 11))
WIN_REWARD = 10.0
PENALTY = -1.0
BLANK = " "
"""The element the original appends for a number that is not available (rules="rl4vlm")."""


class FormulaGameEnv(GameEnv):
    """A deal of cards and a formula under construction; subclasses fix the numbers below."""

    n_cards: int
    target: int
    operators: str
    """Binary operators allowed in the formula (parentheses come with "(" and ")" actions)."""
    extra_symbols: tuple[str, ...] = ()
    max_formula_length: int
    """The most elements a formula that "=" evaluates may have."""
    action_names: tuple[str, ...]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.action_names = NUMBER_NAMES + tuple(cls.operators) + cls.extra_symbols + ("=",)

    def __init__(self, render_mode: str | None = None, rules: str = DEFAULT_RULES) -> None:
        super().__init__(render_mode, rules)
        if self.rules == "rl4vlm":
            self.max_steps = self.max_formula_length + 2  # the bound the original's length rule implies
        self.action_space = spaces.Discrete(len(self.action_names))
        self.cards: list[Card] = []
        self.formula: list[str] = []
        self.remaining: list[int] = []
        self.steps = 0

    def deal(self) -> list[Card]:
        """The cards of a new episode, drawn with `self.np_random`."""
        raise NotImplementedError

    @property
    def values(self) -> list[int]:
        return [card.value for card in self.cards]

    @property
    def expression(self) -> list[str]:
        """The formula without its blank elements: what "=" evaluates."""
        return [element for element in self.formula if element != BLANK]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.cards = self.deal()
        self.formula = []
        self.remaining = self.values
        self.steps = 0
        return self.observation(), self.state_info()

    def step(self, action):
        name = self.action_names[int(action)]
        original = self.rules == "rl4vlm"
        self.steps += 1
        reward, terminated, truncated, success = 0.0, False, False, False
        if original and len(self.formula) > self.max_formula_length:
            reward, truncated = PENALTY, True  # the original truncates on the action after the overlong element
        elif name == "=":
            success = self.is_correct(self.expression)
            reward = WIN_REWARD if success else PENALTY
            terminated = True
        elif name in NUMBER_NAMES and int(name) not in self.remaining:
            reward = PENALTY
            if original:
                self.formula.append(BLANK)
        else:
            if name in NUMBER_NAMES:
                self.remaining.remove(int(name))
            self.formula.append(name)
            if not original and len(self.formula) > self.max_formula_length:
                reward, truncated = PENALTY, True
        if not (terminated or truncated) and self.steps >= self.max_steps:
            truncated = True
        info = self._finish(self.state_info(), terminated, truncated, success)
        return self.observation(), reward, terminated, truncated, info

    def is_correct(self, formula: list[str]) -> bool:
        """The formula is valid, equals the target, and uses every card exactly once."""
        result = evaluate(formula, cards=self.values, operators=self.operators)
        return result.valid and result.value == self.target and sorted(result.numbers) == sorted(self.values)

    def state_info(self) -> dict[str, Any]:
        return {
            "cards": [card.rank for card in self.cards],
            "values": self.values,
            "formula": "".join(self.formula),
            "remaining": list(self.remaining),
        }

    def draw_formula(self, image: Image.Image, top: int, size: int) -> None:
        """The formula as the original showed it, "Formula:" and its elements apart, wrapped to the width."""
        draw = ImageDraw.Draw(image)
        lines, line = [], "Formula:"
        for element in self.formula:
            candidate = f"{line} {element}"
            if draw.textlength(candidate, font=font(size)) > image.width - 20:
                lines.append(line)
                candidate = element
            line = candidate
        lines.append(line)
        for row, text in enumerate(lines):
            draw.text((10, top + row * (size + 4)), text, font=font(size), fill=(255, 255, 255))


@lru_cache(maxsize=4096)
def _solutions(values: tuple[int, ...], target: int, operators: str) -> tuple[tuple[str, ...], ...]:
    return solutions(sorted(values), target, operators)


def _and(items) -> str:
    items = list(items)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


class FormulaTask(Task):
    """Prompt, expert and answers shared by the formula games."""

    env_class: type[FormulaGameEnv]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.action_names = cls.env_class.action_names

    title: str
    card_rules: str
    """How the cards show and count, in the words of the prompt."""
    elements: str
    """The formula elements a step may add, quoted as in the prompt."""

    def prompt(self, info: dict[str, Any], cot: bool = True) -> str:
        target = self.env_class.target
        rules = (
            f"You are playing {self.title}. {self.card_rules} Build a formula that uses the number of "
            f"each card exactly once and equals {target}, one element per step: {self.elements}. "
            'Choose "=" when the formula is complete. '
            f"The current formula is: {info['formula'] or '(empty)'}"
        )
        if cot:
            template = json_template(
                {
                    "cards": f"[<the {self.env_class.n_cards} card numbers>]",
                    "current formula": '"<the formula built so far>"',
                    "thoughts": f'"<read the cards, find a formula equal to {target}, then choose the next element>"',
                    "action": self.action_list(),
                }
            )
        else:
            template = json_template({"action": self.action_list()})
        return f"{rules}\n{ANSWER_FORMAT_LINE}\n{template}"

    def describe(self, env: gym.Env) -> dict[str, Any]:
        game = env.unwrapped
        return {"cards": game.values, "current formula": "".join(game.formula)}

    def plan(self, env: gym.Env) -> tuple[str, ...] | None:
        """A correct formula that extends the current one, or None when there is none we know.

        The expert writes the shortest solution (fewest parentheses) the exhaustive solver
        finds; from a formula someone else started it continues any solution that the
        formula is a prefix of and that still fits the length bound (blank elements count
        toward it under rules="rl4vlm"), and knows none when there is no such solution.
        """
        game = env.unwrapped
        done = tuple(game.expression)
        room = game.max_formula_length - len(game.formula)
        for candidate in _solutions(tuple(game.values), game.target, game.operators):
            if candidate[: len(done)] == done and len(candidate) - len(done) <= room:
                return candidate
        return None

    def expert_action(self, env: gym.Env) -> int:
        game = env.unwrapped
        plan = self.plan(env)
        done = len(game.expression)
        if plan is None or len(plan) == done:
            return self.action_names.index("=")
        return self.action_names.index(plan[done])

    def reasoning(self, env: gym.Env, action: int, argued: bool | None = None) -> str:
        game = env.unwrapped
        current = "".join(game.formula) or "empty"
        opening = f"The cards are {_and(card.rank for card in game.cards)}"
        if any(card.rank in ("A", "J", "Q", "K") for card in game.cards):
            opening += f", worth {_and(str(v) for v in game.values)}"
        opening += f". The current formula is {current}."
        name = self.action_names[action]
        if not self.argues(env, action, argued):
            return f'{opening} I choose "{name}".'
        plan = self.plan(env)
        if plan is None:
            if not game.formula:
                return (
                    f"{opening} No formula that uses each number once reaches {game.target}, "
                    'so I end the episode with "=".'
                )
            return (
                f"{opening} The current formula cannot be completed to reach {game.target}, "
                'so I end the episode with "=".'
            )
        solution = "".join(plan)
        if name == "=":
            return f"{opening} The formula {solution} equals {game.target} and uses every card, so I submit it."
        return f'{opening} {solution} = {game.target} uses every number once, so the next element is "{name}".'

    def ceiling(self) -> Fraction:
        raise NotImplementedError
