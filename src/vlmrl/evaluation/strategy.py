"""A Blackjack policy's strategy chart: how often it hits in each (player hand, dealer card) cell, beside
the optimal action there.

Blackjack's success rate hides what was learned: always standing already wins 38% of hands
against the ceiling's 43.2%. The chart shows the policy itself, as players read basic strategy:
for each player hand (hard totals, and soft ones with an ace counted 11) against each dealer up
card, a two-card hand of that kind is dealt, drawn and prompted as in play, and the policy's
sampled answers say how often it hits. The optimal action is the one that wins more often, from
the exact win probabilities of `vlmrl.games.blackjack` (the expert's).

With a chain of thought the chart also separates perception from reasoning: the warm-up teaches
thoughts that open with what the image shows ("My cards are 10, 2, a total of 12. The dealer
shows 5."), so each answer's thoughts say whether it read the hand and the dealer's card right,
and among the answers that did, how often the action was the optimal one.
"""

from __future__ import annotations

import re
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
    read: int = 0
    """Answers whose thoughts state the hand's total and the dealer's up card right."""
    read_and_optimal: int = 0
    """Of those, the answers whose action is the optimal one."""

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

    @property
    def reading(self) -> float:
        """Share of all answers whose thoughts read the hand and the dealer's card right (perception)."""
        return sum(c.read for c in self.cells) / (self.samples * len(self.cells)) if self.cells else 0.0

    @property
    def optimal_when_read(self) -> float | None:
        """Share of the answers that read right whose action is optimal (reasoning); None: none read right."""
        read = sum(c.read for c in self.cells)
        return sum(c.read_and_optimal for c in self.cells) / read if read else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "temperature": self.temperature,
            "agreement": self.agreement,
            "reading": self.reading,
            "optimal_when_read": self.optimal_when_read,
            "cells": [asdict(c) for c in self.cells],
        }


_TOTAL = re.compile(r"\btotal of (\d{1,2})\b")
_UPCARD = re.compile(r"\bdealer shows (10|[2-9AJQK])\b")


def read_from_thoughts(text: str) -> tuple[int | None, str | None]:
    """The player's total and the dealer's up card that an answer's thoughts state, in the warm-up's
    words (the first of each; None where it states none)."""
    total, upcard = _TOTAL.search(text), _UPCARD.search(text)
    return (int(total.group(1)) if total else None), (upcard.group(1) if upcard else None)


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
            texts = [a.text for a in answers[k * samples : (k + 1) * samples]]
            actions = [task.parse(text, info).action for text in texts]
            valid = [a for a in actions if a is not None]
            hit_rate = sum(a == HIT for a in valid) / len(valid) if valid else None
            read = [a for text, a in zip(texts, actions, strict=True) if read_from_thoughts(text) == (total, upcard)]
            right = sum(a is not None and task.action_names[a] == optimal for a in read)
            cells.append(
                Cell(f"{kind} {total}", upcard, cards, hit_rate, optimal, samples - len(valid), len(read), right)
            )
    env.close()
    return Chart(cells, samples, temperature)
