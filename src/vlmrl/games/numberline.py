"""NumberLine: move the current number to the target one step at a time.

Observation: a 300x300 image that reads "Target: g" above "Current: c", both in 0..5.
Actions: 0 = "-" (subtract one), 1 = "+" (add one); the current number stays in 0..5.
Deal: target and current uniform on 0..5, redrawn until they differ: each of the 30 pairs
has probability 1/30. Under ``rules="rl4vlm"`` the original's deal: current and target
uniform on 0..5, and when they are equal the target becomes (target + 1) % 5 (sic, modulo 5),
so the six pairs (0,1), (1,2), (2,3), (3,4), (4,0), (5,1) have probability 2/36, the other 24
1/36 (`deal_probabilities`). Nothing else differs between the rule sets.
Reward: +1 and the episode terminates when the current number reaches the target; -1 when
a step did not bring it closer; 0 otherwise. Truncated after 10 steps.
Success: the target is reached. Ceiling: 1 under both rule sets (at most 5 steps are ever needed).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import gymnasium as gym
from gymnasium import spaces
from PIL import Image, ImageDraw

from vlmrl.games.base import ANSWER_FORMAT_LINE, DEFAULT_RULES, GameEnv, Task, check_rules, json_template
from vlmrl.games.cards import draw_text_centered

LOW, HIGH = 0, 5
NUMBERS = range(LOW, HIGH + 1)


def deal_probabilities(rules: str = DEFAULT_RULES) -> dict[tuple[int, int], Fraction]:
    """P(a deal starts at (current, target)) under a rule set, exactly."""
    if check_rules(rules) == "vlmrl":
        pairs = [(c, g) for c in NUMBERS for g in NUMBERS if c != g]
        return {pair: Fraction(1, len(pairs)) for pair in pairs}
    probabilities: dict[tuple[int, int], Fraction] = {}
    for current in NUMBERS:
        for drawn in NUMBERS:
            target = (drawn + 1) % HIGH if drawn == current else drawn
            pair = (current, target)
            probabilities[pair] = probabilities.get(pair, Fraction(0)) + Fraction(1, len(NUMBERS) ** 2)
    return probabilities


class NumberLineEnv(GameEnv):
    max_steps = 10

    def __init__(self, render_mode: str | None = None, rules: str = DEFAULT_RULES) -> None:
        super().__init__(render_mode, rules)
        self.action_space = spaces.Discrete(2)
        self.target = self.current = 0
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.rules == "rl4vlm":
            self.current = int(self.np_random.integers(LOW, HIGH + 1))
            self.target = int(self.np_random.integers(LOW, HIGH + 1))
            if self.target == self.current:
                self.target = (self.target + 1) % HIGH  # the original's modulo 5 (not 6)
        else:
            self.target = int(self.np_random.integers(LOW, HIGH + 1))
            self.current = self.target
            while self.current == self.target:
                self.current = int(self.np_random.integers(LOW, HIGH + 1))
        self.steps = 0
        return self.observation(), self.state_info()

    def step(self, action):
        distance_before = abs(self.target - self.current)
        move = 1 if int(action) == 1 else -1
        self.current = min(HIGH, max(LOW, self.current + move))
        self.steps += 1
        distance = abs(self.target - self.current)
        terminated = distance == 0
        if terminated:
            reward = 1.0
        elif distance >= distance_before:
            reward = -1.0
        else:
            reward = 0.0
        truncated = not terminated and self.steps >= self.max_steps
        info = self._finish(self.state_info(), terminated, truncated, success=terminated)
        return self.observation(), reward, terminated, truncated, info

    def state_info(self) -> dict[str, Any]:
        return {"target": self.target, "current": self.current}

    def draw(self) -> Image.Image:
        image = Image.new("RGB", (300, 300), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        draw_text_centered(draw, (150, 95), f"Target: {self.target}", 52, (0, 0, 0))
        draw_text_centered(draw, (150, 205), f"Current: {self.current}", 52, (0, 0, 0))
        return image


class NumberLineTask(Task):
    name = "numberline"
    env_id = "vlmrl/NumberLine-v0"
    action_names = ("-", "+")

    def prompt(self, info: dict[str, Any], cot: bool = True) -> str:
        rules = (
            "You are playing NumberLine. The image shows a target number and a current number, "
            f"each between {LOW} and {HIGH}. Your goal is to make the current number equal to the "
            'target. The action "+" increases the current number by one and "-" decreases it by one.'
        )
        if cot:
            template = json_template(
                {
                    "current number": "<the integer after 'Current:' in the image>",
                    "target number": "<the integer after 'Target:' in the image>",
                    "thoughts": (
                        '"<read both numbers, then pick the action that moves the current number towards the target>"'
                    ),
                    "action": self.action_list(),
                }
            )
        else:
            template = json_template({"action": self.action_list()})
        return f"{rules}\n{ANSWER_FORMAT_LINE}\n{template}"

    def describe(self, env: gym.Env) -> dict[str, Any]:
        game = env.unwrapped
        return {"current number": game.current, "target number": game.target}

    def expert_action(self, env: gym.Env) -> int:
        game = env.unwrapped
        return 1 if game.current < game.target else 0

    def reasoning(self, env: gym.Env, action: int, argued: bool | None = None) -> str:
        game = env.unwrapped
        c, g = game.current, game.target
        relation = "smaller than" if c < g else "larger than"
        if self.argues(env, action, argued):
            verb = "increase" if action == 1 else "decrease"
            return (
                f"The current number is {c} and the target number is {g}. {c} is {relation} {g}, "
                f'so I should {verb} the current number with "{self.action_names[action]}".'
            )
        return f'The current number is {c} and the target number is {g}. I choose "{self.action_names[action]}".'

    def ceiling(self) -> Fraction:
        return Fraction(1)
