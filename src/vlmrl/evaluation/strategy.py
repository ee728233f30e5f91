"""A Blackjack policy's strategy chart: how often it hits in each (player hand, dealer card) cell, beside
the optimal action there.

Blackjack's success rate hides what was learned: always standing already wins 38% of hands
against the ceiling's 43.2%. The chart shows the policy itself, as players read basic strategy:
for each player hand (hard totals, and soft ones with an ace counted 11) against each dealer up
card, a two-card hand of that kind is dealt, drawn and prompted as in play, and the policy's
sampled answers say how often it hits. The optimal action is the one that wins more often, from
the exact win probabilities of `vlmrl.games.blackjack` (the expert's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from vlmrl.games import get_task, make_env
from vlmrl.games.blackjack import HIT, hand_total, optimal_action
from vlmrl.games.cards import Card

if TYPE_CHECKING:
    from vlmrl.policy import Policy

UPCARDS = ("2", "3", "4", "5", "6", "7", "8", "9", "10", "A")
HARD_TOTALS = tuple(range(8, 19))
"""Hard 8..18: below 8 every policy worth the name hits, from 19 on it stands, both optimal everywhere."""
SOFT_TOTALS = tuple(range(13, 21))
"""Soft 13 (A, 2) to soft 20 (A, 9)."""


@dataclass
class Cell:
    hand: str
    """``hard 12`` or ``soft 17``."""
    upcard: str
    cards: list[str]
    hit_rate: float | None
    """Share of valid answers that hit (None: no answer was valid)."""
    optimal: str
    invalid: int

    @property
    def agrees(self) -> bool | None:
        """Whether the policy's more frequent action here is the optimal one (None: no valid answer)."""
        return None if self.hit_rate is None else (self.hit_rate > 0.5) == (self.optimal == "hit")


@dataclass
class Chart:
    cells: list[Cell]
    samples: int
    temperature: float

    @property
    def agreement(self) -> float:
        """Share of cells where the policy's more frequent action is the optimal one."""
        decided = [c.agrees for c in self.cells if c.agrees is not None]
        return sum(decided) / len(decided) if decided else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "temperature": self.temperature,
            "agreement": self.agreement,
            "cells": [asdict(c) for c in self.cells],
        }


def two_cards(kind: str, total: int) -> list[str]:
    """A two-card hand of that kind and total: soft = an ace and total - 11; hard = no ace, a 10 when it fits."""
    if kind == "soft":
        return ["A", str(total - 11)]
    first = min(10, total - 2)
    return [str(first), str(total - first)]


def blackjack_chart(
    policy: Policy, temperature: float, samples: int = 8, max_new_tokens: int = 96, cot: bool = True
) -> Chart:
    """Sample `samples` answers in every cell of the chart (one batched generate per hand row)."""
    task = get_task("blackjack")
    env = make_env("blackjack")
    game = env.unwrapped
    env.reset(seed=0)
    cells: list[Cell] = []
    rows = [("hard", t) for t in HARD_TOTALS] + [("soft", t) for t in SOFT_TOTALS]
    for kind, total in rows:
        cards = two_cards(kind, total)
        images, prompts, row = [], [], []
        for upcard in UPCARDS:
            game.player = [Card(rank, "spades") for rank in cards]
            game.dealer = [Card(upcard, "hearts"), Card("2", "clubs")]  # the second stays face down
            game.revealed = False
            image, info = game.observation(), game.state_info()
            images += [image] * samples
            prompts += [task.prompt(info, cot=cot)] * samples
            hard = sum(card.value for card in game.player)
            optimal = optimal_action(hard, kind == "soft", game.upcard.value)
            assert hand_total(hard, kind == "soft") == total
            row.append((upcard, info, task.action_names[optimal]))
        answers = policy.generate(images, prompts, temperature=temperature, max_new_tokens=max_new_tokens)
        for k, (upcard, info, optimal) in enumerate(row):
            parsed = [task.parse(a.text, info) for a in answers[k * samples : (k + 1) * samples]]
            valid = [p.action for p in parsed if p.action is not None]
            hit_rate = sum(a == HIT for a in valid) / len(valid) if valid else None
            cells.append(Cell(f"{kind} {total}", upcard, cards, hit_rate, optimal, samples - len(valid)))
    env.close()
    return Chart(cells, samples, temperature)
