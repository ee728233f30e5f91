"""EZPoints: combine two cards into a formula equal to 12.

Observation: a 300x300 image of two playing cards (J, Q and K count as 10).
Actions (13): "1".."10" (ids 0..9), "+" (10), "*" (11), "=" (12).
Deal: the first card's rank uniform on 2..K; the second card is worth 12 // v with
probability 1/2 when v (the first card's number) is 2, 3, 4 or 6, else 12 - v (a 10 is
shown as 10, J, Q or K uniformly); the two cards appear in random order; suits uniform.
Every deal is solvable with + or *. Under ``rules="rl4vlm"`` a second card worth 10 is
always shown as a 10, as in the original (the numbers dealt are the same).
Rewards and termination: see `vlmrl.games.formula_game`; formulas of more than 5 elements
are truncated with -1; episodes end after 20 steps (vlmrl) or, as in the original, within 7
(rl4vlm: absent numbers append blanks, truncation one step after the sixth element). Under
rl4vlm the image shows the current formula too. Success: "=" on a correct formula.
Ceiling: 1 under both rule sets, computed by enumerating every deal with the exhaustive solver
(the rule sets deal the same numbers, and the expert's formulas have 3 elements).
"""

from __future__ import annotations

from fractions import Fraction

from PIL import Image

from vlmrl.games.base import DEFAULT_RULES, check_rules
from vlmrl.games.cards import RANKS, Card, blank_table, draw_row, random_card, rank_value
from vlmrl.games.formula import is_solvable
from vlmrl.games.formula_game import FormulaGameEnv, FormulaTask

FIRST_RANKS = RANKS[1:]  # 2..K
DIVISOR_VALUES = (2, 3, 4, 6)


def second_card_options(first: int) -> list[tuple[int, Fraction]]:
    """The second card's possible numbers, with their probabilities, given the first card's."""
    if first in DIVISOR_VALUES:
        return [(12 // first, Fraction(1, 2)), (12 - first, Fraction(1, 2))]
    return [(12 - first, Fraction(1))]


def second_card_ranks(value: int, rules: str = DEFAULT_RULES) -> tuple[str, ...]:
    """The ranks a second card worth `value` shows, uniformly: 10, J, Q or K for 10 (the original: always 10)."""
    if check_rules(rules) == "rl4vlm" and value == 10:
        return ("10",)
    return tuple(rank for rank in RANKS if rank_value(rank) == value)


def deal_probabilities(rules: str = DEFAULT_RULES) -> dict[tuple[str, str], Fraction]:
    """P(a deal shows the ranks (left, right)) under a rule set, exactly (suits aside)."""
    probabilities: dict[tuple[str, str], Fraction] = {}
    for first in FIRST_RANKS:
        for value, p_value in second_card_options(rank_value(first)):
            ranks = second_card_ranks(value, rules)
            for second in ranks:
                p = Fraction(1, len(FIRST_RANKS)) * p_value / len(ranks) / 2
                for pair in ((first, second), (second, first)):
                    probabilities[pair] = probabilities.get(pair, Fraction(0)) + p
    return probabilities


class EZPointsEnv(FormulaGameEnv):
    n_cards = 2
    target = 12
    operators = "+*"
    max_formula_length = 5
    max_steps = 20

    def deal(self) -> list[Card]:
        first = random_card(self.np_random, FIRST_RANKS)
        options = second_card_options(first.value)
        second_value = options[0][0] if len(options) == 2 and self.np_random.random() < 0.5 else options[-1][0]
        cards = [first, random_card(self.np_random, second_card_ranks(second_value, self.rules))]
        if self.np_random.random() < 0.5:
            cards.reverse()
        return cards

    def draw(self) -> Image.Image:
        image = blank_table()
        original = self.rules == "rl4vlm"  # cards higher up, the formula below them
        draw_row(image, self.cards, top=25 if original else 55, card_w=130, card_h=190, margin=15)
        if original:
            self.draw_formula(image, top=232, size=22)
        return image


class EZPointsTask(FormulaTask):
    name = "ezpoints"
    env_id = "vlmrl/EZPoints-v0"
    env_class = EZPointsEnv

    title = "EZPoints"
    card_rules = "The image shows two playing cards; J, Q and K count as 10."
    elements = 'a number, "+" or "*"'

    def ceiling(self) -> Fraction:
        game = EZPointsEnv
        deals = deal_probabilities().items()
        solvable = (p for ranks, p in deals if is_solvable([rank_value(r) for r in ranks], game.target, game.operators))
        return sum(solvable, Fraction(0))
